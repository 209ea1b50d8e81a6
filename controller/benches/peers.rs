//! Side-by-side bench: Rampart, Flagger and Argo Rollouts (both built from Go modules by `testenv/build-peers`) roll
//! out the same candidates on the same test API server, Prometheus, model servers and load driver, one controller at
//! a time, with the bench playing the Deployment and ReplicaSet controllers and the kubelet for all of them.
//! Scenarios: a candidate 5 or 2 accuracy points worse, one with p95 latency +30%, an equal (A/A) one, and one that
//! gets no traffic although its weight says 20%. Prints, per scenario and controller, rollbacks, first canary request
//! -> weight 0 (median, p90), canary requests served before the rollback, the A/A false rollback rate (Wilson 95%
//! interval) and time to promotion; and per controller the API requests per rollout and peak RSS. Figures and the
//! exact configurations: docs/benchmarks.md.
//!
//! Run: `scripts/bench-peers` (builds the peers, then `cargo bench -p rampart-controller --bench peers`).
//! `RAMPART_PEERS_RUNS` (runs per regression scenario, default 20), `RAMPART_PEERS_AA_RUNS` (A/A runs, default 100),
//! `RAMPART_PEERS_CONTROLLERS` (default `rampart,flagger,argo`), `RAMPART_PEERS_FLAGGER_INTERVAL` (seconds, default
//! 10: the fastest Flagger accepts), `RAMPART_PEERS_FLAGGER_THRESHOLD` (default 5), `RAMPART_PEERS_ARGO_INTERVAL`
//! (seconds, default 10), `RAMPART_PEERS_ARGO_FAILURE_LIMIT` (default 3), `RAMPART_PEERS_ARGO_LOGLEVEL` (default
//! `warn`), `RAMPART_PEERS_RPS` (requests per second per run, default 100), `RAMPART_PEERS_CONCURRENCY` (runs at
//! once, default 12) and `RAMPART_PEERS_DEADLINE_SECONDS` (per run, default 300) change the size.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use rampart_testenv::load_driver::{LoadDriver, LoadOptions, RouteSource};
use rampart_testenv::model_server::{ModelServer, ModelServerConfig};
use rampart_testenv::{Prometheus, PrometheusOptions};
use serde_json::{Value, json};

