//! The real Prometheus server (Debian package `prometheus`) on a free loopback port, under the watchdog, with a
//! throwaway config and TSDB directory, a short scrape interval, and scrape targets that tests add and remove at run
//! time through `file_sd_configs`. Also a small client for the HTTP query API.
//!
//! ```no_run
//! # async fn example() -> Result<(), rampart_testenv::Error> {
//! use std::time::Duration;
//! let prometheus = rampart_testenv::shared_prometheus()?;
//! prometheus.add_target("127.0.0.1:9101", &[("role", "canary")])?;
//! let samples = prometheus
//!     .wait_for_series(r#"model_requests_total{namespace="my-test"}"#, Duration::from_secs(20))
//!     .await?;
//! # let _ = samples; Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::Error;
use crate::process::{Supervised, free_port};

/// Where Debian's package installs the server.
const DEFAULT_BINARY: &str = "/usr/bin/prometheus";

/// The scrape job every target added with [`Prometheus::add_target`] belongs to (unless its labels set `job`).
pub const SCRAPE_JOB: &str = "rampart-test";

/// How to run Prometheus. `PrometheusOptions::default()` scrapes every second.
#[derive(Clone, Debug, PartialEq)]
pub struct PrometheusOptions {
    /// How often targets are scraped (also the scrape timeout and rule evaluation interval).
    pub scrape_interval: Duration,
    /// How long an instant query looks back for the latest sample (Prometheus' default is 5 minutes).
    pub lookback_delta: Duration,
    /// The Prometheus binary; `None` looks for `$RAMPART_PROMETHEUS`, then `/usr/bin/prometheus`, then `prometheus` on
    /// `PATH`.
    pub binary: Option<PathBuf>,
}

impl Default for PrometheusOptions {
    fn default() -> Self {
        Self { scrape_interval: Duration::from_secs(1), lookback_delta: Duration::from_secs(300), binary: None }
    }
}

impl PrometheusOptions {
    /// Sets the scrape interval (at least 100 ms is sensible).
    pub fn scrape_interval(mut self, interval: Duration) -> Self {
        self.scrape_interval = interval;
        self
    }

    /// Sets `--query.lookback-delta`.
    pub fn lookback_delta(mut self, delta: Duration) -> Self {
        self.lookback_delta = delta;
        self
    }

    /// Uses this Prometheus binary.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }
}

