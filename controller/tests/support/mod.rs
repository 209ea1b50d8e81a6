//! A rig for controller tests on the real control plane and a real Prometheus: a baseline Deployment and HTTPRoute
//! in a fresh namespace, baseline and canary model servers scraped by Prometheus, a load driver that follows the
//! route's weights, a stand-in for the Deployment controller (there is no controller-manager), and the Rampart
//! controller itself, in-process or as a real process.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use rampart_api::{ModelRollout, Phase};
use rampart_controller::{ControllerConfig, Metrics};
use rampart_testenv::load_driver::{LoadDriver, RouteSource};
use rampart_testenv::model_server::{ModelServer, ModelServerConfig};
use serde_json::{Value, json};
use tokio::sync::watch;

pub mod kubelet;

/// Requests per second the load driver sends (split by the route's weights).
pub const LOAD_RPS: f64 = 400.0;

/// Heavy rollout tests run one at a time: the machine has two cores.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One controller test's world.
pub struct Rig {
    pub client: kube::Client,
    pub namespace: String,
    pub prometheus_url: String,
    pub baseline: ModelServer,
    pub canary: ModelServer,
    pub driver: LoadDriver,
    controller: Option<(tokio::task::JoinHandle<()>, watch::Sender<bool>)>,
    /// The in-process controller's metrics (rollback latency, verdicts).
    pub metrics: Metrics,
    /// The registry the controller records into, when the test gives one.
    pub database_url: Option<String>,
    /// Keys the controller trusts.
    pub trusted_keys: Vec<rampart_checks::signing::TrustedKey>,
    /// Where each trusted key may vouch (by key label).
    pub key_scopes: rampart_controller::verify::KeyScopes,
    /// Whether the controller honours insecureSkipSignature (the rollouts of most tests are unsigned).
    pub allow_insecure: bool,
    /// Smoke-training image prefixes the controller allows.
    pub smoke_allow: Vec<String>,
    /// Other Prometheus servers rollouts may name (`--prometheus-allowed-url`).
    pub prometheus_allow: Vec<String>,
    /// Time limit of one Prometheus query.
    pub prometheus_timeout: Duration,
    /// Most time one look spends on its queries.
    pub prometheus_look_deadline: Duration,
    /// Notification sinks and retry settings of the controller.
    pub notifications: rampart_controller::notify::sinks::NotifyConfig,
    processes: Vec<std::process::Child>,
    kubelet: tokio::task::JoinHandle<()>,
    _heavy: tokio::sync::MutexGuard<'static, ()>,
}

impl Rig {
    /// Sets up the namespace, Deployment, HTTPRoute, servers, Prometheus targets and load. `canary` configures the
    /// canary model server (version `v2`); the baseline is `v1` with accuracy 0.9.
    pub async fn new(prefix: &str, canary: ModelServerConfig, prometheus_url: Option<String>) -> Rig {
        let baseline = ModelServerConfig::new("v1").accuracy(0.9).latency(Duration::from_millis(2), 0.3);
        Rig::with_servers(prefix, baseline, canary, prometheus_url).await
    }