/// The controllers authenticate as this ServiceAccount, one at a time: the API server counts requests per user only
/// for a few well-known names (`authenticated_user_requests{username}`), and this is one of them.
const CONTROLLER_USER: &str = "system:serviceaccount:kube-system:default";
/// Baseline accuracy and latency; every scenario changes the canary only.
const BASELINE_ACCURACY: f64 = 0.90;
const MEDIAN_LATENCY: Duration = Duration::from_millis(10);
const LATENCY_SIGMA: f64 = 0.25;
/// Non-inferiority margin on accuracy (absolute) for Rampart, and the same margin as Flagger's threshold on the
/// canary-minus-primary accuracy.
const ACCURACY_MARGIN: f64 = 0.01;
/// Allowed p95 slack: Rampart's `thresholdSlack`, Flagger's maximum canary/primary p95 ratio minus one.
const LATENCY_SLACK: f64 = 0.10;
/// The weight every controller starts the canary at.
const FIRST_WEIGHT: u32 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    AccuracyMinus5,
    AccuracyMinus2,
    LatencyPlus30,
    Equal,
    NoCanaryTraffic,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::AccuracyMinus5,
        Scenario::AccuracyMinus2,
        Scenario::LatencyPlus30,
        Scenario::Equal,
        Scenario::NoCanaryTraffic,
    ];

    fn label(self) -> &'static str {
        match self {
            Scenario::AccuracyMinus5 => "accuracy -5 points",
            Scenario::AccuracyMinus2 => "accuracy -2 points",
            Scenario::LatencyPlus30 => "p95 latency +30%",
            Scenario::Equal => "A/A (equal candidate)",
            Scenario::NoCanaryTraffic => "no canary traffic at 20%",
        }
    }

    fn canary(self, namespace: &str) -> ModelServerConfig {
        let config = ModelServerConfig::new("v2").namespace(namespace);
        match self {
            Scenario::AccuracyMinus5 => {
                config.accuracy(BASELINE_ACCURACY - 0.05).latency(MEDIAN_LATENCY, LATENCY_SIGMA)
            }
            Scenario::AccuracyMinus2 => {
                config.accuracy(BASELINE_ACCURACY - 0.02).latency(MEDIAN_LATENCY, LATENCY_SIGMA)
            }
            // Same shape, median (and so every quantile, p95 included) 30% higher.
            Scenario::LatencyPlus30 => {
                config.accuracy(BASELINE_ACCURACY).latency(MEDIAN_LATENCY * 13 / 10, LATENCY_SIGMA)
            }
            Scenario::Equal | Scenario::NoCanaryTraffic => {
                config.accuracy(BASELINE_ACCURACY).latency(MEDIAN_LATENCY, LATENCY_SIGMA)
            }
        }
    }

    fn is_regression(self) -> bool {
        self != Scenario::Equal
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Controller {
    Rampart,
    Flagger,
    Argo,
}

impl Controller {
    fn canary_backend(self) -> &'static str {
        "model-canary"
    }

    fn baseline_backend(self) -> &'static str {
        match self {
            Controller::Rampart => "model",
            Controller::Flagger => "model-primary",
            Controller::Argo => "model-stable",
        }
    }

    /// Where the load driver reads the split: Rampart and Flagger write an HTTPRoute, Argo Rollouts (through its
    /// Istio traffic router) a VirtualService.
    fn route(self) -> RouteSource {
        match self {
            Controller::Rampart | Controller::Flagger => RouteSource::http_route("model"),
            Controller::Argo => RouteSource::virtual_service("model"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    RolledBack,
    Promoted,
    Unfinished,
}

/// What one run saw, from the load driver's side (what the users of the gateway got).
#[derive(Clone, Debug)]
struct RunResult {
    scenario: Scenario,
    outcome: Outcome,
    /// Seconds from the first canary request (or, with no canary traffic, the first canary weight) to the driver
    /// reading weight 0 again.
    to_weight_zero: Option<f64>,
    /// Seconds from the first canary request (or weight) to the controller reporting the rollout done.
    to_finish: Option<f64>,
    /// Requests the canary answered before the driver read weight 0 (the whole run when it never did).
    canary_requests: u64,
    /// Rampart: its analysis Events by reason (passed, inconclusive, ...); Flagger: `failedChecks`, the most seen.
    analysis: BTreeMap<String, u64>,
    message: String,
}

struct Settings {
    runs: usize,
    aa_runs: usize,
    rps: f64,
    flagger_interval: u64,
    flagger_threshold: u32,
    argo_interval: u64,
    argo_failure_limit: u32,
    /// Longest one run may take, from its start.
    deadline: Duration,
    /// Runs in flight at once (the rest wait their turn), so the machine keeps up with the load.
    concurrency: usize,
}

fn env_or<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let settings = Settings {
        runs: env_or("RAMPART_PEERS_RUNS", 20),
        aa_runs: env_or("RAMPART_PEERS_AA_RUNS", 100),
        rps: env_or("RAMPART_PEERS_RPS", 100.0),
        flagger_interval: env_or("RAMPART_PEERS_FLAGGER_INTERVAL", 10),
        flagger_threshold: env_or("RAMPART_PEERS_FLAGGER_THRESHOLD", 5),
        argo_interval: env_or("RAMPART_PEERS_ARGO_INTERVAL", 10),
        argo_failure_limit: env_or("RAMPART_PEERS_ARGO_FAILURE_LIMIT", 3),
        deadline: Duration::from_secs(env_or("RAMPART_PEERS_DEADLINE_SECONDS", 300)),
        concurrency: env_or("RAMPART_PEERS_CONCURRENCY", 12usize).max(1),
    };
    let controllers: Vec<String> = std::env::var("RAMPART_PEERS_CONTROLLERS")
        .unwrap_or_else(|_| "rampart,flagger,argo".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let peers_dir = std::env::var_os("RAMPART_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| rampart_testenv::repo_root().join("target/peers"));
    let bins = PeerBinaries { flagger: peers_dir.join("bin/flagger"), argo: peers_dir.join("bin/rollouts-controller") };

    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    // Its own Prometheus: a 1 s scrape keeps a hundred-odd targets cheap on a small machine.
    let prometheus =
        Arc::new(Prometheus::start_with(PrometheusOptions::default().scrape_interval(Duration::from_secs(1))).unwrap());
    let kubeconfig = controller_kubeconfig(&client).await;
    let _deployments = tokio::spawn(play_status::<Deployment>(client.clone(), rampart_testenv::rolled_out_status));
    let _replica_sets = tokio::spawn(play_status::<ReplicaSet>(client.clone(), replica_set_ready));
    let load_at_start = load_average();

    let mut report = Vec::new();
    for name in &controllers {
        let controller = match name.as_str() {
            "rampart" => Controller::Rampart,
            "flagger" => {
                if !bins.flagger.exists() {
                    println!("- flagger: not built ({}): run testenv/build-peers first", bins.flagger.display());
                    continue;
                }
                rampart_testenv::install_crds(&client, &[peers_dir.join("crds")]).await.unwrap();
                Controller::Flagger
            }
            "argo" => {
                if !bins.argo.exists() {
                    println!("- argo: not built ({}): run testenv/build-peers first", bins.argo.display());
                    continue;
                }
                // Argo Rollouts' CRDs and Istio's VirtualService CRD, both from their modules' own sources.
                rampart_testenv::install_crds(&client, &[peers_dir.join("crds-argo")]).await.unwrap();
                Controller::Argo
            }
            other => {
                println!("- unknown controller {other:?} in RAMPART_PEERS_CONTROLLERS (rampart, flagger, argo)");
                continue;
            }
        };
        let phase = run_phase(controller, &settings, &client, &prometheus, kubeconfig.path(), &bins).await;
        report.push((controller, phase));
    }

    println!();
    println!("## Side by side");
    println!();
    println!(
        "- runs per regression scenario: {}; A/A runs: {}; {} requests/s per run, {} runs at a time; Flagger interval \
         {} s, threshold {}; Argo Rollouts interval {} s, failureLimit {}; a run gives up after {} s",
        settings.runs,
        settings.aa_runs,
        settings.rps,
        settings.concurrency,
        settings.flagger_interval,
        settings.flagger_threshold,
        settings.argo_interval,
        settings.argo_failure_limit,
        settings.deadline.as_secs(),
    );
    println!("- load average (1 min) at start and end: {load_at_start} / {}", load_average());
    println!();
    println!(
        "| scenario | controller | rolled back | promoted | unfinished | first canary request -> weight 0, median / p90 (s) \
         | canary requests before weight 0, median / p90 | time to promotion, median / p90 (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for scenario in Scenario::ALL {
        for (controller, phase) in &report {
            let runs: Vec<&RunResult> = phase.results.iter().filter(|r| r.scenario == scenario).collect();
            if runs.is_empty() {
                continue;
            }
            let count = |o: Outcome| runs.iter().filter(|r| r.outcome == o).count();
            let rolled_back: Vec<&&RunResult> = runs.iter().filter(|r| r.outcome == Outcome::RolledBack).collect();
            let mut to_zero: Vec<f64> = rolled_back.iter().filter_map(|r| r.to_weight_zero).collect();
            let mut exposed: Vec<f64> = rolled_back.iter().map(|r| r.canary_requests as f64).collect();
            let mut to_promotion: Vec<f64> =
                runs.iter().filter(|r| r.outcome == Outcome::Promoted).filter_map(|r| r.to_finish).collect();
            let n = runs.len();
            let rolled = count(Outcome::RolledBack);
            let rolled_text = if scenario.is_regression() {
                format!("{rolled}/{n}")
            } else {
                let (low, high) = wilson(rolled, n);
                format!(
                    "{rolled}/{n} (false rollback rate {:.0}%, 95% CI {:.0}-{:.0}%)",
                    pct(rolled, n),
                    low * 100.0,
                    high * 100.0
                )
            };
            println!(
                "| {} | {:?} | {rolled_text} | {} | {} | {} | {} | {} |",
                scenario.label(),
                controller,
                count(Outcome::Promoted),
                count(Outcome::Unfinished),
                median_p90(&mut to_zero, 1),
                median_p90(&mut exposed, 0),
                median_p90(&mut to_promotion, 1),
            );
        }
    }
    println!();
    for scenario in Scenario::ALL {
        for (controller, phase) in &report {
            let runs: Vec<&RunResult> = phase.results.iter().filter(|r| r.scenario == scenario).collect();
            if runs.is_empty() {
                continue;
            }
            let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
            let mut runs_with: BTreeMap<&str, usize> = BTreeMap::new();
            for run in &runs {
                for (what, count) in &run.analysis {
                    *totals.entry(what).or_default() += count;
                    if *count > 0 {
                        *runs_with.entry(what).or_default() += 1;
                    }
                }
            }
            let text: Vec<String> = totals
                .iter()
                .map(|(what, total)| {
                    format!("{what}: {total} in all, in {} of {} runs", runs_with.get(what).unwrap_or(&0), runs.len())
                })
                .collect();
            println!("- {}, {controller:?}: {}", scenario.label(), text.join("; "));
        }
    }
    println!();
    for (controller, phase) in &report {
        let rollouts = phase.results.len().max(1);
        println!(
            "- {controller:?}: {:.0} API requests for {} rollouts = {:.1} per rollout; peak RSS {:.1} MiB; phase wall \
             time {:.0} s",
            phase.api_requests,
            phase.results.len(),
            phase.api_requests / rollouts as f64,
            phase.peak_rss_kib as f64 / 1024.0,
            phase.wall.as_secs_f64(),
        );
        println!(
            "  - API server requests by verb and resource during the phase, all clients (bench included), top 10:"
        );
        for (what, count) in phase.requests_by_resource.iter().take(10) {
            println!("    - {what}: {count:.0}");
        }
        let mut shown = 0;
        for result in &phase.results {
            let unexpected = (result.scenario.is_regression() && result.outcome != Outcome::RolledBack)
                || (!result.scenario.is_regression() && result.outcome != Outcome::Promoted);
            if unexpected && shown < 6 {
                println!("  - {} -> {:?}: {}", result.scenario.label(), result.outcome, result.message);
                shown += 1;
            }
        }
    }
}

fn pct(k: usize, n: usize) -> f64 {
    if n == 0 { f64::NAN } else { 100.0 * k as f64 / n as f64 }
}

/// Wilson score 95% interval for k successes out of n.
fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let (k, n, z) = (k as f64, n as f64, 1.959_964);
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// "median / p90" (nearest rank), or "-" when there is nothing to report.
fn median_p90(values: &mut [f64], decimals: usize) -> String {
    if values.is_empty() {
        return "-".into();
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    format!("{:.decimals$} / {:.decimals$} (n = {})", at(0.5), at(0.9), values.len())
}

struct PhaseResult {
    results: Vec<RunResult>,
    api_requests: f64,
    peak_rss_kib: u64,
    wall: Duration,
    requests_by_resource: Vec<(String, f64)>,
}

/// Runs every scenario's runs at once against one controller process, and measures that process.
async fn run_phase(
    controller: Controller,
    settings: &Settings,
    client: &kube::Client,
    prometheus: &Arc<Prometheus>,
    kubeconfig: &std::path::Path,
    bins: &PeerBinaries,
) -> PhaseResult {
    let env = rampart_testenv::shared().unwrap();
    // Scenarios take turns, so each meets the same mix of load over the phase.
    let count = |scenario: Scenario| if scenario.is_regression() { settings.runs } else { settings.aa_runs };
    let most = Scenario::ALL.iter().map(|s| count(*s)).max().unwrap_or(0);
    let plan: Vec<Scenario> =
        (0..most).flat_map(|i| Scenario::ALL.into_iter().filter(move |s| i < count(*s))).collect();
    // Each run sets up its own namespace and model servers when its turn comes, so Prometheus scrapes only the
    // runs in flight.
    eprintln!("{controller:?}: {} runs, {} at a time", plan.len(), settings.concurrency);
    let metrics_port = rampart_testenv::free_port().unwrap();
    let apiserver_before = apiserver_metrics().await;
    let mut process = match controller {
        Controller::Rampart => std::process::Command::new(env!("CARGO_BIN_EXE_rampart-controller"))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .args(["--prometheus-url", &prometheus.url(), "--prometheus-timeout-seconds", "10"])
            .args(["--lease-namespace", "kube-system", "--identity", "peers-bench"])
            .args(["--metrics-address", &format!("127.0.0.1:{metrics_port}"), "--log-format", "json"])
            // Twice the 1 s scrape interval (the default, 30 s, suits a 15 s scrape).
            .args(["--metrics-settle-seconds", "2", "--allow-insecure-skip-signature"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        Controller::Flagger => std::process::Command::new(&bins.flagger)
            .arg(format!("-kubeconfig={}", kubeconfig.display()))
            .arg("-mesh-provider=gatewayapi:v1")
            .arg(format!("-metrics-server={}", prometheus.url()))
            .arg(format!("-port={metrics_port}"))
            .arg("-log-level=warning")
            .arg("-enable-config-tracking=false")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
        // One replica, so no leader election; everything else at its defaults (client QPS 40, burst 80).
        Controller::Argo => std::process::Command::new(&bins.argo)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--leader-elect=false")
            .arg(format!("--metricsPort={metrics_port}"))
            .arg(format!("--healthzPort={}", rampart_testenv::free_port().unwrap()))
            .arg(format!("--loglevel={}", env_or("RAMPART_PEERS_ARGO_LOGLEVEL", "warn".to_string())))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(argo_log())
            .spawn()
            .unwrap(),
    };
    let pid = process.id();
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.concurrency));
    let rss = Arc::new(Mutex::new(0u64));
    let sampler = {
        let rss = rss.clone();
        tokio::spawn(async move {
            loop {
                let now = proc_status_kib(pid, "VmHWM:");
                {
                    let mut peak = rss.lock().unwrap();
                    *peak = (*peak).max(now);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = plan.len();
    let tasks: Vec<_> = plan
        .into_iter()
        .map(|scenario| {
            let (done, slots, client, prometheus) = (done.clone(), slots.clone(), client.clone(), prometheus.clone());
            let (rps, limit) = (settings.rps, settings.deadline);
            let (flagger_interval, flagger_threshold) = (settings.flagger_interval, settings.flagger_threshold);
            let (argo_interval, argo_failure_limit) = (settings.argo_interval, settings.argo_failure_limit);
            tokio::spawn(async move {
                let _slot = slots.acquire_owned().await.unwrap();
                let namespace = env.namespace(&client, &format!("{controller:?}").to_lowercase()).await.unwrap();
                let baseline = ModelServer::spawn(
                    ModelServerConfig::new("v1")
                        .namespace(&namespace)
                        .accuracy(BASELINE_ACCURACY)
                        .latency(MEDIAN_LATENCY, LATENCY_SIGMA),
                )
                .await
                .unwrap();
                let canary = ModelServer::spawn(scenario.canary(&namespace)).await.unwrap();
                let targets = [baseline.addr().to_string(), canary.addr().to_string()];
                for target in &targets {
                    prometheus.add_target(target, &[]).unwrap();
                }
                for target in &targets {
                    prometheus.wait_for_target(target, Duration::from_secs(120)).await.unwrap();
                }
                let backends: BTreeMap<String, SocketAddr> = [
                    (controller.baseline_backend().to_string(), baseline.addr()),
                    (controller.canary_backend().to_string(), canary.addr()),
                ]
                .into();
                let run = Run {
                    controller,
                    scenario,
                    client,
                    namespace,
                    backends,
                    rps,
                    prometheus_url: prometheus.url(),
                    flagger_interval,
                    flagger_threshold,
                    argo_interval,
                    argo_failure_limit,
                    limit,
                };
                let result = run.run().await;
                for target in &targets {
                    let _ = prometheus.remove_target(target);
                }
                let finished = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                eprintln!(
                    "[{:>5.0} s] {controller:?} {finished}/{total}: {} -> {:?}",
                    started.elapsed().as_secs_f64(),
                    result.scenario.label(),
                    result.outcome
                );
                result
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    let wall = started.elapsed();
    let apiserver_after = apiserver_metrics().await;
    sampler.abort();
    let peak_rss_kib = (*rss.lock().unwrap()).max(proc_status_kib(pid, "VmHWM:"));
    let _ = process.kill();
    let _ = process.wait();
    let before = requests_by_resource(&apiserver_before);
    let mut requests_by_resource: Vec<(String, f64)> = requests_by_resource(&apiserver_after)
        .into_iter()
        .map(|(what, count)| {
            let earlier = before.get(&what).copied().unwrap_or(0.0);
            (what, count - earlier)
        })
        .collect();
    requests_by_resource.sort_by(|a, b| b.1.total_cmp(&a.1));
    PhaseResult {
        results,
        api_requests: controller_requests(&apiserver_after) - controller_requests(&apiserver_before),
        peak_rss_kib,
        wall,
        requests_by_resource,
    }
}

/// One rollout of one scenario under one controller, in its own namespace.
struct Run {
    controller: Controller,
    scenario: Scenario,
    client: kube::Client,
    namespace: String,
    backends: BTreeMap<String, SocketAddr>,
    rps: f64,
    prometheus_url: String,
    flagger_interval: u64,
    flagger_threshold: u32,
    argo_interval: u64,
    argo_failure_limit: u32,
    limit: Duration,
}

impl Run {
    async fn run(self) -> RunResult {
        let deadline = Instant::now() + self.limit;
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        // Argo Rollouts owns its pod template (a Rollout, not a Deployment); the others roll a Deployment.
        if self.controller != Controller::Argo {
            deployments.create(&PostParams::default(), &deployment()).await.unwrap();
        }
        // Argo: the ReplicaSet that served before the candidate; promotion makes another one stable.
        let mut initial_stable = String::new();
        let resource = match self.controller {
            Controller::Rampart => {
                routes(&self.client, &self.namespace).create(&PostParams::default(), &http_route()).await.unwrap();
                rampart_resource()
            }
            Controller::Flagger => {
                let templates = dynamic(&self.client, &self.namespace, &metric_template_resource());
                for template in flagger_metric_templates(&self.prometheus_url) {
                    templates.create(&PostParams::default(), &serde_json::from_value(template).unwrap()).await.unwrap();
                }
                let canaries = dynamic(&self.client, &self.namespace, &canary_resource());
                let canary = flagger_canary(&self.namespace, self.flagger_interval, self.flagger_threshold);
                canaries.create(&PostParams::default(), &serde_json::from_value(canary).unwrap()).await.unwrap();
                // Flagger first copies the Deployment to model-primary and takes over the route; the candidate is
                // deployed only once the Canary is Initialized.
                loop {
                    let phase = phase_of(&canaries.get("model").await.unwrap());
                    if phase == "Initialized" {
                        break;
                    }
                    if Instant::now() > deadline {
                        return self.unfinished(format!("Canary never initialized (phase {phase:?})"), 0);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                canary_resource()
            }
            Controller::Argo => match self.argo_setup(deadline).await {
                Ok(stable) => {
                    initial_stable = stable;
                    rollout_resource()
                }
                Err(message) => return self.unfinished(message, 0),
            },
        };
        let options = LoadOptions { poll_interval: Duration::from_millis(500), ..LoadOptions::default() };
        let driver = LoadDriver::start_with(
            self.client.clone(),
            &self.namespace,
            self.controller.route(),
            self.backends.clone(),
            self.rps,
            options,
        )
        .await
        .unwrap();
        let canary = self.controller.canary_backend();
        if self.scenario == Scenario::NoCanaryTraffic {
            driver.drop_backend(canary);
        }
        let rollouts = dynamic(&self.client, &self.namespace, &resource);
        match self.controller {
            Controller::Rampart => {
                rollouts
                    .create(&PostParams::default(), &serde_json::from_value(rampart_rollout()).unwrap())
                    .await
                    .unwrap();
            }
            Controller::Flagger => {
                // A new model version in the target's pod template starts Flagger's analysis.
                let patch = json!({"spec": {"template": {"spec": {"containers": [{
                    "name": "server", "env": [{"name": "MODEL_URI", "value": "s3://models/fraud/v2"}],
                }]}}}});
                deployments.patch("model", &PatchParams::default(), &Patch::Strategic(&patch)).await.unwrap();
            }
            Controller::Argo => {
                // The same change in the Rollout's own template starts Argo's canary.
                let patch = json!({"spec": {"template": rollout_template("s3://models/fraud/v2")}});
                rollouts.patch("model", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
            }
        }

        let (mut first_traffic, mut weight_zero, mut exposed) = (None, None, 0);
        let mut checked = Instant::now();
        let mut failed_checks = 0;
        loop {
            let share = driver.split().shares().get(canary).copied().unwrap_or(0.0);
            let counts = driver.counts().get(canary).copied().unwrap_or_default();
            let now = Instant::now();
            // The clock starts at the first canary request; with no canary traffic, at the first canary weight.
            let traffic = if self.scenario == Scenario::NoCanaryTraffic { share > 0.0 } else { counts.sent > 0 };
            if first_traffic.is_none() && traffic {
                first_traffic = Some(now);
            }
            if first_traffic.is_some() && weight_zero.is_none() && share == 0.0 {
                weight_zero = Some(now);
                exposed = counts.sent;
            }
            if now.duration_since(checked) >= Duration::from_secs(1) {
                checked = now;
                if let Ok(object) = rollouts.get("model").await {
                    let phase = phase_of(&object);
                    let checks = object.data.pointer("/status/failedChecks").and_then(Value::as_u64).unwrap_or(0);
                    failed_checks = failed_checks.max(checks);
                    let outcome = match (self.controller, phase.as_str()) {
                        (Controller::Rampart, "RolledBack" | "Failed") | (Controller::Flagger, "Failed") => {
                            Some(Outcome::RolledBack)
                        }
                        (Controller::Rampart | Controller::Flagger, "Succeeded") => Some(Outcome::Promoted),
                        // Argo aborts a failed update (`status.abort`, phase Degraded) and calls a rollout whose
                        // stable ReplicaSet is the candidate's Healthy.
                        (Controller::Argo, _) if argo_aborted(&object) => Some(Outcome::RolledBack),
                        (Controller::Argo, "Healthy") if argo_stable(&object) != initial_stable => {
                            Some(Outcome::Promoted)
                        }
                        _ => None,
                    };
                    if let Some(outcome) = outcome {
                        // Let the driver read the final weights before the numbers are taken.
                        if outcome == Outcome::RolledBack && weight_zero.is_none() {
                            tokio::time::sleep(Duration::from_millis(600)).await;
                            continue;
                        }
                        let since = |at: Option<Instant>| first_traffic.zip(at).map(|(a, b)| (b - a).as_secs_f64());
                        let sent = driver.counts().get(canary).copied().unwrap_or_default().sent;
                        driver.stop().await;
                        return RunResult {
                            scenario: self.scenario,
                            outcome,
                            to_weight_zero: since(weight_zero),
                            to_finish: since(Some(Instant::now())),
                            canary_requests: if weight_zero.is_some() { exposed } else { sent },
                            analysis: self.analysis_summary(failed_checks).await,
                            message: message_of(&object),
                        };
                    }
                    if now > deadline {
                        let sent = driver.counts().get(canary).copied().unwrap_or_default().sent;
                        driver.stop().await;
                        return self
                            .unfinished(format!("phase {phase:?} at the deadline: {}", message_of(&object)), sent);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Argo Rollouts' objects, as its Istio and analysis docs shape them: the two Services it points at the stable
    /// and canary ReplicaSets, the VirtualService whose weights it sets, the AnalysisTemplate and the Rollout at the
    /// baseline. Waits until the first version is Healthy and returns its stable ReplicaSet's hash.
    async fn argo_setup(&self, deadline: Instant) -> Result<String, String> {
        let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(self.client.clone(), &self.namespace);
        for name in ["model-stable", "model-canary"] {
            let service = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"selector": {"app": "model"}, "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]},
            }))
            .unwrap();
            services.create(&PostParams::default(), &service).await.map_err(|err| err.to_string())?;
        }
        let objects = [
            (virtual_service_resource(), argo_virtual_service()),
            (
                analysis_template_resource(),
                argo_analysis_template(
                    &self.namespace,
                    &self.prometheus_url,
                    self.argo_interval,
                    self.argo_failure_limit,
                ),
            ),
            (rollout_resource(), argo_rollout()),
        ];
        for (resource, object) in objects {
            dynamic(&self.client, &self.namespace, &resource)
                .create(&PostParams::default(), &serde_json::from_value(object).unwrap())
                .await
                .map_err(|err| format!("creating a {}: {err}", resource.kind))?;
        }
        let rollouts = dynamic(&self.client, &self.namespace, &rollout_resource());
        loop {
            let rollout = rollouts.get("model").await.map_err(|err| err.to_string())?;
            let stable = argo_stable(&rollout);
            if phase_of(&rollout) == "Healthy" && !stable.is_empty() {
                return Ok(stable);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "Rollout never became Healthy (phase {:?}: {})",
                    phase_of(&rollout),
                    message_of(&rollout)
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn unfinished(&self, message: String, canary_requests: u64) -> RunResult {
        RunResult {
            scenario: self.scenario,
            outcome: Outcome::Unfinished,
            to_weight_zero: None,
            to_finish: None,
            canary_requests,
            analysis: BTreeMap::new(),
            message,
        }
    }

    /// How the controller judged the candidate: Rampart's analysis Events by reason, Flagger's failed checks.
    async fn analysis_summary(&self, failed_checks: u64) -> BTreeMap<String, u64> {
        let mut summary = BTreeMap::new();
        match self.controller {
            Controller::Flagger => {
                summary.insert("failed checks".to_string(), failed_checks);
            }
            Controller::Argo => {
                // Each AnalysisRun's measurements by metric and phase.
                let runs = dynamic(&self.client, &self.namespace, &analysis_run_resource());
                for run in runs.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
                    let results = run.data.pointer("/status/metricResults").and_then(Value::as_array);
                    for result in results.map(Vec::as_slice).unwrap_or_default() {
                        let metric = result.get("name").and_then(Value::as_str).unwrap_or("?");
                        for what in ["successful", "failed", "inconclusive", "error"] {
                            let count = result.get(what).and_then(Value::as_u64).unwrap_or(0);
                            if count > 0 {
                                *summary.entry(format!("{metric} {what}")).or_default() += count;
                            }
                        }
                    }
                }
            }
            Controller::Rampart => {
                let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
                for event in events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
                    let reason = event.reason.unwrap_or_default();
                    if reason.starts_with("Analysis") || reason.contains("Rollback") || reason.contains("RolledBack") {
                        let count = event.series.as_ref().map(|s| s.count).unwrap_or(1).max(1);
                        *summary.entry(reason).or_default() += u64::try_from(count).unwrap_or(1);
                    }
                }
            }
        }
        summary
    }
}

fn phase_of(object: &DynamicObject) -> String {
    object.data.pointer("/status/phase").and_then(Value::as_str).unwrap_or("").to_string()
}

fn message_of(object: &DynamicObject) -> String {
    let status = object.data.get("status");
    let text = status
        .and_then(|s| s.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            status.and_then(|s| s.get("conditions")).and_then(Value::as_array).and_then(|conditions| {
                conditions.iter().find_map(|c| c.get("message").and_then(Value::as_str).map(str::to_string))
            })
        })
        .unwrap_or_default();
    text.chars().take(200).collect()
}

/// Rampart's rollout: 20% with an analysis step, 60% with another, then 100%, the same weights Flagger walks
/// (20, 40, 60). Accuracy from labelled outcomes and p95 latency, with the controller's defaults for alpha, the
/// sample-ratio check and minimum samples; looks every 10 s (Flagger's fastest interval) for up to 60 s per step.
/// An analysis step that ends without a verdict carries on (`onInconclusive: promote`), as Flagger promotes
/// whenever its checks do not fail.
fn rampart_rollout() -> Value {
    let analysis = json!({"analysis": {"duration": "60s", "interval": "10s"}});
    json!({
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": "model"},
        "spec": {
            "model": "fraud",
            "candidate": {"version": "v2", "artifact": {
                "uri": "s3://models/fraud/v2",
                "digest": format!("sha256:{}", "0".repeat(64)),
            }},
            "baseline": {"version": "v1"},
            "checks": {"insecureSkipSignature": true},
            "serving": {"deployment": {"name": "model", "modelEnv": "MODEL_URI"}},
            "traffic": {"gatewayAPI": {
                "httpRoute": "model", "baselineBackend": "model", "canaryBackend": "model-canary", "port": 8080,
            }},
            "steps": [{"setWeight": FIRST_WEIGHT}, analysis, {"setWeight": 60}, analysis, {"setWeight": 100}],
            "analysis": {
                "onInconclusive": "promote",
                "metrics": [
                    {
                        "name": "accuracy", "kind": "ratio", "direction": "higherIsBetter",
                        "tolerance": {"absolute": ACCURACY_MARGIN},
                        "queries": {
                            "success": "sum(model_predictions_correct_total{namespace=\"{{namespace}}\",version=\"{{version}}\"})",
                            "total": "sum(model_predictions_labelled_total{namespace=\"{{namespace}}\",version=\"{{version}}\"})",
                        },
                    },
                    {
                        "name": "latency", "kind": "latency", "direction": "lowerIsBetter",
                        "tolerance": {"absolute": 0.02},
                        "latency": {"quantile": 0.95, "thresholdSlack": LATENCY_SLACK},
                        "queries": {
                            "buckets": "sum by (le) (model_request_duration_seconds_bucket{namespace=\"{{namespace}}\",version=\"{{version}}\"})",
                        },
                    },
                ],
            },
        }
    })
}

/// Flagger's MetricTemplates, as its docs recommend for custom metrics: PromQL over the metric window
/// (`{{ interval }}`), judged against a threshold range in the Canary. Canary accuracy minus primary accuracy (>=
/// -margin), and canary p95 over primary p95 (<= 1 + slack), over the same series Rampart reads.
fn flagger_metric_templates(prometheus_url: &str) -> Vec<Value> {
    let accuracy = |version: &str| {
        format!(
            "(sum(increase(model_predictions_correct_total{{namespace=\"{{{{ namespace }}}}\",version=\"{version}\"}}[{{{{ interval }}}}])) \
             / sum(increase(model_predictions_labelled_total{{namespace=\"{{{{ namespace }}}}\",version=\"{version}\"}}[{{{{ interval }}}}])))"
        )
    };
    let p95 = |version: &str| {
        format!(
            "histogram_quantile(0.95, sum by (le) (rate(model_request_duration_seconds_bucket{{namespace=\"{{{{ namespace }}}}\",version=\"{version}\"}}[{{{{ interval }}}}])))"
        )
    };
    vec![
        json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "accuracy-vs-primary"},
            "spec": {
                "provider": {"type": "prometheus", "address": prometheus_url},
                "query": format!("{} - {}", accuracy("v2"), accuracy("v1")),
            },
        }),
        json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "p95-vs-primary"},
            "spec": {
                "provider": {"type": "prometheus", "address": prometheus_url},
                "query": format!("{} / {}", p95("v2"), p95("v1")),
            },
        }),
    ]
}

/// Flagger's Canary for the Gateway API provider, shaped like its Gateway API tutorial (threshold, maxWeight,
/// stepWeight, metric interval 1m), at the analysis interval given (10 s is the shortest Flagger accepts).
fn flagger_canary(namespace: &str, interval_seconds: u64, threshold: u32) -> Value {
    json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "model"},
        "spec": {
            "provider": "gatewayapi:v1",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "model"},
            "progressDeadlineSeconds": 120,
            "service": {
                "port": 8080,
                "targetPort": 8080,
                "hosts": ["model.example.com"],
                "gatewayRefs": [{"name": "gateway", "namespace": namespace}],
            },
            "analysis": {
                "interval": format!("{interval_seconds}s"),
                "threshold": threshold,
                "maxWeight": 60,
                "stepWeight": FIRST_WEIGHT,
                "metrics": [
                    {"name": "accuracy", "templateRef": {"name": "accuracy-vs-primary"},
                     "thresholdRange": {"min": -ACCURACY_MARGIN}, "interval": "1m"},
                    {"name": "p95-latency", "templateRef": {"name": "p95-vs-primary"},
                     "thresholdRange": {"max": 1.0 + LATENCY_SLACK}, "interval": "1m"},
                ],
            },
        },
    })
}

/// Argo Rollouts' AnalysisTemplate, as its docs shape a Prometheus analysis: one query per metric taken every
/// `interval`, judged by `successCondition`, failing the analysis (and aborting the update) after more than
/// `failureLimit` failed measurements (its docs' examples use 3). The same two comparisons as Flagger's templates,
/// over the same one-minute window: canary minus baseline accuracy >= -margin, canary p95 / baseline p95 <= 1 +
/// slack.
fn argo_analysis_template(namespace: &str, prometheus_url: &str, interval_seconds: u64, failure_limit: u32) -> Value {
    let accuracy = |version: &str| {
        format!(
            "(sum(increase(model_predictions_correct_total{{namespace=\"{namespace}\",version=\"{version}\"}}[1m])) \
             / sum(increase(model_predictions_labelled_total{{namespace=\"{namespace}\",version=\"{version}\"}}[1m])))"
        )
    };
    let p95 = |version: &str| {
        format!(
            "histogram_quantile(0.95, sum by (le) (rate(model_request_duration_seconds_bucket{{namespace=\"{namespace}\",version=\"{version}\"}}[1m])))"
        )
    };
    let metric = |name: &str, condition: String, query: String| {
        json!({
            "name": name,
            "interval": format!("{interval_seconds}s"),
            "failureLimit": failure_limit,
            "successCondition": condition,
            "provider": {"prometheus": {"address": prometheus_url, "query": query}},
        })
    };
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "model-quality"},
        "spec": {"metrics": [
            metric("accuracy", format!("result[0] >= {}", -ACCURACY_MARGIN), format!("{} - {}", accuracy("v2"), accuracy("v1"))),
            metric("p95-latency", format!("result[0] <= {}", 1.0 + LATENCY_SLACK), format!("{} / {}", p95("v2"), p95("v1"))),
        ]},
    })
}

/// Argo Rollouts' Rollout: the canary strategy with Istio host-level traffic splitting and background analysis
/// from the first pause on, walking the same weights as Rampart (20% for 60 s, 60% for 60 s, then promotion).
fn argo_rollout() -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "model"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "model"}},
            "template": rollout_template("s3://models/fraud/v1"),
            "strategy": {"canary": {
                "canaryService": "model-canary",
                "stableService": "model-stable",
                "trafficRouting": {"istio": {"virtualService": {"name": "model", "routes": ["primary"]}}},
                "analysis": {"templates": [{"templateName": "model-quality"}], "startingStep": 1},
                "steps": [
                    {"setWeight": FIRST_WEIGHT},
                    {"pause": {"duration": "60s"}},
                    {"setWeight": 60},
                    {"pause": {"duration": "60s"}},
                ],
            }},
        },
    })
}

