//! Scale bench: one `rampart-controller` process (release build, all namespaces) drives 1,000 ModelRollouts in 20
//! namespaces on the test control plane, each stepping 10% -> analysis -> 50% -> pause -> 100% against the real
//! Prometheus; one in ten has a regressing canary and must roll back. Prints reconcile p50/p99, the controller's peak
//! RSS, API requests per rollout step and failing verdict -> weight 0 p50/p99 (figures in docs/benchmarks.md).
//! Run: `cargo bench -p rampart-controller --bench scale`; `RAMPART_SCALE_ROLLOUTS` and `RAMPART_SCALE_NAMESPACES`
//! override the size (defaults 1000 and 20).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use rampart_api::{ModelRollout, Phase};
use rampart_testenv::load_driver::{LoadDriver, LoadOptions, RouteSource};
use rampart_testenv::model_server::{ModelServer, ModelServerConfig};
use serde_json::{Value, json};

/// Of every 100 rollouts, this many roll out the regressing canary (`v3`) and must roll back.
const BAD_PER_HUNDRED: usize = 10;
/// Requests per second each namespace's model servers get (split evenly over v1, v2 and v3).
const RPS_PER_NAMESPACE: f64 = 60.0;
/// The controller authenticates as this ServiceAccount: the API server counts requests per user only for a few
/// well-known names (`authenticated_user_requests{username}`), and this is one of them.
const CONTROLLER_USER: &str = "system:serviceaccount:kube-system:default";
/// The bench gives up waiting after this long.
const DEADLINE: Duration = Duration::from_secs(480);

fn steps() -> Value {
    json!([
        {"setWeight": 10},
        {"analysis": {"duration": "30s", "interval": "3s"}},
        {"setWeight": 50},
        {"pause": {"duration": "2s"}},
        {"setWeight": 100},
    ])
}