/// One series of a query result: its labels and its value at the query time.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series' labels (`__name__` is absent when the query computed the value).
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// A running Prometheus server on 127.0.0.1. Dropping it stops the server and removes its directory.
pub struct Prometheus {
    port: u16,
    binary: PathBuf,
    options: PrometheusOptions,
    server: Supervised,
    /// Removes the directory when we drop or the test binary dies (the shared server is never dropped; the server's
    /// own watchdog cannot do it, since the data must survive `stop`/`restart`). Declared after `server`, so the
    /// server stops first.
    _directory_guard: Supervised,
    starts: u32,
    /// The targets we gave it, by address, with their extra labels.
    targets: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with the default options (1 s scrape interval). Takes a second or two.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(PrometheusOptions::default())
    }

    /// Starts Prometheus with these options.
    pub fn start_with(options: PrometheusOptions) -> Result<Self, Error> {
        let binary = find_binary(&options)?;
        let dir = tempfile::Builder::new()
            .prefix("rampart-prometheus-")
            .tempdir()
            .map_err(|source| Error::Io { context: "creating the Prometheus directory".into(), source })?;
        for sub in ["targets", "data"] {
            std::fs::create_dir_all(dir.path().join(sub)).map_err(|source| Error::Io {
                context: format!("creating {}", dir.path().join(sub).display()),
                source,
            })?;
        }
        let config_path = dir.path().join("prometheus.yml");
        write_file(&config_path, &config_text(&options, &dir.path().join("targets")))?;
        let directory_guard = Supervised::spawn(
            "prometheus directory guard",
            Path::new("sleep"),
            &["infinity".to_string()],
            &dir.path().join("guard.log"),
            "TERM",
            Some(dir.path()),
        )?;
        let port = free_port()?;
        let server = spawn_server(&binary, dir.path(), port, &options, 0)?;
        let mut prometheus = Self {
            port,
            binary,
            options,
            server,
            _directory_guard: directory_guard,
            starts: 1,
            targets: Mutex::new(BTreeMap::new()),
            dir,
        };
        prometheus.wait_ready(Duration::from_secs(60))?;
        Ok(prometheus)
    }

    /// `http://127.0.0.1:PORT`, the base of the HTTP API (`/api/v1/query`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scrape interval it runs with.
    pub fn scrape_interval(&self) -> Duration {
        self.options.scrape_interval
    }

    /// The directory holding `prometheus.yml`, `targets/` and `data/` (the TSDB).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts scraping `address` (`host:port`, path `/metrics`) with these extra target labels. The exporter's own
    /// labels win over target labels of the same name (`honor_labels`). Adding an address again replaces its labels.
    ///
    /// Prometheus passes discovered targets on at most every 5 seconds, so the first scrape comes 1 to 10 s later;
    /// [`Prometheus::wait_for_target`] waits for it.
    pub fn add_target(&self, address: &str, labels: &[(&str, &str)]) -> Result<(), Error> {
        let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let group = serde_json::json!([{ "targets": [address], "labels": labels }]);
        let path = self.target_file(address);
        let temporary = path.with_extension("json.tmp");
        write_file(&temporary, &group.to_string())?;
        std::fs::rename(&temporary, &path)
            .map_err(|source| Error::Io { context: format!("publishing scrape target {}", path.display()), source })?;
        self.lock_targets().insert(address.to_string(), labels);
        Ok(())
    }

    /// Stops scraping `address`; its series go stale (instant queries stop returning them) within about 10 s (see
    /// [`Prometheus::add_target`]). Removing an unknown address does nothing.
    pub fn remove_target(&self, address: &str) -> Result<(), Error> {
        let path = self.target_file(address);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Io { context: format!("removing scrape target {}", path.display()), source });
            }
        }
        self.lock_targets().remove(address);
        Ok(())
    }

    /// The targets added and not removed, with their labels.
    pub fn targets(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.lock_targets().clone()
    }

    fn lock_targets(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<String, String>>> {
        self.targets.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn target_file(&self, address: &str) -> PathBuf {
        let name: String = address.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        self.dir.path().join("targets").join(format!("{name}.json"))
    }

    /// Stops the server (for outage tests): queries fail until [`Prometheus::restart`].
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts the server again (after [`Prometheus::stop`], or to bounce it) on the same port with the same data and
    /// targets, and waits until it is ready.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.server.stop();
        self.server = spawn_server(&self.binary, self.dir.path(), self.port, &self.options, self.starts)?;
        self.starts += 1;
        self.wait_ready(Duration::from_secs(60))
    }

    /// Whether the server answers `/-/ready` now.
    pub fn is_ready(&self) -> bool {
        http_status(self.port, "/-/ready") == Some(200)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            self.server.ensure_running()?;
            if self.is_ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady { name: "prometheus".into(), log_tail: self.server.log_tail() });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    /// Runs an instant query (`/api/v1/query`) and returns its series. A scalar result comes back as one sample
    /// without labels. Fails when Prometheus is down or rejects the query (the error says why).
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, Error> {
        query(&self.url(), promql).await
    }

    /// Runs an instant query that yields at most one series and returns its value: `None` when there is no series,
    /// an error when there are several (wrap the query in `sum(...)`).
    pub async fn query_value(&self, promql: &str) -> Result<Option<f64>, Error> {
        let samples = self.query(promql).await?;
        match samples.as_slice() {
            [] => Ok(None),
            [sample] => Ok(Some(sample.value)),
            _ => Err(Error::Command {
                context: format!("querying Prometheus for a single value of `{promql}`"),
                status: format!("{} series", samples.len()),
                output: "the query matched several series; aggregate it, e.g. sum(...)".into(),
            }),
        }
    }

    /// Waits until `address` (added with [`Prometheus::add_target`]) has been scraped successfully (`up` is 1), so
    /// that queries from now on see its metrics.
    pub async fn wait_for_target(&self, address: &str, timeout: Duration) -> Result<(), Error> {
        let up = format!(r#"up{{instance="{address}"}}"#);
        self.wait_until(&up, |samples| samples.iter().any(|sample| sample.value == 1.0), timeout).await.map(|_| ())
    }

    /// Queries every 200 ms until the query returns at least one series, and returns them; fails after `timeout`
    /// with the last answer (or error). Use it to wait until a target has been scraped.
    pub async fn wait_for_series(&self, promql: &str, timeout: Duration) -> Result<Vec<Sample>, Error> {
        self.wait_until(promql, |samples| !samples.is_empty(), timeout).await
    }

    /// Queries every 200 ms until `done` accepts the answer, and returns it; fails after `timeout` with the last
    /// answer (or error). Errors while waiting (Prometheus still starting) count as "not yet".
    pub async fn wait_until(
        &self,
        promql: &str,
        mut done: impl FnMut(&[Sample]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Sample>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.query(promql).await {
                Ok(samples) if done(&samples) => return Ok(samples),
                Ok(samples) => format!("last answer: {samples:?}"),
                Err(err) => format!("last error: {err}"),
            };
            if Instant::now() > deadline {
                return Err(Error::NotReady { name: format!("the Prometheus query `{promql}`"), log_tail: last });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Runs an instant query against the Prometheus at `base_url` (e.g. [`Prometheus::url`]).
pub async fn query(base_url: &str, promql: &str) -> Result<Vec<Sample>, Error> {
    let context = || format!("querying Prometheus at {base_url} for `{promql}`");
    // A client per call: reqwest clients belong to the runtime that made their connections, and tests each have one.
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|err| Error::Io { context: context(), source: std::io::Error::other(err) })?;
    let response = client
        .get(format!("{}/api/v1/query", base_url.trim_end_matches('/')))
        .query(&[("query", promql)])
        .send()
        .await
        .map_err(|err| Error::Io { context: context(), source: std::io::Error::other(err) })?;
    let status = response.status();
    let body =
        response.text().await.map_err(|err| Error::Io { context: context(), source: std::io::Error::other(err) })?;
    parse_query_response(&body).map_err(|message| Error::Command {
        context: context(),
        status: format!("HTTP {status}"),
        output: format!("{message}\n{}", truncate(&body, 2000)),
    })
}

/// Parses the JSON of `/api/v1/query` into samples.
fn parse_query_response(body: &str) -> Result<Vec<Sample>, String> {
    let json: serde_json::Value = serde_json::from_str(body).map_err(|err| format!("the answer is not JSON: {err}"))?;
    if json["status"] != "success" {
        return Err(format!(
            "Prometheus answered {}: {}",
            json["errorType"].as_str().unwrap_or("an error"),
            json["error"].as_str().unwrap_or("(no message)")
        ));
    }
    let data = &json["data"];
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or("a vector result without a list")?
            .iter()
            .map(|series| {
                let labels = series["metric"]
                    .as_object()
                    .map(|labels| {
                        labels.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()
                    })
                    .unwrap_or_default();
                Ok(Sample { labels, value: parse_value(&series["value"])? })
            })
            .collect(),
        Some("scalar") => Ok(vec![Sample { labels: BTreeMap::new(), value: parse_value(&data["result"])? }]),
        Some(other) => Err(format!("a {other} result; ask for an instant vector or scalar")),
        None => Err("an answer without a result type".into()),
    }
}

/// `[timestamp, "value"]` -> value (Prometheus writes `NaN`, `+Inf` and `-Inf` as strings too).
fn parse_value(pair: &serde_json::Value) -> Result<f64, String> {
    let text = pair[1].as_str().ok_or_else(|| format!("a sample without a value: {pair}"))?;
    text.parse::<f64>().map_err(|err| format!("sample value {text:?}: {err}"))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// The Prometheus config: one job whose targets come from `targets/*.json`. JSON is valid YAML.
fn config_text(options: &PrometheusOptions, targets_dir: &Path) -> String {
    let interval = prometheus_duration(options.scrape_interval);
    serde_json::json!({
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": [{
            "job_name": SCRAPE_JOB,
            "honor_labels": true,
            "file_sd_configs": [{
                "files": [targets_dir.join("*.json").display().to_string()],
                "refresh_interval": "1s",
            }],
        }],
    })
    .to_string()
}

/// A duration in Prometheus' syntax, in whole milliseconds (at least 1 ms).
fn prometheus_duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis().max(1))
}