/// The Rollout's pod template, serving the model at `uri`.
fn rollout_template(uri: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": "model"}},
        "spec": {"containers": [{
            "name": "server",
            "image": "registry.example.com/model-server:1",
            "ports": [{"containerPort": 8080}],
            "env": [{"name": "MODEL_URI", "value": uri}],
        }]},
    })
}

/// The VirtualService Argo's Istio router sets weights on: one named route, everything on the stable Service.
fn argo_virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "VirtualService",
        "metadata": {"name": "model"},
        "spec": {
            "hosts": ["model.example.com"],
            "gateways": ["gateway"],
            "http": [{"name": "primary", "route": [
                {"destination": {"host": "model-stable", "port": {"number": 8080}}, "weight": 100},
                {"destination": {"host": "model-canary", "port": {"number": 8080}}, "weight": 0},
            ]}],
        },
    })
}

fn argo_aborted(rollout: &DynamicObject) -> bool {
    rollout.data.pointer("/status/abort").and_then(Value::as_bool).unwrap_or(false) || phase_of(rollout) == "Degraded"
}

fn argo_stable(rollout: &DynamicObject) -> String {
    rollout.data.pointer("/status/stableRS").and_then(Value::as_str).unwrap_or("").to_string()
}

/// Where Argo Rollouts' log goes (it is quiet at `warn`, `RAMPART_PEERS_ARGO_LOGLEVEL` changes that; read it when a
/// run does not finish).
fn argo_log() -> std::fs::File {
    let path = std::env::temp_dir().join("rampart-peers-argo-rollouts.log");
    eprintln!("Argo Rollouts logs to {}", path.display());
    std::fs::File::create(path).unwrap()
}