fn size(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rollouts_total = size("RAMPART_SCALE_ROLLOUTS", 1000);
    let namespace_count = size("RAMPART_SCALE_NAMESPACES", 20).max(1);
    let per_namespace = rollouts_total.div_ceil(namespace_count);
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let prometheus = rampart_testenv::shared_prometheus().unwrap();
    let setup_started = Instant::now();
    let load_at_start = load_average();

    // Per namespace: baseline v1 (accuracy 0.90), good canary v2 (0.95), bad canary v3 (0.70), shared by all the
    // namespace's rollouts, with a load driver sending labelled requests to all three.
    let mut namespaces = Vec::new();
    let mut servers = Vec::new();
    let mut drivers = Vec::new();
    let quick = Duration::from_millis(2);
    for _ in 0..namespace_count {
        let ns = env.namespace(&client, "scale").await.unwrap();
        let mut backends: BTreeMap<String, SocketAddr> = BTreeMap::new();
        for (version, accuracy) in [("v1", 0.90), ("v2", 0.95), ("v3", 0.70)] {
            let config = ModelServerConfig::new(version).namespace(&ns).accuracy(accuracy).latency(quick, 0.3);
            let server = ModelServer::spawn(config).await.unwrap();
            prometheus.add_target(&server.addr().to_string(), &[]).unwrap();
            backends.insert(version.into(), server.addr());
            servers.push(server);
        }
        let route = http_route("traffic", &["v1", "v2", "v3"]);
        routes(&client, &ns).create(&PostParams::default(), &route).await.unwrap();
        let options = LoadOptions { poll_interval: Duration::from_secs(5), ..LoadOptions::default() };
        let driver = LoadDriver::start_with(
            client.clone(),
            &ns,
            RouteSource::http_route("traffic"),
            backends,
            RPS_PER_NAMESPACE,
            options,
        )
        .await
        .unwrap();
        drivers.push(driver);
        namespaces.push(ns);
    }
    for server in &servers {
        prometheus.wait_for_target(&server.addr().to_string(), Duration::from_secs(60)).await.unwrap();
    }
    let _deployment_controller = tokio::spawn(play_deployment_controller(client.clone()));

    // Baseline Deployments and HTTPRoutes, one per rollout.
    let mut plan = Vec::new();
    for (n, ns) in namespaces.iter().enumerate() {
        for i in 0..per_namespace {
            let index = n * per_namespace + i;
            if index >= rollouts_total {
                break;
            }
            // Spread the bad ones evenly over namespaces and creation order.
            let bad = (index * BAD_PER_HUNDRED) % 100 < BAD_PER_HUNDRED;
            plan.push((ns.clone(), format!("m-{i:03}"), bad));
        }
    }
    futures::stream::iter(plan.iter().cloned())
        .map(|(ns, name, _)| {
            let client = client.clone();
            async move {
                Api::<Deployment>::namespaced(client.clone(), &ns)
                    .create(&PostParams::default(), &deployment(&name))
                    .await
                    .unwrap();
                routes(&client, &ns).create(&PostParams::default(), &http_route(&name, &[&name])).await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let setup = setup_started.elapsed();

    // The controller, as a real process, authenticated as its own ServiceAccount.
    let kubeconfig = controller_kubeconfig(&client).await;
    let metrics_port = rampart_testenv::free_port().unwrap();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let apiserver_before = apiserver_metrics().await;
    let mut controller = std::process::Command::new(env!("CARGO_BIN_EXE_rampart-controller"))
        .env("KUBECONFIG", kubeconfig.path())
        .env("RUST_LOG", "warn,rampart_controller=info")
        .args(["--prometheus-url", &prometheus.url(), "--prometheus-timeout-seconds", "10"])
        .args(["--lease-namespace", "kube-system", "--identity", "scale-bench"])
        .args(["--metrics-address", &format!("127.0.0.1:{metrics_port}"), "--log-format", "json"])
        .args(["--metrics-settle-seconds", "1", "--allow-insecure-skip-signature"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = controller.id();
    let logs = ControllerLog::follow(controller.stdout.take().unwrap());
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = match http.get(&metrics_url).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.lines().any(|l| l == "rampart_leader 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the controller did not take the lease within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Watch every rollout until it is done, then apply them all at once.
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let finished: Arc<Mutex<HashMap<String, (Instant, ModelRollout)>>> = Arc::default();
    let watch = tokio::spawn(watch_rollouts(client.clone(), finished.clone()));
    let started = Instant::now();
    futures::stream::iter(plan.iter().cloned())
        .map(|(ns, name, bad)| {
            let client = client.clone();
            let created = created.clone();
            async move {
                let rollout: ModelRollout = serde_json::from_value(rollout(&name, bad)).unwrap();
                let at = Instant::now();
                Api::<ModelRollout>::namespaced(client, &ns).create(&PostParams::default(), &rollout).await.unwrap();
                created.lock().unwrap().insert(format!("{ns}/{name}"), at);
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let applied = started.elapsed();
    let mut peak_rss_kib = 0;
    let mut next_report = Instant::now() + Duration::from_secs(15);
    loop {
        peak_rss_kib = peak_rss_kib.max(proc_status_kib(pid, "VmHWM:"));
        let done = finished.lock().unwrap().len();
        if done >= plan.len() || started.elapsed() > DEADLINE {
            break;
        }
        if Instant::now() > next_report {
            eprintln!("[{:>5.1} s] {done}/{} rollouts finished", started.elapsed().as_secs_f64(), plan.len());
            next_report += Duration::from_secs(15);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let wall = started.elapsed();
    let apiserver_after = apiserver_metrics().await;
    let requests = controller_requests(&apiserver_after) - controller_requests(&apiserver_before);
    let metrics_text = http.get(&metrics_url).send().await.unwrap().text().await.unwrap();
    peak_rss_kib = peak_rss_kib.max(proc_status_kib(pid, "VmHWM:"));
    let _ = controller.kill();
    let _ = controller.wait();
    watch.abort();

    // Outcomes and steps taken.
    let created = created.lock().unwrap().clone();
    let finished = finished.lock().unwrap().clone();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut steps_taken = 0usize;
    let mut unexpected = Vec::new();
    let (mut good_wall, mut bad_wall) = (Vec::new(), Vec::new());
    let step_count = steps().as_array().map(Vec::len).unwrap_or(0);
    for (ns, name, bad) in &plan {
        let key = format!("{ns}/{name}");
        let Some((at, rollout)) = finished.get(&key) else {
            *outcomes.entry("unfinished".into()).or_default() += 1;
            continue;
        };
        let status = rollout.status.clone().unwrap_or_default();
        let phase = status.phase.unwrap_or(Phase::Pending);
        *outcomes.entry(format!("{} canary -> {phase:?}", if *bad { "bad" } else { "good" })).or_default() += 1;
        steps_taken += match phase {
            Phase::Succeeded => step_count,
            // The step that failed counts as taken.
            _ => usize::try_from(status.current_step.unwrap_or(0)).unwrap_or(0) + 1,
        };
        let expected = if *bad { Phase::RolledBack } else { Phase::Succeeded };
        if phase != expected && unexpected.len() < 5 {
            unexpected.push(format!("{key}: {phase:?}: {}", status.message.unwrap_or_default()));
        }
        if let Some(created_at) = created.get(&key) {
            let took = at.duration_since(*created_at).as_secs_f64();
            if *bad { bad_wall.push(took) } else { good_wall.push(took) }
        }
    }
    let event_reasons = event_reasons(&client).await;
    // A finished rollout must stay finished: a phase that changed after it first became terminal is a regression.
    let mut changed_after_finishing = Vec::new();
    for rollout in Api::<ModelRollout>::all(client.clone()).list(&ListParams::default()).await.unwrap().items {
        let key = format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any());
        let now = rollout.status.as_ref().and_then(|s| s.phase);
        if let Some((_, first)) = finished.get(&key)
            && first.status.as_ref().and_then(|s| s.phase) != now
        {
            changed_after_finishing
                .push(format!("{key}: {:?} -> {now:?}", first.status.as_ref().and_then(|s| s.phase)));
        }
    }

    // Figures.
    let reconcile = Histogram::parse(&metrics_text, "rampart_reconcile_duration_seconds");
    let rollback_histogram = Histogram::parse(&metrics_text, "rampart_rollback_latency_seconds");
    let mut rollbacks = logs.rollback_latencies_ms();
    rollbacks.sort_by(f64::total_cmp);
    let ms = |s: f64| s * 1000.0;
    println!();
    println!("## Rampart scale bench");
    println!();
    println!("- rollouts: {} in {} namespaces ({} with a regressing canary)", plan.len(), namespace_count, {
        plan.iter().filter(|(_, _, bad)| *bad).count()
    });
    println!("- setup (model servers, targets, {} Deployments + HTTPRoutes): {:.1} s", plan.len(), setup.as_secs_f64());
    println!(
        "- all rollouts applied in {:.1} s; all finished after {:.1} s",
        applied.as_secs_f64(),
        wall.as_secs_f64()
    );
    for (outcome, count) in &outcomes {
        println!("- {outcome}: {count}");
    }
    for line in &unexpected {
        println!("  - unexpected: {line}");
    }
    println!("- events by reason: {event_reasons:?}");
    println!(
        "- rollouts whose phase changed after they first finished: {} {:?}",
        changed_after_finishing.len(),
        changed_after_finishing.iter().take(5).collect::<Vec<_>>()
    );
    println!(
        "- reconcile duration (n = {}): p50 {:.1} ms, p99 {:.1} ms, mean {:.1} ms (from the controller's histogram, \
         interpolated within buckets)",
        reconcile.count,
        ms(reconcile.quantile(0.5)),
        ms(reconcile.quantile(0.99)),
        ms(reconcile.sum / reconcile.count.max(1.0)),
    );
    println!("- reconcile errors: {:?}", counter_lines(&metrics_text, "rampart_reconcile_errors_total"));
    println!("- controller peak RSS (VmHWM): {:.1} MiB", peak_rss_kib as f64 / 1024.0);
    println!(
        "- controller API requests: {requests:.0} = {:.1} per rollout, {:.2} per rollout step ({steps_taken} steps taken)",
        requests / plan.len().max(1) as f64,
        requests / steps_taken.max(1) as f64,
    );
    println!(
        "- failing verdict -> HTTPRoute weight 0 (n = {}, histogram count {}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        rollbacks.len(),
        rollback_histogram.count,
        percentile(&rollbacks, 0.5),
        percentile(&rollbacks, 0.99),
        rollbacks.last().copied().unwrap_or(f64::NAN),
    );
    for (what, mut walls) in
        [("good canary, applied -> Succeeded", good_wall), ("bad canary, applied -> RolledBack", bad_wall)]
    {
        walls.sort_by(f64::total_cmp);
        println!(
            "- rollout wall time, {what} (n = {}): p50 {:.1} s, p99 {:.1} s",
            walls.len(),
            percentile(&walls, 0.5),
            percentile(&walls, 0.99)
        );
    }
    println!("- controller warnings logged: {}", logs.warnings());
    let (before, conflicts_before) = requests_by_resource(&apiserver_before);
    let (after, conflicts_after) = requests_by_resource(&apiserver_after);
    let mut deltas: Vec<(String, f64)> =
        after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0))).collect();
    deltas.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("- API server requests by verb and resource, all clients (bench included), top 12:");
    for (what, count) in deltas.iter().take(12) {
        println!("  - {what}: {count:.0}");
    }
    println!("- 409 Conflict answers, all clients: {:.0}", conflicts_after - conflicts_before);
    println!("- load average (1 min) at start and end: {load_at_start} / {}", load_average());
}

/// The 1-minute load average: this machine is shared, and the figures depend on it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

/// Exact percentile (nearest rank) of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A Prometheus histogram read from text exposition.
struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    fn parse(text: &str, name: &str) -> Histogram {
        let mut histogram = Histogram { buckets: Vec::new(), sum: 0.0, count: 0.0 };
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            if let Some(rest) = series.strip_prefix(&format!("{name}_bucket{{le=\"")) {
                let le = rest.trim_end_matches("\"}");
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
                histogram.buckets.push((le, value));
            } else if series == format!("{name}_sum") {
                histogram.sum = value;
            } else if series == format!("{name}_count") {
                histogram.count = value;
            }
        }
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        histogram
    }

    /// The q-quantile, interpolated linearly within its bucket (as PromQL's `histogram_quantile` does).
    fn quantile(&self, q: f64) -> f64 {
        let target = q * self.count;
        let mut lower = (0.0, 0.0);
        for &(le, cumulative) in &self.buckets {
            if cumulative >= target {
                if le.is_infinite() {
                    return lower.0;
                }
                let share = if cumulative > lower.1 { (target - lower.1) / (cumulative - lower.1) } else { 1.0 };
                return lower.0 + (le - lower.0) * share;
            }
            lower = (le, cumulative);
        }
        f64::NAN
    }
}

fn counter_lines(text: &str, name: &str) -> Vec<String> {
    text.lines().filter(|l| l.starts_with(name)).map(str::to_string).collect()
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

/// Requests the API server has authenticated as the controller's ServiceAccount.
fn controller_requests(apiserver_metrics: &str) -> f64 {
    let series = format!("authenticated_user_requests{{username=\"{CONTROLLER_USER}\"}}");
    apiserver_metrics
        .lines()
        .find(|l| l.starts_with(&series))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// `apiserver_request_total` (all clients) summed by resource/subresource and verb, and the 409 Conflicts.
fn requests_by_resource(apiserver_metrics: &str) -> (BTreeMap<String, f64>, f64) {
    let mut by_resource = BTreeMap::new();
    let mut conflicts = 0.0;
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
        if label("code") == "409" {
            conflicts += value;
        }
    }
    (by_resource, conflicts)
}

/// A kubeconfig with a token of the ServiceAccount kube-system/default, bound to cluster-admin.
async fn controller_kubeconfig(client: &kube::Client) -> tempfile::NamedTempFile {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
    if accounts.get_opt("default").await.unwrap().is_none() {
        accounts.create(&PostParams::default(), &account).await.unwrap();
    }
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "rampart-scale-bench"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}],
    }))
    .unwrap();
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    if bindings.get_opt("rampart-scale-bench").await.unwrap().is_none() {
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

/// The controller's JSON log, read on a thread: rollback latencies and the number of warnings.
#[derive(Clone, Default)]
struct ControllerLog {
    rollbacks_ms: Arc<Mutex<Vec<f64>>>,
    warnings: Arc<Mutex<Vec<String>>>,
}

impl ControllerLog {
    fn follow(stdout: std::process::ChildStdout) -> ControllerLog {
        let log = ControllerLog::default();
        let reader = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
                if let Some(latency) = entry.pointer("/fields/latency_ms").and_then(Value::as_f64) {
                    reader.rollbacks_ms.lock().unwrap().push(latency);
                } else if entry.get("level").and_then(Value::as_str) == Some("WARN") {
                    let mut warnings = reader.warnings.lock().unwrap();
                    if warnings.len() < 3 {
                        eprintln!("controller: {line}");
                    }
                    warnings.push(line);
                }
            }
        });
        log
    }

    fn rollback_latencies_ms(&self) -> Vec<f64> {
        self.rollbacks_ms.lock().unwrap().clone()
    }

    fn warnings(&self) -> usize {
        self.warnings.lock().unwrap().len()
    }
}

