//! `rampart-load-driver`: the test load driver as a process, for the demo. Reads the traffic split of an HTTPRoute or
//! InferenceService from the API server and sends labelled prediction requests to the model servers at a fixed rate,
//! printing what went where every few seconds. Stops on Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rampart_testenv::{LoadDriver, RouteSource};

/// Sends prediction traffic to model servers as an HTTPRoute's weights (or an InferenceService's canary percent) say.
#[derive(Parser, Debug)]
#[command(name = "rampart-load-driver")]
struct Args {
    /// Kubeconfig of the cluster holding the route (default: the usual kubeconfig lookup).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the route.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Follow this Gateway API HTTPRoute's backendRef weights.
    #[arg(long, conflicts_with = "inference_service", required_unless_present = "inference_service")]
    httproute: Option<String>,
    /// Follow this KServe InferenceService's canaryTrafficPercent (needs --baseline and --canary).
    #[arg(long, requires_all = ["baseline", "canary"])]
    inference_service: Option<String>,
    /// With --inference-service: the backend that gets the non-canary share.
    #[arg(long)]
    baseline: Option<String>,
    /// With --inference-service: the backend that gets canaryTrafficPercent.
    #[arg(long)]
    canary: Option<String>,
    /// A backend: SERVICE=127.0.0.1:PORT (repeat for each backend).
    #[arg(long = "backend", value_parser = parse_backend, required = true)]
    backends: Vec<(String, SocketAddr)>,
    /// Requests per second, all backends together.
    #[arg(long, default_value_t = 50.0)]
    rps: f64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5)]
    report_every: u64,
}

fn parse_backend(text: &str) -> Result<(String, SocketAddr), String> {
    let (name, address) = text.split_once('=').ok_or("expected SERVICE=127.0.0.1:PORT")?;
    let address: SocketAddr = address.parse().map_err(|err| format!("{address}: {err}"))?;
    Ok((name.to_string(), address))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = match &args.kubeconfig {
        Some(path) => rampart_testenv::client_from_kubeconfig(path).await?,
        None => kube::Client::try_default().await?,
    };
    let route = match (args.httproute, args.inference_service, args.baseline, args.canary) {
        (Some(name), _, _, _) => RouteSource::http_route(name),
        (None, Some(name), Some(baseline), Some(canary)) => RouteSource::inference_service(name, baseline, canary),
        _ => return Err("give --httproute NAME, or --inference-service NAME --baseline B --canary C".into()),
    };
    let backends: BTreeMap<String, SocketAddr> = args.backends.into_iter().collect();
    let driver = LoadDriver::start(client, &args.namespace, route, backends, args.rps).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut report = tokio::time::interval(Duration::from_secs(args.report_every.max(1)));
    report.tick().await;
    loop {
        tokio::select! {
            _ = report.tick() => print_counts(&driver),
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    let counts = driver.stop().await;
    println!("final: {counts:?}");
    Ok(())
}

fn print_counts(driver: &LoadDriver) {
    let shares = driver.split().shares();
    let line: Vec<String> = driver
        .counts()
        .iter()
        .map(|(name, counts)| {
            format!(
                "{name}: share {:.0}% sent {} ok {} failed {} dropped {}",
                shares.get(name).copied().unwrap_or(0.0) * 100.0,
                counts.sent,
                counts.succeeded,
                counts.failed,
                counts.dropped
            )
        })
        .collect();
    let error = driver.last_error().map(|err| format!(" (last error: {err})")).unwrap_or_default();
    println!("{}; unrouted {}{error}", line.join("; "), driver.unrouted());
}
