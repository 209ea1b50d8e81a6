//! Where notifications go: controller-wide sinks from the controller's flags (trusted: the operator set them), and a
//! namespace's own sinks from the Secret `rampart-notifications` in that namespace (untrusted: a tenant wrote them).
//!
//! Trust decision: a tenant's URL makes the controller send HTTP requests from inside the cluster, so a namespace
//! sink is used only when its host is on the operator's allow-list (`--notify-allowed-hosts`); with an empty list
//! namespace sinks are off. Redirects are never followed (a redirect would step around the list). URLs are never
//! logged nor stored in the queue (a Slack webhook URL is a credential); only their host is logged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use reqwest::Url;

use super::render::ContentMode;

/// Name of the per-namespace Secret that configures a namespace's sinks.
pub const SECRET_NAME: &str = "rampart-notifications";
/// Secret key: the CloudEvents receiver's URL.
pub const KEY_CLOUDEVENTS_URL: &str = "cloudevents-url";
/// Secret key: `binary` (default) or `structured`.
pub const KEY_CLOUDEVENTS_MODE: &str = "cloudevents-mode";
/// Secret key: a Slack-style incoming-webhook URL.
pub const KEY_SLACK_URL: &str = "slack-webhook-url";

/// How long a namespace's Secret is cached.
const SECRET_TTL: Duration = Duration::from_secs(5);

/// The controller's notification settings. Not `Debug`: the Slack URL is a credential and must not reach a log.
#[derive(Clone)]
pub struct NotifyConfig {
    /// Controller-wide CloudEvents receiver (every rollout's events).
    pub cloudevents_url: Option<String>,
    /// Content mode of the controller-wide CloudEvents sink.
    pub cloudevents_mode: ContentMode,
    /// Controller-wide Slack-style webhook.
    pub slack_webhook_url: Option<String>,
    /// Hosts a namespace's Secret may name: `host`, `*.domain` or `*` (any). Empty: namespace sinks are off.
    pub allowed_hosts: Vec<String>,
    /// Longest wait between two attempts of one delivery.
    pub retry_max: Duration,
    /// A delivery still failing this long after it was queued is abandoned.
    pub give_up_after: Duration,
    /// Time limit of one HTTP request.
    pub timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            cloudevents_url: None,
            cloudevents_mode: ContentMode::Binary,
            slack_webhook_url: None,
            allowed_hosts: Vec::new(),
            retry_max: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The format a sink speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    CloudEvents,
    Slack,
}

/// Who configured a sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Controller,
    Namespace,
}

/// A sink's name in the queue: `controller/cloudevents`, `namespace/slack`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SinkKey {
    pub scope: Scope,
    pub kind: Kind,
}

impl SinkKey {
    /// The name stored in the queue (also the metrics label).
    pub fn name(self) -> &'static str {
        match (self.scope, self.kind) {
            (Scope::Controller, Kind::CloudEvents) => "controller/cloudevents",
            (Scope::Controller, Kind::Slack) => "controller/slack",
            (Scope::Namespace, Kind::CloudEvents) => "namespace/cloudevents",
            (Scope::Namespace, Kind::Slack) => "namespace/slack",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<SinkKey> {
        let (scope, kind) = name.split_once('/')?;
        let scope = match scope {
            "controller" => Scope::Controller,
            "namespace" => Scope::Namespace,
            _ => return None,
        };
        let kind = match kind {
            "cloudevents" => Kind::CloudEvents,
            "slack" => Kind::Slack,
            _ => return None,
        };
        Some(SinkKey { scope, kind })
    }
}

/// Where and how to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub url: Url,
    pub mode: ContentMode,
}

/// Parses a sink URL: http or https with a host.
pub fn parse_url(text: &str, what: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|err| format!("{what} is not a URL ({err})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{what} must be an http or https URL, not {}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{what} has no host"));
    }
    Ok(url)
}

/// True when `url`'s host is on the allow-list (`host`, `*.domain`, or `*`).
pub fn host_allowed(allowed: &[String], url: &Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.iter().any(|entry| {
        let entry = entry.trim().trim_end_matches('.').to_ascii_lowercase();
        if entry == "*" {
            return true;
        }
        match entry.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => !entry.is_empty() && host == entry,
        }
    })
}

/// The controller-wide sinks (the flags were checked at start).
pub fn controller_targets(config: &NotifyConfig) -> Vec<(SinkKey, Target)> {
    let mut targets = Vec::new();
    if let Some(url) = config.cloudevents_url.as_deref().and_then(|u| parse_url(u, "the CloudEvents URL").ok()) {
        let key = SinkKey { scope: Scope::Controller, kind: Kind::CloudEvents };
        targets.push((key, Target { url, mode: config.cloudevents_mode }));
    }
    if let Some(url) = config.slack_webhook_url.as_deref().and_then(|u| parse_url(u, "the Slack webhook URL").ok()) {
        let key = SinkKey { scope: Scope::Controller, kind: Kind::Slack };
        targets.push((key, Target { url, mode: ContentMode::Binary }));
    }
    targets
}