/// Records each rollout the first time it reaches a terminal phase.
async fn watch_rollouts(client: kube::Client, finished: Arc<Mutex<HashMap<String, (Instant, ModelRollout)>>>) {
    let api: Api<ModelRollout> = Api::all(client);
    let stream = watcher(api, watcher::Config::default()).applied_objects();
    futures::pin_mut!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(rollout)) => {
                let terminal = rollout.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_terminal());
                if terminal {
                    let key = format!("{}/{}", rollout.namespace().unwrap_or_default(), rollout.name_any());
                    finished.lock().unwrap().entry(key).or_insert_with(|| (Instant::now(), rollout));
                }
            }
            Ok(None) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Event counts by reason over all namespaces.
async fn event_reasons(client: &kube::Client) -> BTreeMap<String, usize> {
    let mut reasons = BTreeMap::new();
    let events: Api<Event> = Api::all(client.clone());
    if let Ok(list) = events.list(&ListParams::default()).await {
        for event in list.items {
            if event.reporting_controller.as_deref() != Some("rampart-controller") {
                continue;
            }
            let count = event.series.as_ref().map(|s| s.count).unwrap_or(1).max(1);
            *reasons.entry(event.reason.unwrap_or_default()).or_default() += usize::try_from(count).unwrap_or(1);
        }
    }
    reasons
}

