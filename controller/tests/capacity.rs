//! Capacity-aware steps on the real API server and a real Prometheus, with the test playing the Deployment controller
//! (each new pod becomes ready [`STARTUP`] after it was asked for; a removed pod stops being ready at once). A
//! baseline of 8 replicas with one GPU each rolls out within a surge budget of one GPU: the test watches every change
//! of both Deployments and of the HTTPRoute and checks that the pods never exceed 9 and that the canary's weight never
//! exceeds its share of the ready pods.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use rampart_api::Phase;
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::{Value, json};
use support::{Rig, accuracy_metric, rollout, routes};

/// How long a new pod takes to become ready.
const STARTUP: Duration = Duration::from_millis(400);
/// Baseline replicas before the rollout.
const REPLICAS: i32 = 8;
/// Baseline plus the surge budget (one pod of one GPU).
const CEILING: i32 = 9;

/// What the test saw, shared between the Deployment controller it plays and its watchers.
#[derive(Default)]
struct Seen {
    /// Ready pods per Deployment, as published (a pod counts once its readiness was written, and stops counting the
    /// moment its Deployment asks for fewer).
    ready: HashMap<String, i32>,
    /// `spec.replicas` per Deployment, from the watch.
    wanted: HashMap<String, i32>,
    /// The most pods baseline and canary asked for together, over every change watched.
    most_pods: i32,
    /// Deployment changes watched.
    deployment_changes: usize,
    /// Route changes watched, and the ones whose canary weight exceeded the canary's ready share.
    route_changes: usize,
    weight_above_ready: Vec<String>,
    /// Weights the route carried, in order (repeats dropped).
    weights: Vec<i64>,
    /// When the canary's weight last went from above 0 to 0.
    weight_zero_at: Option<SystemTime>,
    /// When the baseline last reached all its replicas ready.
    baseline_full_at: Option<SystemTime>,
}

impl Seen {
    fn ready(&self, name: &str) -> i32 {
        self.ready.get(name).copied().unwrap_or(0)
    }
}