    /// [`Rig::new`] with the baseline model server configured too (version `v1`).
    pub async fn with_servers(
        prefix: &str,
        baseline: ModelServerConfig,
        canary: ModelServerConfig,
        prometheus_url: Option<String>,
    ) -> Rig {
        let heavy = HEAVY.lock().await;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let env = rampart_testenv::shared().unwrap();
        let client = env.client().await.unwrap();
        let namespace = env.namespace(&client, prefix).await.unwrap();
        let prometheus_url = match prometheus_url {
            Some(url) => url,
            None => rampart_testenv::shared_prometheus().unwrap().url(),
        };

        let deployment: Deployment = serde_json::from_value(json!({
            // The Deployment opts in to rollouts setting MODEL_URI (and nothing else).
            "metadata": {"name": "model", "labels": {"app": "model"}, "annotations": {"rampart.dev/model-uri-env": "MODEL_URI"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "model"}},
                "template": {
                    "metadata": {"labels": {"app": "model"}},
                    "spec": {"containers": [{
                        "name": "server",
                        "image": "registry.example.com/model-server:1",
                        "env": [{"name": "MODEL_URI", "value": "s3://models/fraud/v1"}],
                    }]},
                },
            },
        }))
        .unwrap();
        Api::<Deployment>::namespaced(client.clone(), &namespace)
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap();
        let route: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "model"},
            "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [{"name": "model", "port": 8080}]}]},
        }))
        .unwrap();
        routes(&client, &namespace).create(&PostParams::default(), &route).await.unwrap();

        let baseline = ModelServer::spawn(baseline.namespace(&namespace)).await.unwrap();
        let canary = ModelServer::spawn(canary.namespace(&namespace)).await.unwrap();
        if prometheus_url == rampart_testenv::shared_prometheus().unwrap().url() {
            let prometheus = rampart_testenv::shared_prometheus().unwrap();
            prometheus.add_target(&baseline.addr().to_string(), &[]).unwrap();
            prometheus.add_target(&canary.addr().to_string(), &[]).unwrap();
            // New targets reach Prometheus only every few seconds; an unscraped canary would look like a broken split.
            for server in [&baseline, &canary] {
                prometheus.wait_for_target(&server.addr().to_string(), Duration::from_secs(30)).await.unwrap();
            }
        }
        let backends: BTreeMap<String, std::net::SocketAddr> =
            [("model".to_string(), baseline.addr()), ("model-canary".to_string(), canary.addr())].into();
        let driver =
            LoadDriver::start(client.clone(), &namespace, RouteSource::http_route("model"), backends, LOAD_RPS)
                .await
                .unwrap();
        let kubelet = tokio::spawn(kubelet::play(client.clone(), namespace.clone()));
        Rig {
            client,
            namespace,
            prometheus_url,
            baseline,
            canary,
            driver,
            controller: None,
            metrics: Metrics::default(),
            database_url: None,
            trusted_keys: Vec::new(),
            key_scopes: Default::default(),
            allow_insecure: true,
            smoke_allow: Vec::new(),
            prometheus_allow: Vec::new(),
            prometheus_timeout: Duration::from_secs(2),
            prometheus_look_deadline: Duration::from_secs(10),
            notifications: Default::default(),
            processes: Vec::new(),
            kubelet,
            _heavy: heavy,
        }
    }

    /// Stops the rig's stand-in for the Deployment controller (which rolls every Deployment out at once), for a test
    /// that plays the Deployment controller itself.
    pub fn stop_kubelet(&mut self) {
        self.kubelet.abort();
    }

    /// The controller configuration for this rig: namespace-scoped, with a short lease.
    pub fn controller_config(&self, identity: &str) -> ControllerConfig {
        ControllerConfig {
            prometheus_url: self.prometheus_url.clone(),
            prometheus_timeout: self.prometheus_timeout,
            prometheus_allowed_urls: self.prometheus_allow.clone(),
            prometheus_look_deadline: self.prometheus_look_deadline,
            lease_namespace: self.namespace.clone(),
            lease_name: "rampart-controller".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(4),
            renew_interval: Duration::from_secs(1),
            default_analysis_interval: Duration::from_secs(1),
            namespace: Some(self.namespace.clone()),
            metrics_settle: Duration::from_millis(2500),
            database_url: self.database_url.clone(),
            trusted_keys: self.trusted_keys.clone(),
            key_scopes: self.key_scopes.clone(),
            allow_insecure_skip_signature: self.allow_insecure,
            smoke_image_allow_list: self.smoke_allow.clone(),
            notifications: self.notifications.clone(),
            ..ControllerConfig::default()
        }
    }

    /// Starts the controller in this process.
    pub fn start_controller(&mut self) {
        let (tx, rx) = watch::channel(false);
        let handle = tokio::spawn(rampart_controller::run(
            self.client.clone(),
            self.controller_config("in-process"),
            self.metrics.clone(),
            rx,
        ));
        self.controller = Some((handle, tx));
    }

    /// Stops the in-process controller gracefully.
    pub async fn stop_controller(&mut self) {
        if let Some((handle, tx)) = self.controller.take() {
            let _ = tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
    }

    /// Starts `rampart-controller` as a real process with this identity; returns its index for [`Rig::kill`].
    pub fn spawn_controller_process(&mut self, identity: &str) -> usize {
        let env = rampart_testenv::shared().unwrap();
        let port = rampart_testenv::free_port().unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rampart-controller"))
            .env("KUBECONFIG", env.kubeconfig_path())
            .args(["--prometheus-url", &self.prometheus_url])
            .args(["--lease-namespace", &self.namespace, "--namespace", &self.namespace])
            .args(["--identity", identity, "--lease-duration-seconds", "4", "--renew-interval-seconds", "1"])
            .args(["--metrics-address", &format!("127.0.0.1:{port}"), "--log-format", "text"])
            .args(["--metrics-settle-seconds", "2.5", "--allow-insecure-skip-signature"])
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.processes.push(child);
        self.processes.len() - 1
    }

    /// SIGKILLs a controller process started with [`Rig::spawn_controller_process`].
    pub fn kill(&mut self, index: usize) {
        let child = &mut self.processes[index];
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Applies a rollout (JSON) in this namespace.
    pub async fn create_rollout(&self, rollout: Value) {
        let rollout: ModelRollout = serde_json::from_value(rollout).unwrap();
        self.rollouts().create(&PostParams::default(), &rollout).await.unwrap();
    }

    pub fn rollouts(&self) -> Api<ModelRollout> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Adds or changes an annotation on the rollout (what `rampart promote|abort|retry` do).
    pub async fn annotate(&self, name: &str, key: &str, value: Option<&str>) {
        let patch = json!({"metadata": {"annotations": {key: value}}});
        self.rollouts().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }

    /// Waits until the rollout reaches one of `phases`, panicking with its status after `timeout`.
    pub async fn wait_for_phase(&self, name: &str, phases: &[Phase], timeout: Duration) -> ModelRollout {
        self.wait_for(name, timeout, &format!("phase in {phases:?}"), |r| {
            r.status.as_ref().and_then(|s| s.phase).is_some_and(|p| phases.contains(&p))
        })
        .await
    }

    /// Waits until `check` holds for the rollout.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&ModelRollout) -> bool,
    ) -> ModelRollout {
        let deadline = Instant::now() + timeout;
        loop {
            let rollout = self.rollouts().get(name).await.unwrap();
            if check(&rollout) {
                return rollout;
            }
            if Instant::now() > deadline {
                panic!(
                    "rollout {name} did not reach {what} within {timeout:?}; status: {}",
                    serde_json::to_string_pretty(&rollout.status).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The canary's weight on the HTTPRoute, as the gateway would read it.
    pub async fn route_canary_weight(&self) -> Option<i64> {
        let route = routes(&self.client, &self.namespace).get("model").await.unwrap();
        route.data.pointer("/spec/rules/0/backendRefs")?.as_array()?.iter().find_map(|backend| {
            (backend.get("name")?.as_str()? == "model-canary")
                .then(|| backend.get("weight").and_then(Value::as_i64).unwrap_or(1))
        })
    }

    /// Events recorded for the rollout, by reason, in order; an Event repeated as a series counts as many times.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut list: Vec<Event> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        list.into_iter()
            .flat_map(|e| {
                let count = e.series.as_ref().map(|s| s.count).unwrap_or(1).max(1);
                std::iter::repeat_n(e.reason.unwrap_or_default(), usize::try_from(count).unwrap_or(1))
            })
            .collect()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for child in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((handle, tx)) = self.controller.take() {
            let _ = tx.send(true);
            handle.abort();
        }
        self.kubelet.abort();
        if let Ok(prometheus) = rampart_testenv::shared_prometheus() {
            let _ = prometheus.remove_target(&self.baseline.addr().to_string());
            let _ = prometheus.remove_target(&self.canary.addr().to_string());
        }
    }
}

pub fn routes(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &rampart_controller::traffic::httproute_resource())
}

/// A rollout of `v2` against `v1` with the given steps and metrics, in the rig's shape.
pub fn rollout(name: &str, steps: Value, metrics: Value, extra_analysis: Value) -> Value {
    let mut analysis = json!({"minSamples": 100, "metrics": metrics});
    if let (Some(analysis), Some(extra)) = (analysis.as_object_mut(), extra_analysis.as_object()) {
        for (k, v) in extra {
            analysis.insert(k.clone(), v.clone());
        }
    }
    json!({
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": name},
        "spec": {
            "model": "fraud",
            "candidate": {"version": "v2", "artifact": {
                "uri": "s3://models/fraud/v2",
                "digest": format!("sha256:{}", "0".repeat(64)),
            }},
            "baseline": {"version": "v1"},
            "checks": {"insecureSkipSignature": true},
            "serving": {"deployment": {"name": "model", "modelEnv": "MODEL_URI"}},
            "traffic": {"gatewayAPI": {"httpRoute": "model", "baselineBackend": "model", "canaryBackend": "model-canary", "port": 8080}},
            "steps": steps,
            "analysis": analysis,
        }
    })
}

/// The accuracy metric over the model servers' counters.
pub fn accuracy_metric(tolerance: f64) -> Value {
    json!({
        "name": "accuracy", "kind": "ratio", "direction": "higherIsBetter", "tolerance": {"absolute": tolerance},
        "queries": {
            "success": "sum(model_predictions_correct_total{namespace=\"{{namespace}}\",version=\"{{version}}\"})",
            "total": "sum(model_predictions_labelled_total{namespace=\"{{namespace}}\",version=\"{{version}}\"})",
        }
    })
}

/// The latency metric over the model servers' histograms.
pub fn latency_metric(tolerance: f64) -> Value {
    json!({
        "name": "latency", "kind": "latency", "direction": "lowerIsBetter", "tolerance": {"absolute": tolerance},
        "latency": {"quantile": 0.95, "thresholdSlack": 0.1},
        "queries": {
            "buckets": "sum by (le) (model_request_duration_seconds_bucket{namespace=\"{{namespace}}\",version=\"{{version}}\"})",
        }
    })
}
