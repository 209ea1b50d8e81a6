//! `rampart-model-server`: the test model server as a process, for the demo. Serves `POST /predict` on 127.0.0.1 with
//! the given accuracy, error rate and latency, `/metrics` for Prometheus, and `PUT /admin/behaviour` (JSON such as
//! `{"accuracy": 0.85}`) to change its behaviour while it runs. Stops on Ctrl-C or SIGTERM.

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