/// Plays the Deployment controller in `namespace`: every pod asked for becomes ready [`STARTUP`] later.
async fn play_deployments(client: kube::Client, namespace: String, seen: Arc<Mutex<Seen>>) {
    let api: Api<Deployment> = Api::namespaced(client, &namespace);
    let mut starting: HashMap<String, Vec<Instant>> = HashMap::new();
    loop {
        if let Ok(list) = api.list(&Default::default()).await {
            // A deleted Deployment's starting pods go with it.
            starting.retain(|name, _| list.items.iter().any(|d| d.name_any() == *name));
            for deployment in list.items {
                let name = deployment.name_any();
                let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let generation = deployment.metadata.generation.unwrap_or(0);
                let published = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
                let observed = deployment.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
                let pending = starting.entry(name.clone()).or_default();
                let mut ready = published.min(wanted);
                // Pods asked for and not started yet start now; pods no longer asked for go (starting ones first).
                let missing = wanted - ready - i32::try_from(pending.len()).unwrap();
                if missing > 0 {
                    pending.extend(std::iter::repeat_n(Instant::now() + STARTUP, missing.unsigned_abs() as usize));
                } else if missing < 0 {
                    pending.truncate(pending.len().saturating_sub(missing.unsigned_abs() as usize));
                }
                let now = Instant::now();
                let before = pending.len();
                pending.retain(|at| *at > now);
                ready += i32::try_from(before - pending.len()).unwrap();
                if ready == published && observed >= generation {
                    continue;
                }
                // Pods that go stop counting before the API says so; new ones count once it does.
                seen.lock().unwrap().ready.insert(name.clone(), ready.min(published));
                let status = json!({"status": {
                    "observedGeneration": generation, "replicas": wanted, "updatedReplicas": ready,
                    "readyReplicas": ready, "availableReplicas": ready,
                }});
                if api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.is_ok() {
                    let mut seen = seen.lock().unwrap();
                    seen.ready.insert(name.clone(), ready);
                    if name == "model" && ready == REPLICAS && published < REPLICAS {
                        seen.baseline_full_at = Some(SystemTime::now());
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Watches both Deployments: the pods they ask for together, on every change.
async fn watch_deployments(client: kube::Client, namespace: String, seen: Arc<Mutex<Seen>>) {
    let api: Api<Deployment> = Api::namespaced(client, &namespace);
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        let mut seen = seen.lock().unwrap();
        match event {
            watcher::Event::Apply(d) | watcher::Event::InitApply(d) => {
                let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                seen.wanted.insert(d.name_any(), wanted);
            }
            watcher::Event::Delete(d) => {
                seen.wanted.remove(&d.name_any());
                seen.ready.remove(&d.name_any());
            }
            watcher::Event::Init | watcher::Event::InitDone => continue,
        }
        let pods =
            seen.wanted.get("model").copied().unwrap_or(0) + seen.wanted.get("model-canary").copied().unwrap_or(0);
        seen.most_pods = seen.most_pods.max(pods);
        seen.deployment_changes += 1;
    }
}

/// Watches the HTTPRoute: the canary's weight on every change, against the canary's share of the ready pods.
async fn watch_route(client: kube::Client, namespace: String, seen: Arc<Mutex<Seen>>) {
    let mut events = watcher(routes(&client, &namespace), watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let Ok(watcher::Event::Apply(route) | watcher::Event::InitApply(route)) = event else { continue };
        let backends =
            route.data.pointer("/spec/rules/0/backendRefs").and_then(Value::as_array).cloned().unwrap_or_default();
        let weight_of = |name: &str| {
            backends
                .iter()
                .find(|b| b.get("name").and_then(Value::as_str) == Some(name))
                .map(|b| b.get("weight").and_then(Value::as_i64).unwrap_or(1))
        };
        let canary = weight_of("model-canary").unwrap_or(0);
        let baseline = weight_of("model").unwrap_or(0);
        let mut seen = seen.lock().unwrap();
        seen.route_changes += 1;
        let (canary_ready, baseline_ready) = (i64::from(seen.ready("model-canary")), i64::from(seen.ready("model")));
        // weight / (weights) <= canary ready / ready pods, in whole numbers.
        if canary > 0 && canary * (canary_ready + baseline_ready) > (canary + baseline) * canary_ready {
            let line = format!(
                "canary weight {canary} (baseline {baseline}) with {canary_ready} canary and {baseline_ready} baseline pods ready"
            );
            seen.weight_above_ready.push(line);
        }
        if seen.weights.last().is_some_and(|w| *w > 0) && canary == 0 {
            seen.weight_zero_at = Some(SystemTime::now());
        }
        if seen.weights.last() != Some(&canary) {
            seen.weights.push(canary);
        }
    }
}

/// A rig whose baseline runs 8 one-GPU pods, with the test as the Deployment controller and its watchers running.
async fn gpu_rig(prefix: &str, canary: ModelServerConfig) -> (Rig, Arc<Mutex<Seen>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut rig = Rig::new(prefix, canary, None).await;
    rig.stop_kubelet();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (client, ns) = (rig.client.clone(), rig.namespace.clone());
    let tasks = vec![
        tokio::spawn(play_deployments(client.clone(), ns.clone(), seen.clone())),
        tokio::spawn(watch_deployments(client.clone(), ns.clone(), seen.clone())),
        tokio::spawn(watch_route(client.clone(), ns.clone(), seen.clone())),
    ];
    let gpu = json!({"spec": {"replicas": REPLICAS, "template": {"spec": {"containers": [{
        "name": "server",
        "image": "registry.example.com/model-server:1",
        "env": [{"name": "MODEL_URI", "value": "s3://models/fraud/v1"}],
        "resources": {"limits": {"nvidia.com/gpu": "1"}},
    }]}}}});
    let deployments: Api<Deployment> = Api::namespaced(client, &ns);
    deployments.patch("model", &PatchParams::default(), &Patch::Merge(&gpu)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().ready("model") < REPLICAS {
        assert!(Instant::now() < deadline, "the baseline's 8 pods did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (rig, seen, tasks)
}

fn capacity_rollout(name: &str, steps: Value, metrics: Value) -> Value {
    let mut rollout = rollout(name, steps, metrics, json!({"srm": {"enabled": false}}));
    rollout["spec"]["serving"]["deployment"]["capacity"] = json!({"surgeGPUs": 1});
    rollout
}

async fn deployment(rig: &Rig, name: &str) -> Option<Deployment> {
    Api::<Deployment>::namespaced(rig.client.clone(), &rig.namespace).get_opt(name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_gpu_pods_and_a_one_gpu_budget_never_run_more_than_nine_and_promote() {
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(Duration::from_millis(2), 0.3);
    let (mut rig, seen, tasks) = gpu_rig("capacity-ok", canary).await;
    rig.start_controller();
    let started = Instant::now();
    let steps = json!([{"setWeight": 25}, {"pause": {"duration": "1s"}}, {"setWeight": 50}, {"setWeight": 100}]);
    rig.create_rollout(capacity_rollout("fits", steps, json!([accuracy_metric(0.05)]))).await;
    let done = rig
        .wait_for_phase("fits", &[Phase::Succeeded, Phase::RolledBack, Phase::Failed], Duration::from_secs(120))
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:#?}");
    let sizes = status.capacity.clone().unwrap();
    assert_eq!((sizes.baseline_replicas, sizes.surge_replicas, sizes.gpus_per_pod), (8, 1, Some(1)));

    // The baseline serves the candidate on all its 8 pods again; the canary is gone; no traffic goes to it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while deployment(&rig, "model-canary").await.is_some() || seen.lock().unwrap().ready("model") < REPLICAS {
        assert!(Instant::now() < deadline, "the canary should go and the baseline be back at 8 ready pods");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let base = deployment(&rig, "model").await.unwrap();
    assert_eq!(base.spec.as_ref().and_then(|s| s.replicas), Some(REPLICAS));
    let env = serde_json::to_string(&base.spec.unwrap().template).unwrap();
    assert!(env.contains("s3://models/fraud/v2"), "the baseline serves the candidate: {env}");
    assert!(rig.route_canary_weight().await.unwrap_or(0) == 0);

    let seen = seen.lock().unwrap();
    println!(
        "capacity promotion: {:.1} s, {} Deployment changes and {} route changes watched, most pods {}, weights {:?}",
        started.elapsed().as_secs_f64(),
        seen.deployment_changes,
        seen.route_changes,
        seen.most_pods,
        seen.weights
    );
    // The budget was used (the check could fail) and never exceeded.
    assert_eq!(seen.most_pods, CEILING, "baseline plus canary pods peaked at {}", seen.most_pods);
    assert!(seen.weight_above_ready.is_empty(), "{:#?}", seen.weight_above_ready);
    // Traffic moved in small steps that followed the pods, reached 100% on the canary, and came back.
    assert!(seen.weights.contains(&100) && seen.weights.len() > 6, "{:?}", seen.weights);
    assert!(seen.weights.iter().any(|w| *w > 0 && *w < 25), "the first pod took its share first: {:?}", seen.weights);
    drop(seen);
    for task in tasks {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_at_half_returns_traffic_at_once_and_the_baseline_to_eight_pods() {
    let canary = ModelServerConfig::new("v2").accuracy(0.7).latency(Duration::from_millis(2), 0.3);
    let (mut rig, seen, tasks) = gpu_rig("capacity-fail", canary).await;
    rig.start_controller();
    let steps = json!([
        {"setWeight": 25}, {"setWeight": 50},
        {"analysis": {"duration": "60s", "interval": "1s"}},
        {"setWeight": 100},
    ]);
    rig.create_rollout(capacity_rollout("too-big", steps, json!([accuracy_metric(0.02)]))).await;
    let done = rig
        .wait_for_phase("too-big", &[Phase::Succeeded, Phase::RolledBack, Phase::Failed], Duration::from_secs(120))
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack), "{status:#?}");
    assert!(status.message.as_deref().unwrap_or_default().contains("accuracy"), "{status:#?}");
    // It failed at the 50% step, on 4 canary pods.
    let history = status.history.clone().unwrap_or_default();
    assert!(history.iter().any(|h| h.message.as_deref().is_some_and(|m| m.contains("canary weight set to 50%"))));
    let verdict = history.iter().rev().find(|h| h.phase == Phase::RollingBack).unwrap();
    let verdict_at = SystemTime::from(verdict.time.parse::<jiff::Timestamp>().unwrap());

    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.lock().unwrap().ready("model") < REPLICAS || deployment(&rig, "model-canary").await.is_some() {
        assert!(Instant::now() < deadline, "the baseline should be back at 8 ready pods and the canary gone");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rig.route_canary_weight().await.unwrap_or(0), 0);
    let base = deployment(&rig, "model").await.unwrap();
    assert_eq!(base.spec.as_ref().and_then(|s| s.replicas), Some(REPLICAS));
    let env = serde_json::to_string(&base.spec.unwrap().template).unwrap();
    assert!(env.contains("s3://models/fraud/v1"), "the baseline still serves v1: {env}");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.most_pods, CEILING, "baseline plus canary pods peaked at {}", seen.most_pods);
    assert!(seen.weight_above_ready.is_empty(), "{:#?}", seen.weight_above_ready);
    assert!(seen.weights.contains(&50), "{:?}", seen.weights);
    let since =
        |at: Option<SystemTime>| at.and_then(|at| at.duration_since(verdict_at).ok()).map(|d| d.as_secs_f64() * 1000.0);
    let to_zero = since(seen.weight_zero_at).expect("the weight went to 0 after the verdict");
    let to_full = since(seen.baseline_full_at).expect("the baseline reached 8 ready pods after the verdict");
    println!(
        "capacity rollback at 50%: failing verdict -> canary weight 0 in {to_zero:.0} ms; -> baseline 8/8 ready in \
         {to_full:.0} ms (pod startup {} ms); weights {:?}",
        STARTUP.as_millis(),
        seen.weights
    );
    assert!(to_full >= to_zero, "traffic left the canary before the baseline was whole again");
    drop(seen);
    for task in tasks {
        task.abort();
    }
}
