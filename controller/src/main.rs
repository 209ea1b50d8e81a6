//! `rampart-controller`: the operator process. Flags and environment variables configure it; `/metrics`, `/healthz`
//! and `/readyz` are served on `--metrics-address`; SIGTERM/SIGINT shut it down gracefully, releasing the lease.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use clap::Parser;
use rampart_controller::notify::sinks::NotifyConfig;
use rampart_controller::{ControllerConfig, Metrics};
use tokio::sync::watch;

/// Rampart's operator: rolls ModelRollouts out with statistical canary analysis.
///
/// Examples:
///   rampart-controller --prometheus-url http://prometheus.monitoring:9090
///   KUBECONFIG=~/.kube/config rampart-controller --lease-namespace default --log-format text
#[derive(Parser, Debug)]
#[command(name = "rampart-controller", version, about, verbatim_doc_comment)]
struct Args {
    /// Prometheus used when a rollout does not name one.
    #[arg(long, env = "RAMPART_PROMETHEUS_URL", default_value = "http://prometheus-operated.monitoring:9090")]
    prometheus_url: String,
    /// Time limit of one Prometheus query, in seconds.
    #[arg(long, env = "RAMPART_PROMETHEUS_TIMEOUT_SECONDS", default_value_t = 5.0)]
    prometheus_timeout_seconds: f64,
    /// Another Prometheus a rollout's spec.analysis.prometheusAddress may name (repeat, or comma-separate in the
    /// environment), e.g. https://metrics.example.com/prom: scheme, host and port must match exactly, the path by whole
    /// segments. --prometheus-url is always allowed; other addresses are refused before any traffic moves.
    #[arg(long = "prometheus-allowed-url", env = "RAMPART_PROMETHEUS_ALLOWED_URLS", value_delimiter = ',')]
    prometheus_allowed_urls: Vec<String>,
    /// Most seconds one analysis look may spend on all its Prometheus queries together.
    #[arg(long, env = "RAMPART_PROMETHEUS_LOOK_DEADLINE_SECONDS", default_value_t = 10.0)]
    prometheus_look_deadline_seconds: f64,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "RAMPART_LEASE_NAMESPACE", default_value = "rampart-system")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, env = "RAMPART_LEASE_NAME", default_value = "rampart-controller")]
    lease_name: String,
    /// This replica's identity in the Lease. Default: $POD_NAME, else <hostname>-<pid>.
    #[arg(long, env = "RAMPART_IDENTITY")]
    identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "RAMPART_LEASE_DURATION_SECONDS", default_value_t = 15.0)]
    lease_duration_seconds: f64,
    /// Seconds between Lease renewals.
    #[arg(long, env = "RAMPART_RENEW_INTERVAL_SECONDS", default_value_t = 5.0)]
    renew_interval_seconds: f64,
    /// Only watch this namespace (default: all namespaces).
    #[arg(long, env = "RAMPART_NAMESPACE")]
    namespace: Option<String>,
    /// Seconds after a weight change before an analysis step starts counting (about twice the scrape interval).
    #[arg(long, env = "RAMPART_METRICS_SETTLE_SECONDS", default_value_t = 30.0)]
    metrics_settle_seconds: f64,
    /// While an analysis is still undecided, write its status at most this often, in seconds (each look is still
    /// taken; a changed verdict is written at once). 0 (the default) writes every look; large fleets with short look
    /// intervals can trade status freshness for API-server load.
    #[arg(long, env = "RAMPART_ANALYSIS_STATUS_INTERVAL_SECONDS", default_value_t = 0.0)]
    analysis_status_interval_seconds: f64,
    /// Postgres URL of the registry (every rollout, step, verdict and rollback is recorded there).
    #[arg(long, env = "RAMPART_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Directory of trusted public signing keys (*.pem, *.pub), e.g. a mounted Secret. An optional `scopes.yaml` there
    /// limits keys to namespaces and models: `team-ml.pub: {namespaces: [ml], models: ["fraud-*"]}`.
    #[arg(long, env = "RAMPART_TRUSTED_KEYS_DIR")]
    trusted_keys_dir: Option<std::path::PathBuf>,
    /// Honour spec.checks.insecureSkipSignature (unsigned models get traffic). For test clusters only.
    #[arg(long, env = "RAMPART_ALLOW_INSECURE_SKIP_SIGNATURE")]
    allow_insecure_skip_signature: bool,
    /// Image of rampart-check for the contract-check and smoke-evaluation Jobs.
    #[arg(long, env = "RAMPART_CHECK_IMAGE")]
    check_image: Option<String>,
    /// ServiceAccount the check Jobs run under (not the controller's own).
    #[arg(long, env = "RAMPART_CHECK_SERVICE_ACCOUNT", default_value = "rampart-checks")]
    check_service_account: String,
    /// Allowed smoke-training image prefixes, comma-separated (e.g. registry.example.com/ml/). None allowed by default.
    #[arg(long, env = "RAMPART_SMOKE_IMAGE_ALLOW", value_delimiter = ',')]
    smoke_image_allow: Vec<String>,
    /// Let every namespace roll out every model: no per-namespace model ownership in the registry (single-team
    /// clusters, the demo). By default the first namespace to register a model owns it.
    #[arg(long, env = "RAMPART_SHARED_MODELS")]
    shared_models: bool,
    /// Most reconciles running at once (0: unbounded).
    #[arg(long, env = "RAMPART_MAX_CONCURRENT_RECONCILES", default_value_t = 16)]
    max_concurrent_reconciles: u16,
    /// Most reconciles of one namespace at once (0: no bound); keep it below --max-concurrent-reconciles so one
    /// team's slow rollouts cannot take every slot.
    #[arg(long, env = "RAMPART_MAX_RECONCILES_PER_NAMESPACE", default_value_t = 8)]
    max_reconciles_per_namespace: u16,
    /// Controller-wide CloudEvents receiver: every rollout's deployed / upgraded / rolled-back events (CDEvents types)
    /// are POSTed there. Needs --database-url (the delivery queue lives in the registry).
    #[arg(long, env = "RAMPART_NOTIFY_CLOUDEVENTS_URL", hide_env_values = true)]
    notify_cloudevents_url: Option<String>,
    /// CloudEvents HTTP content mode of the controller-wide receiver: binary or structured.
    #[arg(long, env = "RAMPART_NOTIFY_CLOUDEVENTS_MODE", default_value = "binary")]
    notify_cloudevents_mode: String,
    /// Controller-wide Slack-style incoming webhook (a credential: prefer the environment variable from a Secret).
    #[arg(long, env = "RAMPART_NOTIFY_SLACK_WEBHOOK_URL", hide_env_values = true)]
    notify_slack_webhook_url: Option<String>,
    /// Hosts a namespace's `rampart-notifications` Secret may send to, comma-separated: `host`, `*.domain`, or `*`
    /// for any. Empty (the default): namespace sinks are off, so tenants cannot make the controller call internal
    /// addresses.
    #[arg(long, env = "RAMPART_NOTIFY_ALLOWED_HOSTS", value_delimiter = ',')]
    notify_allowed_hosts: Vec<String>,
    /// Longest wait between two attempts of one notification, in seconds.
    #[arg(long, env = "RAMPART_NOTIFY_RETRY_MAX_SECONDS", default_value_t = 300.0)]
    notify_retry_max_seconds: f64,
    /// Give up on a notification still undelivered this long after it was queued, in seconds.
    #[arg(long, env = "RAMPART_NOTIFY_GIVE_UP_SECONDS", default_value_t = 86400.0)]
    notify_give_up_seconds: f64,
    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, env = "RAMPART_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Log format: json (default) or text.
    #[arg(long, env = "RAMPART_LOG_FORMAT", default_value = "json")]
    log_format: String,
}

fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{flag} must be a positive number of seconds, got {value}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    if args.log_format == "text" {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    }
    let config = match build_config(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("rampart-controller: {message}");
            return ExitCode::from(2);
        }
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(err) => {
            eprintln!(
                "rampart-controller: cannot reach Kubernetes: {err}\nRun in a cluster with a ServiceAccount, or set \
                 KUBECONFIG to a kubeconfig file."
            );
            return ExitCode::from(2);
        }
    };
    let metrics = Metrics::default();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let listener = match tokio::net::TcpListener::bind(args.metrics_address).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("rampart-controller: cannot listen on {}: {err}", args.metrics_address);
            return ExitCode::from(2);
        }
    };
    let served = metrics.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let served = served.clone();
                async move { served.encode() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }));
    let mut http_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_shutdown.changed().await;
            })
            .await;
    });

    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down");
        let _ = shutdown_tx.send(true);
    });
    tracing::info!(identity = %config.identity, metrics = %args.metrics_address, "rampart-controller starting");
    rampart_controller::run(client, config, metrics, shutdown_rx).await;
    let _ = server.await;
    ExitCode::SUCCESS
}

fn build_config(args: &Args) -> Result<ControllerConfig, String> {
    let trusted_keys = match &args.trusted_keys_dir {
        Some(dir) => rampart_controller::verify::load_trusted_keys(dir)?,
        None => Vec::new(),
    };
    let mut config = ControllerConfig {
        prometheus_url: args.prometheus_url.clone(),
        prometheus_timeout: seconds(args.prometheus_timeout_seconds, "prometheus-timeout-seconds")?,
        prometheus_allowed_urls: args.prometheus_allowed_urls.iter().filter(|u| !u.is_empty()).cloned().collect(),
        prometheus_look_deadline: seconds(args.prometheus_look_deadline_seconds, "prometheus-look-deadline-seconds")?,
        lease_namespace: args.lease_namespace.clone(),
        lease_name: args.lease_name.clone(),
        lease_duration: seconds(args.lease_duration_seconds, "lease-duration-seconds")?,
        renew_interval: seconds(args.renew_interval_seconds, "renew-interval-seconds")?,
        namespace: args.namespace.clone(),
        metrics_settle: seconds(args.metrics_settle_seconds, "metrics-settle-seconds")?,
        analysis_status_interval: seconds(args.analysis_status_interval_seconds, "analysis-status-interval-seconds")?,
        database_url: args.database_url.clone(),
        trusted_keys: trusted_keys.clone(),
        key_scopes: match &args.trusted_keys_dir {
            Some(dir) => rampart_controller::verify::load_key_scopes(dir, &trusted_keys)?,
            None => Default::default(),
        },
        allow_insecure_skip_signature: args.allow_insecure_skip_signature,
        check_service_account: args.check_service_account.clone(),
        smoke_image_allow_list: args.smoke_image_allow.iter().filter(|p| !p.is_empty()).cloned().collect(),
        max_concurrent_reconciles: args.max_concurrent_reconciles,
        max_reconciles_per_namespace: args.max_reconciles_per_namespace,
        notifications: notify_config(args)?,
        shared_models: args.shared_models,
        ..ControllerConfig::default()
    };
    if let Some(image) = &args.check_image {
        config.check_image = image.clone();
    }
    if let Some(identity) = &args.identity {
        config.identity = identity.clone();
    }
    rampart_controller::prometheus::AllowList::new(&config.prometheus_url, &config.prometheus_allowed_urls)?;
    if config.renew_interval >= config.lease_duration {
        return Err("--renew-interval-seconds must be shorter than --lease-duration-seconds".into());
    }
    Ok(config)
}

fn notify_config(args: &Args) -> Result<NotifyConfig, String> {
    use rampart_controller::notify::render::ContentMode;
    use rampart_controller::notify::sinks::parse_url;
    let url = |value: &Option<String>, flag: &str| -> Result<Option<String>, String> {
        match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => parse_url(v, &format!("--{flag}")).map(|_| Some(v.to_string())),
            None => Ok(None),
        }
    };
    Ok(NotifyConfig {
        cloudevents_url: url(&args.notify_cloudevents_url, "notify-cloudevents-url")?,
        cloudevents_mode: ContentMode::parse(&args.notify_cloudevents_mode)
            .map_err(|err| format!("--notify-cloudevents-mode: {err}"))?,
        slack_webhook_url: url(&args.notify_slack_webhook_url, "notify-slack-webhook-url")?,
        allowed_hosts: args
            .notify_allowed_hosts
            .iter()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect(),
        retry_max: seconds(args.notify_retry_max_seconds, "notify-retry-max-seconds")?,
        give_up_after: seconds(args.notify_give_up_seconds, "notify-give-up-seconds")?,
        ..NotifyConfig::default()
    })
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