struct PeerBinaries {
    flagger: PathBuf,
    argo: PathBuf,
}

fn deployment() -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "model", "labels": {"app": "model"}, "annotations": {"rampart.dev/model-uri-env": "MODEL_URI"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "model"}},
            "template": {
                "metadata": {"labels": {"app": "model"}},
                "spec": {"containers": [{
                    "name": "server",
                    "image": "registry.example.com/model-server:1",
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "MODEL_URI", "value": "s3://models/fraud/v1"}],
                }]},
            },
        },
    }))
    .unwrap()
}

fn http_route() -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "model"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [{"name": "model", "port": 8080}]}]},
    }))
    .unwrap()
}

fn routes(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    dynamic(client, namespace, &rampart_controller::traffic::httproute_resource())
}

fn dynamic(client: &kube::Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn rampart_resource() -> ApiResource {
    resource("rampart.dev", "v1alpha1", "ModelRollout", "modelrollouts")
}

fn canary_resource() -> ApiResource {
    resource("flagger.app", "v1beta1", "Canary", "canaries")
}

fn metric_template_resource() -> ApiResource {
    resource("flagger.app", "v1beta1", "MetricTemplate", "metrictemplates")
}

fn rollout_resource() -> ApiResource {
    resource("argoproj.io", "v1alpha1", "Rollout", "rollouts")
}

fn analysis_template_resource() -> ApiResource {
    resource("argoproj.io", "v1alpha1", "AnalysisTemplate", "analysistemplates")
}

fn analysis_run_resource() -> ApiResource {
    resource("argoproj.io", "v1alpha1", "AnalysisRun", "analysisruns")
}

fn virtual_service_resource() -> ApiResource {
    resource("networking.istio.io", "v1alpha3", "VirtualService", "virtualservices")
}

/// The 1-minute load average: this machine is shared, and the figures depend on it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

/// A field of /proc/<pid>/status, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The API server's own `/metrics` text.
async fn apiserver_metrics() -> String {
    let plane = rampart_testenv::shared().unwrap().control_plane();
    let ca = std::fs::read(plane.dir().join("ca.crt")).unwrap();
    let http =
        reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap()).build().unwrap();
    http.get(format!("{}/metrics", plane.server_url()))
        .bearer_auth(plane.admin_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Requests the API server has authenticated as the controllers' ServiceAccount.
fn controller_requests(apiserver_metrics: &str) -> f64 {
    let series = format!("authenticated_user_requests{{username=\"{CONTROLLER_USER}\"}}");
    apiserver_metrics
        .lines()
        .find(|l| l.starts_with(&series))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// `apiserver_request_total` (all clients) summed by verb and resource/subresource.
fn requests_by_resource(apiserver_metrics: &str) -> BTreeMap<String, f64> {
    let mut by_resource = BTreeMap::new();
    for line in apiserver_metrics.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let value: f64 = value.parse().unwrap_or(0.0);
        let label = |name: &str| {
            series.split(&format!("{name}=\"")).nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("")
        };
        let subresource = label("subresource");
        let resource = if subresource.is_empty() {
            label("resource").to_string()
        } else {
            format!("{}/{subresource}", label("resource"))
        };
        *by_resource.entry(format!("{} {resource}", label("verb"))).or_insert(0.0) += value;
    }
    by_resource
}

/// A kubeconfig with a token of the ServiceAccount kube-system/default, bound to cluster-admin.
async fn controller_kubeconfig(client: &kube::Client) -> tempfile::NamedTempFile {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    if accounts.get_opt("default").await.unwrap().is_none() {
        accounts.create(&PostParams::default(), &account).await.unwrap();
    }
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "peers-bench"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}],
    }))
    .unwrap();
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    if bindings.get_opt("peers-bench").await.unwrap().is_none() {
        bindings.create(&PostParams::default(), &binding).await.unwrap();
    }
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 7200}})).unwrap();
    let token = accounts.create_token_request("default", &PostParams::default(), &request).await.unwrap();
    let token = token.status.unwrap().token;
    let plane = rampart_testenv::shared().unwrap().control_plane();
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
         certificate-authority: {}\nusers:\n- name: controller\n  user:\n    token: {token}\ncontexts:\n- name: test\n  \
         context:\n    cluster: test\n    user: controller\ncurrent-context: test\n",
        plane.server_url(),
        plane.dir().join("ca.crt").display(),
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config).unwrap();
    file
}

