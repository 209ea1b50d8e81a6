//! `rampart-model-server`: the test model server as a process, for the demo. Serves `POST /predict` on 127.0.0.1 with
//! the given accuracy, error rate and latency, `/metrics` for Prometheus, and `PUT /admin/behaviour` (JSON such as
//! `{"accuracy": 0.85}`) to change its behaviour while it runs. With `--logger-url` it logs requests and responses
//! as KServe-logger CloudEvents (for `rampart-shadow`); with `--llm-metrics` it also exports vLLM-style metrics.
//! Stops on Ctrl-C or SIGTERM.

use std::time::Duration;

use clap::Parser;
use rampart_testenv::{ModelServer, ModelServerConfig};

/// A stand-in model server with configurable accuracy, errors and latency, exporting Prometheus metrics.
#[derive(Parser, Debug)]
#[command(name = "rampart-model-server")]
struct Args {
    /// The model version it plays (the `version` label of its metrics).
    #[arg(long)]
    model_version: String,
    /// The `namespace` label of its metrics.
    #[arg(long)]
    namespace: Option<String>,
    /// Port on 127.0.0.1 (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Probability that a labelled prediction is correct.
    #[arg(long, default_value_t = 0.9)]
    accuracy: f64,
    /// Probability that a request fails with HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Median latency in milliseconds (log-normal).
    #[arg(long, default_value_t = 10.0)]
    latency_median_ms: f64,
    /// Sigma of the latency's logarithm.
    #[arg(long, default_value_t = 0.25)]
    latency_sigma: f64,
    /// Number of classes (labels are 0..classes).
    #[arg(long, default_value_t = 10)]
    classes: u32,
    /// Seed for reproducible runs.
    #[arg(long)]
    seed: Option<u64>,
    /// Share of answers that differ from an identical model's (a shadow candidate that disagrees), 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    disagree: f64,
    /// Share of requests dropped: answered 503 with no response logged, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    drop: f64,
    /// Log every request and response as a KServe-logger CloudEvent to this URL, e.g. rampart-shadow's
    /// http://127.0.0.1:8080/ (binary mode; ce-id is the request's x-request-id).
    #[arg(long, value_name = "URL")]
    logger_url: Option<String>,
    /// The ce-endpoint of logged events: baseline or canary.
    #[arg(long, default_value = "baseline")]
    logger_endpoint: String,
    /// The ce-inferenceservicename of logged events.
    #[arg(long, default_value = "model")]
    logger_model: String,
    /// Also export vLLM-style metrics (time to first token, inter-token latency, HTTP requests by status).
    #[arg(long)]
    llm_metrics: bool,
    /// Median time to first token in milliseconds (with --llm-metrics).
    #[arg(long, default_value_t = 50.0)]
    time_to_first_token_ms: f64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let median = Duration::try_from_secs_f64(args.latency_median_ms / 1000.0)
        .map_err(|err| format!("--latency-median-ms {}: {err}", args.latency_median_ms))?;
    let mut config = ModelServerConfig::new(&args.model_version)
        .port(args.port)
        .accuracy(args.accuracy)
        .error_rate(args.error_rate)
        .latency(median, args.latency_sigma)
        .classes(args.classes);
    if let Some(namespace) = args.namespace {
        config = config.namespace(namespace);
    }
    if let Some(seed) = args.seed {
        config = config.seed(seed);
    }
    config.behaviour.disagree = args.disagree;
    config.behaviour.drop = args.drop;
    if let Some(url) = args.logger_url {
        config = config.logger(url, args.logger_endpoint, args.logger_model);
    }
    if args.llm_metrics {
        let first_token = Duration::try_from_secs_f64(args.time_to_first_token_ms / 1000.0)
            .map_err(|err| format!("--time-to-first-token-ms {}: {err}", args.time_to_first_token_ms))?;
        config = config.llm_metrics().time_to_first_token(first_token, 0.25);
    }
    let server = ModelServer::spawn(config).await?;
    println!("rampart-model-server: version {} listening on {}", server.version(), server.url());
    shutdown_signal().await?;
    server.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}