/// Plays the Deployment controller and kubelet for every namespace: a Deployment whose template changed is reported
/// rolled out, with all replicas ready.
async fn play_deployment_controller(client: kube::Client) {
    let api: Api<Deployment> = Api::all(client.clone());
    let stream = watcher(api, watcher::Config::default()).applied_objects();
    futures::pin_mut!(stream);
    loop {
        let deployment = match stream.try_next().await {
            Ok(Some(deployment)) => deployment,
            Ok(None) => return,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(status) = rampart_testenv::rolled_out_status(&deployment) else { continue };
        // Patch concurrently: a stand-in that lags would make the controller wait in Promoting.
        let api: Api<Deployment> = Api::namespaced(client.clone(), &deployment.namespace().unwrap_or_default());
        tokio::spawn(async move {
            let _ = api.patch_status(&deployment.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await;
        });
    }
}

fn routes(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &rampart_controller::traffic::httproute_resource())
}

fn http_route(name: &str, backends: &[&str]) -> DynamicObject {
    let refs: Vec<Value> = backends.iter().map(|b| json!({"name": b, "port": 8080, "weight": 1})).collect();
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": refs}]},
    }))
    .unwrap()
}

fn deployment(name: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}, "annotations": {"rampart.dev/model-uri-env": "MODEL_URI"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "server",
                    "image": "registry.example.com/model-server:1",
                    "env": [{"name": "MODEL_URI", "value": "s3://models/fraud/v1"}],
                }]},
            },
        },
    }))
    .unwrap()
}

