//! The Prometheus metric provider: instant queries over the HTTP API, turned into the cumulative counts the
//! statistics engine takes. Query templates may use `{{version}}` and `{{namespace}}`.

use std::time::Duration;

use jiff::Timestamp;
use rampart_analysis::Bucket;
use serde::Deserialize;

/// A failed query, with the query and the server so the message says where to look.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Prometheus could not be reached (down, wrong address, timeout).
    #[error("Prometheus at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// Prometheus answered with an error for this query.
    #[error("Prometheus at {url} rejected query {query:?}: {message}")]
    Rejected { url: String, query: String, message: String },
    /// The answer was not what an instant query returns.
    #[error("Prometheus at {url} returned an unexpected answer to {query:?}: {message}")]
    Unexpected { url: String, query: String, message: String },
}

/// The Prometheus servers a rollout's `spec.analysis.prometheusAddress` may name: the controller's own
/// `--prometheus-url` and each `--prometheus-allowed-url`. An address is allowed when its scheme, host and port equal
/// an entry's and its path starts with the entry's path by whole segments (`/prom` allows `/prom/team-a`, never
/// `/prometheus`). Addresses with credentials, a query or a fragment are refused.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    entries: Vec<AllowedUrl>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct AllowedUrl {
    scheme: String,
    host: String,
    port: Option<u16>,
    segments: Vec<String>,
}