/// Plays a workload controller and the kubelet in every namespace: whenever `ready_status` says an object's status
/// lags its spec, the bench writes the status that spec asks for (once per generation), as if every replica were ready
/// at once. Deployments for Rampart and Flagger, ReplicaSets for Argo Rollouts (which makes its own).
async fn play_status<K>(client: kube::Client, ready_status: fn(&K) -> Option<Value>)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default()).applied_objects();
    futures::pin_mut!(stream);
    let mut patched: HashMap<String, i64> = HashMap::new();
    loop {
        let object = match stream.try_next().await {
            Ok(Some(object)) => object,
            Ok(None) => return,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(status) = ready_status(&object) else { continue };
        let (namespace, name) = (object.namespace().unwrap_or_default(), object.name_any());
        let generation = object.meta().generation.unwrap_or(0);
        if patched.insert(format!("{namespace}/{name}"), generation) == Some(generation) {
            continue;
        }
        let api: Api<K> = Api::namespaced(client.clone(), &namespace);
        tokio::spawn(async move {
            let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
        });
    }
}

/// A ReplicaSet's status with all its replicas ready and available, or None when it already says so.
fn replica_set_ready(set: &ReplicaSet) -> Option<Value> {
    let generation = set.metadata.generation.unwrap_or(0);
    let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = set.status.as_ref();
    let observed = status.and_then(|s| s.observed_generation).unwrap_or(0);
    if observed >= generation && status.and_then(|s| s.available_replicas) == Some(replicas) {
        return None;
    }
    Some(json!({"status": {
        "observedGeneration": generation,
        "replicas": replicas,
        "fullyLabeledReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }}))
}