fn spawn_server(
    binary: &Path,
    dir: &Path,
    port: u16,
    options: &PrometheusOptions,
    start: u32,
) -> Result<Supervised, Error> {
    let args: Vec<String> = vec![
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--web.enable-lifecycle".into(),
        "--storage.tsdb.retention.time=1d".into(),
        format!("--query.lookback-delta={}", prometheus_duration(options.lookback_delta)),
        "--log.level=warn".into(),
    ];
    let log = dir.join(if start == 0 { "prometheus.log".to_string() } else { format!("prometheus-{start}.log") });
    Supervised::spawn("prometheus", binary, &args, &log, "TERM", None)
}

/// The binary: the option alone when given; else `$RAMPART_PROMETHEUS`, `/usr/bin/prometheus`, then `prometheus` on
/// `PATH`.
fn find_binary(options: &PrometheusOptions) -> Result<PathBuf, Error> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(binary) = &options.binary {
        candidates.push(binary.clone());
    } else {
        candidates.extend(std::env::var_os("RAMPART_PROMETHEUS").map(PathBuf::from));
        candidates.push(PathBuf::from(DEFAULT_BINARY));
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("prometheus")));
        }
    }
    candidates.into_iter().find(|path| path.is_file()).ok_or_else(|| Error::Missing {
        what: format!(
            "the Prometheus server ({})",
            options.binary.as_deref().unwrap_or(Path::new("prometheus")).display()
        ),
        hint: "install it (Debian: apt-get install prometheus) or set RAMPART_PROMETHEUS to the binary".into(),
    })
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|source| Error::Io { context: format!("writing {}", path.display()), source })
}