impl AllowedUrl {
    fn parse(text: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(text.trim()).map_err(|err| format!("{err}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme {:?} is not http or https", url.scheme()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("credentials in the URL are not allowed".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("a query or fragment is not allowed".into());
        }
        let host = url.host_str().ok_or("no host")?.to_ascii_lowercase();
        let segments = url
            .path_segments()
            .map(|s| s.filter(|part| !part.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        Ok(AllowedUrl { scheme: url.scheme().into(), host, port: url.port_or_known_default(), segments })
    }

    fn covers(&self, other: &AllowedUrl) -> bool {
        self.scheme == other.scheme
            && self.host == other.host
            && self.port == other.port
            && other.segments.len() >= self.segments.len()
            && self.segments.iter().zip(&other.segments).all(|(a, b)| a == b)
    }
}

impl AllowList {
    /// The controller's default Prometheus plus `extra` (from `--prometheus-allowed-url`). An entry that is not an
    /// http(s) URL is an error naming it.
    pub fn new(default_url: &str, extra: &[String]) -> Result<Self, String> {
        let mut entries = Vec::new();
        for text in std::iter::once(default_url).chain(extra.iter().map(String::as_str)) {
            entries.push(AllowedUrl::parse(text).map_err(|err| format!("Prometheus URL {text:?}: {err}"))?);
        }
        Ok(AllowList { entries })
    }

    /// Ok when a rollout may query `address`; otherwise why not, in words for the rollout's author (the address is
    /// quoted bounded and sanitised).
    pub fn check(&self, address: &str) -> Result<(), String> {
        // Shown without any credentials it carries.
        let shown = match reqwest::Url::parse(address.trim()) {
            Ok(mut url) => {
                let _ = url.set_username("");
                let _ = url.set_password(None);
                sanitise(url.as_str(), 200)
            }
            Err(_) => sanitise(address, 200),
        };
        let parsed =
            AllowedUrl::parse(address).map_err(|err| format!("prometheusAddress {shown:?} is not usable: {err}"))?;
        if self.entries.iter().any(|entry| entry.covers(&parsed)) {
            return Ok(());
        }
        Err(format!(
            "prometheusAddress {shown:?} is not on this controller's allow-list (--prometheus-allowed-url); remove it to \
             use the controller's Prometheus, or ask the cluster's operators to allow that server"
        ))
    }
}

/// Text from a metrics endpoint (or a rollout) made safe to show in status and logs: control characters become
/// spaces and the text is cut at `limit` characters, so an endpoint cannot write pages or fake lines into status.
pub fn sanitise(text: &str, limit: usize) -> String {
    let mut out: String = text.chars().take(limit).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > limit {
        out.push('…');
    }
    out
}

/// A client for one Prometheus server.
#[derive(Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    base_url: String,
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Sample {
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}

impl Prometheus {
    /// A client for `base_url` (e.g. `http://127.0.0.1:9090`) with a per-query time limit.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, QueryError> {
        // No redirects: a metrics endpoint that redirects elsewhere is refused rather than followed.
        let http =
            reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build().map_err(
                |err| QueryError::Unreachable {
                    url: base_url.to_string(),
                    message: format!("cannot build an HTTP client: {err}"),
                },
            )?;
        Ok(Self { http, base_url: base_url.trim_end_matches('/').to_string() })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    async fn instant(&self, query: &str, at: Option<Timestamp>) -> Result<Vec<Sample>, QueryError> {
        let mut params = vec![("query", query.to_string())];
        if let Some(at) = at {
            params.push(("time", format!("{:.3}", at.as_millisecond() as f64 / 1000.0)));
        }
        let response = self
            .http
            .get(format!("{}/api/v1/query", self.base_url))
            .query(&params)
            .send()
            .await
            .map_err(|err| QueryError::Unreachable { url: self.base_url.clone(), message: err.to_string() })?;
        let status = response.status();
        let body: Response = response.json().await.map_err(|err| QueryError::Unexpected {
            url: self.base_url.clone(),
            query: query.to_string(),
            message: sanitise(&format!("HTTP {status}, body is not Prometheus JSON: {err}"), 300),
        })?;
        if body.status != "success" {
            return Err(QueryError::Rejected {
                url: self.base_url.clone(),
                query: query.to_string(),
                message: sanitise(&body.error.unwrap_or_else(|| format!("HTTP {status}")), 300),
            });
        }
        let unexpected =
            |message: String| QueryError::Unexpected { url: self.base_url.clone(), query: query.to_string(), message };
        let data = body.data.ok_or_else(|| unexpected("no data".into()))?;
        match data.result_type.as_str() {
            "vector" => serde_json::from_value(data.result).map_err(|err| unexpected(err.to_string())),
            "scalar" => {
                let value: (f64, String) =
                    serde_json::from_value(data.result).map_err(|err| unexpected(err.to_string()))?;
                Ok(vec![Sample { metric: Default::default(), value }])
            }
            other => Err(unexpected(format!("result type {other}; use a query that returns an instant vector"))),
        }
    }

    /// The query's value at `at` (now when None): the sum over the returned series; 0 when there are none (a
    /// version that has not served yet).
    pub async fn value(&self, query: &str, at: Option<Timestamp>) -> Result<f64, QueryError> {
        let samples = self.instant(query, at).await?;
        let mut total = 0.0;
        for sample in samples {
            total += parse_value(&sample.value.1).ok_or_else(|| QueryError::Unexpected {
                url: self.base_url.clone(),
                query: query.to_string(),
                message: format!("sample value {:?} is not a number", sample.value.1),
            })?;
        }
        Ok(total)
    }

    /// Cumulative histogram buckets at `at`, summed by their `le` label.
    pub async fn buckets(&self, query: &str, at: Option<Timestamp>) -> Result<Vec<Bucket>, QueryError> {
        let samples = self.instant(query, at).await?;
        let mut by_le: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
        for sample in samples {
            let le_text = sample.metric.get("le").ok_or_else(|| QueryError::Unexpected {
                url: self.base_url.clone(),
                query: query.to_string(),
                message: "a series has no `le` label; use e.g. `sum by (le) (..._bucket{...})`".into(),
            })?;
            let le = parse_value(le_text);
            let count = parse_value(&sample.value.1);
            let (Some(le), Some(count)) = (le, count) else {
                return Err(QueryError::Unexpected {
                    url: self.base_url.clone(),
                    query: query.to_string(),
                    message: format!("bucket le={le_text:?} value={:?} is not numeric", sample.value.1),
                });
            };
            let entry = by_le.entry(le_text.clone()).or_insert((le, 0.0));
            entry.1 += count;
        }
        Ok(by_le.into_values().map(|(le, count)| Bucket { le, count }).collect())
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Fills `{{version}}` and `{{namespace}}` in a query template.
pub fn render(template: &str, version: &str, namespace: &str) -> String {
    template.replace("{{version}}", version).replace("{{namespace}}", namespace)
}

/// How much a counter grew between two readings. A counter that went down was reset (its process restarted): it
/// counted from zero since, so the growth is what it reads now, as Prometheus' `increase()` treats a reset. Counts
/// from before the reset within the window are lost, never negative.
pub fn counter_increase(now: f64, before: f64) -> f64 {
    if now >= before { now - before } else { now.max(0.0) }
}

/// Subtracts the counts at the step's start from the counts now, bucket by bucket (missing start buckets are 0). A
/// histogram whose total went down was reset: its counts now are the increase.
pub fn bucket_increase(now: &[Bucket], start: &[Bucket]) -> Vec<Bucket> {
    let total = |buckets: &[Bucket]| buckets.iter().map(|b| b.count).fold(0.0_f64, f64::max);
    let reset = total(now) < total(start);
    now.iter()
        .map(|bucket| {
            let before =
                if reset { 0.0 } else { start.iter().find(|b| b.le == bucket.le).map(|b| b.count).unwrap_or(0.0) };
            Bucket { le: bucket.le, count: counter_increase(bucket.count, before) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_servers_by_scheme_host_port_and_whole_path_segments() {
        let allow = AllowList::new(
            "http://prometheus-operated.monitoring:9090",
            &["https://metrics.example.com/prom".to_string()],
        )
        .unwrap();
        assert!(allow.check("http://prometheus-operated.monitoring:9090").is_ok(), "the default is always allowed");
        assert!(allow.check("http://prometheus-operated.monitoring:9090/").is_ok());
        assert!(allow.check("https://metrics.example.com/prom/team-a").is_ok());
        assert!(allow.check("https://metrics.example.com:443/prom").is_ok(), "the known default port is the same");
        for refused in [
            "https://metrics.example.com/prometheus",
            "https://metrics.example.com.evil.io/prom",
            "http://metrics.example.com/prom",
            "https://metrics.example.com:8443/prom",
            "http://169.254.169.254/latest/meta-data",
            "http://prometheus-operated.monitoring:9091",
            "https://user:secret@metrics.example.com/prom",
            "https://metrics.example.com/prom?x=1",
            "file:///etc/passwd",
            "not a url",
        ] {
            let why = allow.check(refused).expect_err(refused);
            assert!(!why.contains("secret"), "credentials are not echoed: {why}");
        }
        assert!(AllowList::new("http://ok:9090", &["ftp://x".to_string()]).is_err(), "a bad flag is an error");
    }

    #[test]
    fn endpoint_text_is_bounded_and_has_no_control_characters() {
        let hostile = format!("line one\nphase: Succeeded\r\u{1b}[2J{}", "x".repeat(5000));
        let shown = sanitise(&hostile, 300);
        assert!(shown.chars().count() <= 301, "{}", shown.len());
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }

    #[test]
    fn templates_take_version_and_namespace() {
        assert_eq!(
            render(r#"sum(x{version="{{version}}",namespace="{{namespace}}"})"#, "v2", "ml"),
            r#"sum(x{version="v2",namespace="ml"})"#
        );
    }

    #[test]
    fn bucket_increase_subtracts_the_start_and_keeps_new_buckets() {
        let start = vec![Bucket { le: 0.1, count: 5.0 }, Bucket { le: f64::INFINITY, count: 10.0 }];
        let now = vec![
            Bucket { le: 0.1, count: 8.0 },
            Bucket { le: 0.5, count: 3.0 },
            Bucket { le: f64::INFINITY, count: 20.0 },
        ];
        let diff = bucket_increase(&now, &start);
        assert_eq!(diff.iter().map(|b| b.count).collect::<Vec<_>>(), vec![3.0, 3.0, 10.0]);
    }

    #[test]
    fn a_counter_reset_counts_from_zero_instead_of_going_negative() {
        assert_eq!(counter_increase(150.0, 100.0), 50.0);
        assert_eq!(counter_increase(30.0, 100.0), 30.0, "reset: the 30 counted since");
        let start = vec![Bucket { le: 0.1, count: 50.0 }, Bucket { le: f64::INFINITY, count: 100.0 }];
        let now = vec![Bucket { le: 0.1, count: 4.0 }, Bucket { le: f64::INFINITY, count: 10.0 }];
        let diff = bucket_increase(&now, &start);
        assert_eq!(diff.iter().map(|b| b.count).collect::<Vec<_>>(), vec![4.0, 10.0]);
    }

    #[test]
    fn infinite_bounds_parse() {
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("0.25"), Some(0.25));
        assert_eq!(parse_value("NaNx"), None);
    }
}