/// A namespace's sinks from its Secret's data, and the problems found (each says what to do).
pub fn namespace_targets(
    data: &std::collections::BTreeMap<String, Vec<u8>>,
    allowed_hosts: &[String],
) -> (Vec<(SinkKey, Target)>, Vec<String>) {
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    let text = |key: &str| data.get(key).map(|v| String::from_utf8_lossy(v).trim().to_string());
    let mode = match text(KEY_CLOUDEVENTS_MODE).map(|m| ContentMode::parse(&m)) {
        None => ContentMode::Binary,
        Some(Ok(mode)) => mode,
        Some(Err(err)) => {
            problems.push(format!("{KEY_CLOUDEVENTS_MODE}: {err}"));
            ContentMode::Binary
        }
    };
    for (key, kind) in [(KEY_CLOUDEVENTS_URL, Kind::CloudEvents), (KEY_SLACK_URL, Kind::Slack)] {
        let Some(value) = text(key).filter(|v| !v.is_empty()) else { continue };
        match parse_url(&value, key) {
            Err(err) => problems.push(err),
            Ok(url) if !host_allowed(allowed_hosts, &url) => problems.push(format!(
                "{key}: host {} is not on the controller's allow-list (--notify-allowed-hosts); ask the operator to \
                 allow it",
                url.host_str().unwrap_or_default()
            )),
            Ok(url) => targets.push((SinkKey { scope: Scope::Namespace, kind }, Target { url, mode })),
        }
    }
    (targets, problems)
}

/// Reads and caches the namespaces' Secrets.
pub struct Resolver {
    client: kube::Client,
    config: NotifyConfig,
    cache: HashMap<String, (Instant, Vec<(SinkKey, Target)>)>,
    reported: HashMap<String, Vec<String>>,
}

impl Resolver {
    pub fn new(client: kube::Client, config: NotifyConfig) -> Self {
        Resolver { client, config, cache: HashMap::new(), reported: HashMap::new() }
    }

    /// The settings it resolves with.
    pub fn config(&self) -> &NotifyConfig {
        &self.config
    }

    /// Every sink for a rollout in `namespace`. `Err` when the Secret could not be read (retry later).
    pub async fn targets(&mut self, namespace: &str) -> Result<Vec<(SinkKey, Target)>, String> {
        let mut targets = controller_targets(&self.config);
        targets.extend(self.namespace(namespace).await?);
        Ok(targets)
    }

    /// The namespace's own sinks (none when namespace sinks are off or it has no Secret).
    pub async fn namespace(&mut self, namespace: &str) -> Result<Vec<(SinkKey, Target)>, String> {
        if self.config.allowed_hosts.is_empty() {
            return Ok(Vec::new());
        }
        if let Some((at, targets)) = self.cache.get(namespace)
            && at.elapsed() < SECRET_TTL
        {
            return Ok(targets.clone());
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = secrets
            .get_opt(SECRET_NAME)
            .await
            .map_err(|err| format!("cannot read Secret {namespace}/{SECRET_NAME}: {err}"))?;
        let data = secret
            .and_then(|s| s.data)
            .map(|data| data.into_iter().map(|(k, v)| (k, v.0)).collect())
            .unwrap_or_default();
        let (targets, problems) = namespace_targets(&data, &self.config.allowed_hosts);
        if !problems.is_empty() && self.reported.get(namespace) != Some(&problems) {
            for problem in &problems {
                tracing::warn!(%namespace, secret = SECRET_NAME, "notification sink ignored: {problem}");
            }
        }
        self.reported.insert(namespace.to_string(), problems);
        self.cache.insert(namespace.to_string(), (Instant::now(), targets.clone()));
        Ok(targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn the_allow_list_matches_exact_hosts_subdomains_or_anything() {
        let allowed = vec!["hooks.slack.com".to_string(), "*.events.example.com".to_string()];
        assert!(host_allowed(&allowed, &url("https://hooks.slack.com/services/T/B/x")));
        assert!(host_allowed(&allowed, &url("https://ce.events.example.com/in")));
        assert!(!host_allowed(&allowed, &url("https://events.example.com.evil.io/")));
        assert!(!host_allowed(&allowed, &url("http://169.254.169.254/latest/meta-data")));
        assert!(!host_allowed(&allowed, &url("http://kubernetes.default.svc/")));
        assert!(host_allowed(&["*".to_string()], &url("http://10.0.0.1/")));
        assert!(!host_allowed(&[], &url("https://hooks.slack.com/")));
    }

    #[test]
    fn a_tenant_secret_naming_an_internal_address_is_refused_with_what_to_do() {
        let data = [
            (KEY_CLOUDEVENTS_URL.to_string(), b"http://10.0.0.7:8080/".to_vec()),
            (KEY_SLACK_URL.to_string(), b"https://hooks.slack.com/services/x".to_vec()),
        ]
        .into();
        let (targets, problems) = namespace_targets(&data, &["hooks.slack.com".to_string()]);
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].0.kind, Kind::Slack);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("10.0.0.7") && problems[0].contains("--notify-allowed-hosts"), "{problems:?}");
    }

    #[test]
    fn only_http_urls_are_sinks() {
        assert!(parse_url("file:///etc/passwd", "x").is_err());
        assert!(parse_url("not a url", "x").is_err());
        assert!(parse_url("https://example.com/hook", "x").is_ok());
    }

    #[test]
    fn sink_names_round_trip() {
        for scope in [Scope::Controller, Scope::Namespace] {
            for kind in [Kind::CloudEvents, Kind::Slack] {
                let key = SinkKey { scope, kind };
                assert_eq!(SinkKey::parse(key.name()), Some(key));
            }
        }
        assert_eq!(SinkKey::parse("elsewhere/slack"), None);
    }
}
