//! The controller's own configuration (flags and environment), as opposed to a rollout's spec.

use std::time::Duration;

/// Settings for one controller process.
#[derive(Clone)]
pub struct ControllerConfig {
    /// Prometheus used when a rollout names none (`spec.analysis.prometheusAddress`).
    pub prometheus_url: String,
    /// Time limit of one Prometheus query.
    pub prometheus_timeout: Duration,
    /// Other Prometheus servers a rollout's `prometheusAddress` may name (scheme, host and port exact; path prefix by
    /// whole segments). `prometheus_url` is always allowed; any other address is refused before traffic.
    pub prometheus_allowed_urls: Vec<String>,
    /// Most time one analysis look spends on all of its queries together, so a slow endpoint cannot hold a reconcile
    /// slot for long (each query also has `prometheus_timeout`).
    pub prometheus_look_deadline: Duration,
    /// Namespace of the leader-election Lease.
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    pub lease_name: String,
    /// This replica's identity in the Lease (pod name, or host and pid).
    pub identity: String,
    /// How long a Lease stays valid without renewal; a new leader may take over after it.
    pub lease_duration: Duration,
    /// How often the leader renews the Lease.
    pub renew_interval: Duration,
    /// Default interval between analysis looks when a step sets none.
    pub default_analysis_interval: Duration,
    /// A look whose verdict is still Continue writes status at most this often (zero: every look).
    pub analysis_status_interval: Duration,
    /// Only watch this namespace (all namespaces when None).
    pub namespace: Option<String>,
    /// Time after a weight change before an analysis step starts counting: the gateway needs a moment to apply the
    /// new weights and Prometheus a scrape or two to see them. About twice the scrape interval; capped at half the
    /// step's duration.
    pub metrics_settle: Duration,
    /// The registry's Postgres URL; without one nothing is recorded (and promotion does not wait for a record).
    pub database_url: Option<String>,
    /// Public keys whose signatures are accepted (from a mounted Secret, never from a rollout).
    pub trusted_keys: Vec<rampart_checks::signing::TrustedKey>,
    /// Where each trusted key may vouch, by key label (`scopes.yaml` in the trusted-keys directory).
    pub key_scopes: crate::verify::KeyScopes,
    /// Whether `spec.checks.insecureSkipSignature` is honoured (test clusters only).
    pub allow_insecure_skip_signature: bool,
    /// Image of `rampart-check`, run by the contract-check and smoke-evaluation containers.
    pub check_image: String,
    /// ServiceAccount the check Jobs run under (never the controller's own).
    pub check_service_account: String,
    /// Image prefixes a smoke-training image must start with; empty allows none.
    pub smoke_image_allow_list: Vec<String>,
    /// Most reconciles running at once (0: unbounded). A bound keeps a burst of rollouts from queueing every API call
    /// behind every other, which is what delays a rollback under load.
    pub max_concurrent_reconciles: u16,
    /// Most reconciles of one namespace running at once (0: no per-namespace bound). A namespace at its bound waits
    /// without holding a slot, so rollouts that are slow to reconcile (a slow metrics endpoint) in one namespace leave
    /// slots for every other.
    pub max_reconciles_per_namespace: u16,
    /// Where notifications go and how they are retried (they need `database_url`: the queue lives in the registry).
    pub notifications: crate::notify::sinks::NotifyConfig,
    /// Models are not owned by namespaces in the registry: any namespace may roll out any model. Off by default
    /// (the first namespace to register a model owns it); for single-team clusters and the demo.
    pub shared_models: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            prometheus_url: "http://prometheus-operated.monitoring:9090".into(),
            prometheus_timeout: Duration::from_secs(5),
            prometheus_allowed_urls: Vec::new(),
            prometheus_look_deadline: Duration::from_secs(10),
            lease_namespace: "rampart-system".into(),
            lease_name: "rampart-controller".into(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            default_analysis_interval: Duration::from_secs(60),
            analysis_status_interval: Duration::ZERO,
            namespace: None,
            metrics_settle: Duration::from_secs(30),
            database_url: None,
            trusted_keys: Vec::new(),
            key_scopes: Default::default(),
            allow_insecure_skip_signature: false,
            check_image: format!("rampart/rampart-check:{}", env!("CARGO_PKG_VERSION")),
            check_service_account: "rampart-checks".into(),
            smoke_image_allow_list: Vec::new(),
            max_concurrent_reconciles: 16,
            max_reconciles_per_namespace: 8,
            notifications: Default::default(),
            shared_models: false,
        }
    }
}

/// `$POD_NAME`, else `<hostname>-<pid>`.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "rampart".into());
    format!("{}-{}", host.trim(), std::process::id())
}