/// The HTTP status of `GET path` on 127.0.0.1:port, or `None` when nothing answers (blocking, 1 s timeouts).
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut head = [0u8; 32];
    let read = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..read]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_and_scalar_answers_parse_into_samples() {
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","instance":"127.0.0.1:1"},"value":[1700000000.1,"1"]},
            {"metric":{},"value":[1700000000.1,"NaN"]}]}}"#;
        let samples = parse_query_response(vector).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].labels["instance"], "127.0.0.1:1");
        assert_eq!(samples[0].value, 1.0);
        assert!(samples[1].value.is_nan());

        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.1,"+Inf"]}}"#;
        assert_eq!(parse_query_response(scalar).unwrap()[0].value, f64::INFINITY);
    }

    #[test]
    fn a_rejected_query_reports_prometheus_message() {
        let error = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let message = parse_query_response(error).unwrap_err();
        assert!(message.contains("bad_data") && message.contains("parse error at char 3"), "{message}");
    }

    #[test]
    fn config_scrapes_the_target_files_at_the_chosen_interval() {
        let options = PrometheusOptions::default().scrape_interval(Duration::from_millis(500));
        let config: serde_json::Value = serde_json::from_str(&config_text(&options, Path::new("/tmp/t"))).unwrap();
        assert_eq!(config["global"]["scrape_interval"], "500ms");
        assert_eq!(config["global"]["scrape_timeout"], "500ms");
        assert_eq!(config["scrape_configs"][0]["file_sd_configs"][0]["files"][0], "/tmp/t/*.json");
        assert_eq!(config["scrape_configs"][0]["honor_labels"], true);
    }
}