/// A rollout of `v2` (good) or `v3` (regressing) against `v1`, on its own Deployment and HTTPRoute.
fn rollout(name: &str, bad: bool) -> Value {
    let version = if bad { "v3" } else { "v2" };
    json!({
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": name},
        "spec": {
            "model": "fraud",
            "candidate": {"version": version, "artifact": {
                "uri": format!("s3://models/fraud/{version}"),
                "digest": format!("sha256:{}", "0".repeat(64)),
            }},
            "baseline": {"version": "v1"},
            "checks": {"insecureSkipSignature": true},
            "serving": {"deployment": {"name": name, "modelEnv": "MODEL_URI"}},
            "traffic": {"gatewayAPI": {
                "httpRoute": name, "baselineBackend": name, "canaryBackend": format!("{name}-canary"), "port": 8080,
            }},
            "steps": steps(),
            "analysis": {
                "minSamples": 50,
                // All of a namespace's rollouts share its model servers, so the split the servers see is not any one
                // rollout's weight: the sample-ratio check would be meaningless here.
                "srm": {"enabled": false},
                "onInconclusive": "promote",
                "metrics": [{
                    "name": "accuracy", "kind": "ratio", "direction": "higherIsBetter",
                    "tolerance": {"absolute": 0.05},
                    "queries": {
                        "success": "sum(model_predictions_correct_total{namespace=\"{{namespace}}\",version=\"{{version}}\"})",
                        "total": "sum(model_predictions_labelled_total{namespace=\"{{namespace}}\",version=\"{{version}}\"})",
                    },
                }],
            },
        }
    })
}
