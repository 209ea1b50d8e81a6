//! The controller's test fixtures against real servers: the model server's behaviour and metrics, Prometheus scraping
//! it (and surviving a restart), and the load driver following HTTPRoute and InferenceService splits on the real API
//! server.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use rampart_testenv::{
    LoadDriver, LoadOptions, ModelServer, ModelServerConfig, Prometheus, PrometheusOptions, RouteSource,
};

const FAST: Duration = Duration::from_millis(2);

/// Posts `count` labelled requests and returns how many answers were 200 and how many of those were correct.
async fn predict(server: &ModelServer, count: u32) -> (u32, u32) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (mut ok, mut correct) = (0, 0);
    for i in 0..count {
        let response = client
            .post(format!("{}/predict", server.url()))
            .json(&serde_json::json!({ "label": i % 10 }))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            ok += 1;
            let body: serde_json::Value = response.json().await.unwrap();
            correct += u32::from(body["correct"] == true);
        }
    }
    (ok, correct)
}

#[tokio::test]
async fn model_server_answers_with_the_configured_accuracy_and_errors() {
    let server =
        ModelServer::spawn(ModelServerConfig::new("v1").accuracy(1.0).latency(FAST, 0.0).seed(1)).await.unwrap();
    assert_eq!(predict(&server, 50).await, (50, 50));

    server.set_accuracy(0.0);
    assert_eq!(predict(&server, 50).await, (50, 0), "accuracy 0 must never be right");

    server.set_accuracy(0.7);
    let (_, correct) = predict(&server, 400).await;
    assert!((230..330).contains(&correct), "{correct} of 400 correct at accuracy 0.7");

    server.set_error_rate(1.0);
    assert_eq!(predict(&server, 20).await.0, 0, "error rate 1 must fail every request");

    let served = server.served();
    assert_eq!(served.requests, 520);
    assert_eq!(served.errors, 20);
    assert_eq!(served.labelled, 500);
    assert_eq!(served.correct, 50 + u64::from(correct));
}

#[tokio::test]
async fn with_a_label_delay_the_outcome_counters_grow_only_after_the_delay() {
    let delay = Duration::from_millis(1500);
    let config = ModelServerConfig::new("v1").accuracy(1.0).latency(FAST, 0.0).seed(3).label_delay(delay);
    let server = ModelServer::spawn(config).await.unwrap();
    let sent = std::time::Instant::now();
    assert_eq!(predict(&server, 20).await, (20, 20), "the answers themselves are not delayed");
    let served = server.served();
    assert!(sent.elapsed() < delay, "the requests took longer than the delay; the check below means nothing");
    assert_eq!((served.requests, served.labelled, served.correct), (20, 0, 0), "no label has arrived yet");
    tokio::time::sleep(delay + Duration::from_millis(500)).await;
    let served = server.served();
    assert_eq!((served.labelled, served.correct), (20, 20), "every label arrived after the delay");
}

