//! The `rampart-shadow` binary: flags, logging and signal handling around [`rampart_shadow::ShadowServer`].

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rampart_shadow::{Compare, PredictionPath, ShadowConfig, ShadowServer};

const EXAMPLE: &str = "\
HOW IT IS FED:
  In a shadow step the HTTPRoute mirrors each live request to the candidate. Point the inference logger of
  both model servers (KServe: spec.predictor.logger.url) at this service. Every logged response is a CloudEvent;
  the baseline's and the candidate's response to the same request share ce-id and are paired.

  Binary mode (attributes in headers, body = the model's JSON response):
    curl -X POST http://localhost:8080/ \\
      -H 'ce-specversion: 1.0' \\
      -H 'ce-id: 5a1c7e0e-0001' \\
      -H 'ce-type: org.kubeflow.serving.inference.response' \\
      -H 'ce-source: http://fraud-predictor.ml/' \\
      -H 'ce-inferenceservicename: fraud' \\
      -H 'ce-namespace: ml' \\
      -H 'ce-endpoint: canary' \\
      -H 'content-type: application/json' \\
      -d '{\"predictions\": [[0.1, 0.9]]}'

  ce-endpoint canary|candidate|shadow (see --candidate-endpoint) marks the candidate; anything else, or none,
  is the baseline. Structured mode (content-type: application/cloudevents+json) is accepted too.

  Metrics on GET /metrics: rampart_shadow_pairs_total, rampart_shadow_agreements_total,
  rampart_shadow_unpaired_total{side}, rampart_shadow_events_total{side,type},
  rampart_shadow_invalid_events_total{reason}, rampart_shadow_pending.";

/// Pairs baseline and candidate predictions of mirrored requests and exports agreement counters.
#[derive(Debug, Parser)]
#[command(name = "rampart-shadow", version, after_help = EXAMPLE)]
struct Args {
    /// Address to listen on for events, /metrics and /healthz.
    #[arg(long, default_value = "0.0.0.0:8080", env = "RAMPART_SHADOW_LISTEN")]
    listen: SocketAddr,

    /// A ce-endpoint value that means the candidate logged the event (repeatable). Default: canary, candidate,
    /// shadow.
    #[arg(long = "candidate-endpoint", value_name = "NAME")]
    candidate_endpoints: Vec<String>,

    /// Dotted path of the prediction in a response body, e.g. predictions.0 or outputs.0.data ("." = whole
    /// body). Default: predictions.0, then prediction, then outputs.0.data, then the whole body.
    #[arg(long, value_name = "PATH")]
    prediction_path: Option<String>,

    /// How predictions are compared: top1 (argmax of scores, or the scalar label) or numeric (with --tolerance).
    #[arg(long, value_enum, default_value_t = CompareMode::Top1)]
    compare: CompareMode,

    /// Numeric mode: largest difference still counted as agreement.
    #[arg(long, default_value_t = 0.0)]
    tolerance: f64,

    /// Numeric mode: --tolerance is relative to max(|baseline|, |candidate|) instead of absolute.
    #[arg(long)]
    relative: bool,

    /// Most unpaired responses held in memory; the oldest is evicted (and counted unpaired) beyond it.
    #[arg(long, default_value_t = 100_000)]
    max_pending: usize,

    /// How long a response waits for its partner, in seconds (e.g. 30 or 2.5).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pair_timeout: Duration,

    /// Most distinct (namespace, model) series; events of further models are refused (too_many_models).
    #[arg(long, default_value_t = 1000)]
    max_models: usize,

    /// Largest accepted event body in bytes (413 beyond).
    #[arg(long, default_value_t = 1024 * 1024)]
    max_event_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompareMode {
    Top1,
    Numeric,
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    let trimmed = value.trim().trim_end_matches('s');
    let seconds: f64 = trimmed.parse().map_err(|_| format!("{value:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{value:?} is not a usable duration"))
}

impl Args {
    fn config(self) -> Result<ShadowConfig, String> {
        let defaults = ShadowConfig::default();
        let prediction_path = match &self.prediction_path {
            Some(path) => PredictionPath::parse(path).map_err(|err| err.to_string())?,
            None => PredictionPath::Auto,
        };
        let compare = match self.compare {
            CompareMode::Top1 => Compare::Top1,
            CompareMode::Numeric => Compare::Numeric { tolerance: self.tolerance, relative: self.relative },
        };
        Ok(ShadowConfig {
            listen: self.listen,
            candidate_endpoints: if self.candidate_endpoints.is_empty() {
                defaults.candidate_endpoints
            } else {
                self.candidate_endpoints
            },
            prediction_path,
            compare,
            max_pending: self.max_pending,
            pair_timeout: self.pair_timeout,
            max_models: self.max_models,
            max_event_bytes: self.max_event_bytes,
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match Args::parse().config() {
        Ok(config) => config,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(?config, "starting rampart-shadow");
    let server = match ShadowServer::spawn(config).await {
        Ok(server) => server,
        Err(err) => {
            tracing::error!(error = %err, kind = err.metric_label(), "cannot start");
            return ExitCode::FAILURE;
        }
    };
    wait_for_stop_signal().await;
    tracing::info!("stopping");
    server.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