#[tokio::test]
async fn model_server_sleeps_the_configured_latency_and_records_it_in_the_histogram() {
    let server =
        ModelServer::spawn(ModelServerConfig::new("v1").latency(Duration::from_millis(40), 0.0)).await.unwrap();
    let started = std::time::Instant::now();
    predict(&server, 5).await;
    assert!(started.elapsed() >= Duration::from_millis(200), "5 requests at 40 ms took {:?}", started.elapsed());

    let text = server.metrics_text();
    let bucket = |le: &str| {
        let prefix = format!(r#"model_request_duration_seconds_bucket{{version="v1",le="{le}"}} "#);
        text.lines().find_map(|line| line.strip_prefix(&prefix)).unwrap().parse::<u64>().unwrap()
    };
    assert_eq!(bucket("0.035"), 0, "{text}");
    assert_eq!(bucket("0.15"), 5, "{text}");
    assert!(text.contains(r#"model_request_duration_seconds_count{version="v1"} 5"#), "{text}");
}

#[tokio::test]
async fn a_malformed_request_gets_400_and_is_counted() {
    let server = ModelServer::spawn(ModelServerConfig::new("v1").latency(FAST, 0.0)).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/predict", server.url());
    assert_eq!(client.post(&url).body("not json").send().await.unwrap().status(), 400);
    assert_eq!(client.post(&url).json(&serde_json::json!({"label": 10})).send().await.unwrap().status(), 400);
    assert!(server.metrics_text().contains(r#"model_requests_total{version="v1",code="400"} 2"#));
}

#[tokio::test]
async fn model_server_behaviour_can_be_changed_over_http() {
    let server = ModelServer::spawn(ModelServerConfig::new("v1")).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/admin/behaviour", server.url());
    let response = client.put(&url).json(&serde_json::json!({"accuracy": 0.85})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.behaviour().accuracy, 0.85);
    let rejected = client.put(&url).json(&serde_json::json!({"error_rate": 2.0})).send().await.unwrap();
    assert_eq!(rejected.status(), 400);
    assert_eq!(server.behaviour().error_rate, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_model_server_and_sees_correct_predictions() {
    let prometheus = rampart_testenv::shared_prometheus().unwrap();
    let namespace = "scrape-correct";
    let server = ModelServer::spawn(ModelServerConfig::new("v1").namespace(namespace).accuracy(1.0).latency(FAST, 0.0))
        .await
        .unwrap();
    prometheus.add_target(&server.addr().to_string(), &[]).unwrap();
    prometheus.wait_for_target(&server.addr().to_string(), Duration::from_secs(30)).await.unwrap();
    predict(&server, 30).await;

    let query = format!(r#"model_predictions_correct_total{{version="v1",namespace="{namespace}"}}"#);
    let samples = prometheus
        .wait_until(&query, |samples| samples.iter().any(|s| s.value == 30.0), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert_eq!(samples[0].value, 30.0);
    assert_eq!(samples[0].labels["job"], rampart_testenv::prometheus::SCRAPE_JOB);

    let rate = format!(r#"sum(model_requests_total{{namespace="{namespace}",code="500"}})"#);
    assert_eq!(prometheus.query_value(&rate).await.unwrap(), Some(0.0), "the 500 series exists before any failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_target_goes_stale() {
    let prometheus = rampart_testenv::shared_prometheus().unwrap();
    let server = ModelServer::spawn(ModelServerConfig::new("v1").namespace("scrape-removed")).await.unwrap();
    let address = server.addr().to_string();
    prometheus.add_target(&address, &[("role", "canary")]).unwrap();
    let up = format!(r#"up{{instance="{address}"}}"#);
    let samples = prometheus.wait_for_series(&up, Duration::from_secs(30)).await.unwrap();
    assert_eq!(samples[0].value, 1.0);
    assert_eq!(samples[0].labels["role"], "canary");

    prometheus.remove_target(&address).unwrap();
    assert!(!prometheus.targets().contains_key(&address));
    prometheus.wait_until(&up, <[_]>::is_empty, Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_prometheus_refuses_queries_and_comes_back_with_its_data() {
    let mut prometheus =
        Prometheus::start_with(PrometheusOptions::default().scrape_interval(Duration::from_millis(500))).unwrap();
    let server = ModelServer::spawn(ModelServerConfig::new("v1").namespace("outage").latency(FAST, 0.0)).await.unwrap();
    prometheus.add_target(&server.addr().to_string(), &[]).unwrap();
    predict(&server, 7).await;
    let query = r#"model_predictions_labelled_total{namespace="outage"}"#;
    prometheus.wait_until(query, |s| s.first().is_some_and(|s| s.value == 7.0), Duration::from_secs(30)).await.unwrap();
    let url = prometheus.url();

    prometheus.stop();
    assert!(!prometheus.is_ready());
    assert!(prometheus.query(query).await.is_err(), "a stopped Prometheus must not answer");

    prometheus.restart().unwrap();
    assert_eq!(prometheus.url(), url, "the restarted server keeps its address");
    assert_eq!(prometheus.query_value(query).await.unwrap(), Some(7.0), "the TSDB survives the restart");
    predict(&server, 3).await;
    prometheus
        .wait_until(query, |s| s.first().is_some_and(|s| s.value == 10.0), Duration::from_secs(30))
        .await
        .unwrap();
}

#[test]
fn a_missing_prometheus_binary_says_how_to_install_it() {
    let err = Prometheus::start_with(PrometheusOptions::default().binary("/nonexistent/prometheus")).err().unwrap();
    assert!(matches!(err, rampart_testenv::Error::Missing { .. }), "{err}");
    assert!(err.to_string().contains("apt-get install prometheus"), "{err}");
}

fn http_route_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(client, namespace, &ApiResource::from_gvk_with_plural(&gvk, "httproutes"))
}

async fn create_route(api: &Api<DynamicObject>, name: &str, baseline_weight: u64, canary_weight: u64) {
    let route: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": { "name": name },
        "spec": { "rules": [ { "backendRefs": [
            { "name": "model-baseline", "port": 80, "weight": baseline_weight },
            { "name": "model-canary", "port": 80, "weight": canary_weight },
        ] } ] },
    }))
    .unwrap();
    api.create(&PostParams::default(), &route).await.unwrap();
}

async fn set_weights(api: &Api<DynamicObject>, name: &str, baseline_weight: u64, canary_weight: u64) {
    let patch = serde_json::json!({ "spec": { "rules": [ { "backendRefs": [
        { "name": "model-baseline", "port": 80, "weight": baseline_weight },
        { "name": "model-canary", "port": 80, "weight": canary_weight },
    ] } ] } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

async fn two_model_servers(namespace: &str) -> (ModelServer, ModelServer, BTreeMap<String, SocketAddr>) {
    let baseline =
        ModelServer::spawn(ModelServerConfig::new("v1").namespace(namespace).latency(FAST, 0.0)).await.unwrap();
    let canary =
        ModelServer::spawn(ModelServerConfig::new("v2").namespace(namespace).latency(FAST, 0.0)).await.unwrap();
    let backends =
        [("model-baseline".to_string(), baseline.addr()), ("model-canary".to_string(), canary.addr())].into();
    (baseline, canary, backends)
}

/// Runs the driver for `duration` from zeroed counts and returns what it sent.
async fn counts_over(driver: &LoadDriver, duration: Duration) -> BTreeMap<String, rampart_testenv::BackendCounts> {
    driver.reset_counts();
    tokio::time::sleep(duration).await;
    driver.reset_counts()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_driver_follows_http_route_weight_changes() {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, "load-weights").await.unwrap();
    let routes = http_route_api(client.clone(), &namespace);
    create_route(&routes, "model", 100, 0).await;
    let (baseline, canary, backends) = two_model_servers(&namespace).await;
    let driver = LoadDriver::start_with(
        client,
        &namespace,
        RouteSource::http_route("model"),
        backends,
        200.0,
        LoadOptions { seed: Some(3), ..LoadOptions::default() },
    )
    .await
    .unwrap();

    let counts = counts_over(&driver, Duration::from_secs(1)).await;
    assert_eq!(counts["model-canary"].sent, 0, "weight 0 must send nothing to the canary: {counts:?}");
    assert!(counts["model-baseline"].sent > 100, "{counts:?}");

    set_weights(&routes, "model", 50, 50).await;
    driver.wait_for_share("model-canary", 0.5, Duration::from_secs(5)).await.unwrap();
    let counts = counts_over(&driver, Duration::from_secs(2)).await;
    let (to_baseline, to_canary) = (counts["model-baseline"].sent, counts["model-canary"].sent);
    let share = to_canary as f64 / (to_baseline + to_canary) as f64;
    assert!((0.4..0.6).contains(&share), "canary share {share} at weight 50/50: {counts:?}");
    assert!(to_baseline + to_canary > 250, "200 rps for 2 s sent only {}", to_baseline + to_canary);

    set_weights(&routes, "model", 0, 100).await;
    driver.wait_for_share("model-canary", 1.0, Duration::from_secs(5)).await.unwrap();
    let counts = counts_over(&driver, Duration::from_secs(1)).await;
    assert_eq!(counts["model-baseline"].sent, 0, "{counts:?}");
    assert!(counts["model-canary"].sent > 100, "{counts:?}");

    set_weights(&routes, "model", 0, 0).await;
    driver.wait_for_share("model-canary", 0.0, Duration::from_secs(5)).await.unwrap();
    driver.reset_counts();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let unrouted = driver.unrouted();
    let counts = driver.counts();
    assert_eq!(counts["model-baseline"].sent + counts["model-canary"].sent, 0, "all-zero weights: {counts:?}");
    assert!(unrouted > 100, "all-zero weights send nothing anywhere: {unrouted} unrouted");

    let final_counts = driver.stop().await;
    assert_eq!(final_counts["model-canary"].failed, 0);
    assert!(canary.served().requests > 0 && baseline.served().requests > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_backend_gets_nothing_although_its_weight_says_otherwise() {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, "load-drop").await.unwrap();
    let routes = http_route_api(client.clone(), &namespace);
    create_route(&routes, "model", 75, 25).await;
    let (_baseline, canary, backends) = two_model_servers(&namespace).await;
    let driver =
        LoadDriver::start(client, &namespace, RouteSource::http_route("model"), backends, 200.0).await.unwrap();

    driver.drop_backend("model-canary");
    let served_before = canary.served().requests;
    let counts = counts_over(&driver, Duration::from_secs(2)).await;
    assert_eq!(counts["model-canary"].sent, 0, "{counts:?}");
    assert!(counts["model-canary"].dropped > 40, "the canary's 25% share is counted as dropped: {counts:?}");
    assert!(counts["model-baseline"].sent > 200, "{counts:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(canary.served().requests, served_before, "the canary server saw no request");

    driver.restore_backend("model-canary");
    let counts = counts_over(&driver, Duration::from_secs(1)).await;
    assert!(counts["model-canary"].sent > 20, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_driver_splits_by_inference_service_canary_percent() {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, "load-kserve").await.unwrap();
    let gvk = GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService");
    let services: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &namespace, &ApiResource::from_gvk_with_plural(&gvk, "inferenceservices"));
    let service: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": { "name": "fraud" },
        "spec": { "predictor": { "model": { "storageUri": "s3://models/fraud/v1" } } },
    }))
    .unwrap();
    services.create(&PostParams::default(), &service).await.unwrap();
    let (_baseline, _canary, backends) = two_model_servers(&namespace).await;
    let route = RouteSource::inference_service("fraud", "model-baseline", "model-canary");
    let driver = LoadDriver::start(client, &namespace, route, backends, 200.0).await.unwrap();
    let counts = counts_over(&driver, Duration::from_millis(500)).await;
    assert_eq!(counts["model-canary"].sent, 0, "no canaryTrafficPercent: all to the baseline: {counts:?}");

    let patch = serde_json::json!({ "spec": { "predictor": { "canaryTrafficPercent": 30 } } });
    services.patch("fraud", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    driver.wait_for_share("model-canary", 0.3, Duration::from_secs(5)).await.unwrap();
    let counts = counts_over(&driver, Duration::from_secs(2)).await;
    let (to_baseline, to_canary) = (counts["model-baseline"].sent, counts["model-canary"].sent);
    let share = to_canary as f64 / (to_baseline + to_canary) as f64;
    assert!((0.2..0.4).contains(&share), "canary share {share} at 30%: {counts:?}");
}

#[tokio::test]
async fn load_driver_refuses_non_loopback_backends_and_a_route_that_does_not_exist() {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, "load-refuse").await.unwrap();
    let remote: BTreeMap<String, SocketAddr> = [("model".to_string(), "10.0.0.1:80".parse().unwrap())].into();
    let err = LoadDriver::start(client.clone(), &namespace, RouteSource::http_route("model"), remote, 10.0)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("loopback"), "{err}");

    let local: BTreeMap<String, SocketAddr> = [("model".to_string(), "127.0.0.1:9".parse().unwrap())].into();
    let err =
        LoadDriver::start(client, &namespace, RouteSource::http_route("absent"), local, 100.0).await.err().unwrap();
    assert!(err.to_string().contains(&format!("HTTPRoute {namespace}/absent")), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_driver_binary_sends_traffic_and_reports_counts() {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, "load-binary").await.unwrap();
    create_route(&http_route_api(client, &namespace), "model", 1, 0).await;
    let (baseline, canary, backends) = two_model_servers(&namespace).await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_rampart-load-driver"));
    command
        .arg("--kubeconfig")
        .arg(env.kubeconfig_path())
        .args(["--namespace", &namespace, "--httproute", "model", "--rps", "100", "--report-every", "1"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (name, addr) in &backends {
        command.arg("--backend").arg(format!("{name}={addr}"));
    }
    let child = command.spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = std::process::Command::new("kill").arg("-TERM").arg(child.id().unwrap().to_string()).status().unwrap();
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("model-baseline: share 100%"), "{stdout}");
    assert!(stdout.contains("model-canary: share 0% sent 0"), "{stdout}");
    assert!(stdout.contains("final:"), "{stdout}");
    assert!(baseline.served().requests > 50, "{stdout}");
    assert_eq!(canary.served().requests, 0);
}
