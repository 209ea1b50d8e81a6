//! What operators' own tools read from a real rollout: a real `rampart-controller` process promotes a good canary
//! while the test Prometheus scrapes its /metrics; then the real kubectl (built by testenv/build from the same
//! Kubernetes modules as the API server) waits on the kstatus conditions, and every query of the Grafana dashboard
//! shipped in the chart (charts/rampart/files/dashboard.json) is evaluated by that Prometheus.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use rampart_api::Phase;
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::{Value, json};
use support::{Rig, accuracy_metric, rollout};

/// Stops the controller process when the test ends.
struct Controller(std::process::Child);
impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl(args: &[&str]) -> std::process::Output {
    let binary = rampart_testenv::bin_dir().join("kubectl");
    assert!(binary.is_file(), "{} is missing: run testenv/build (it builds kubectl)", binary.display());
    let env = rampart_testenv::shared().unwrap();
    Command::new(binary)
        .args(args)
        .env("KUBECONFIG", env.kubeconfig_path())
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap()
}

/// Every `expr` of every panel, and the variable queries, with Grafana's variables replaced by what a person viewing
/// the dashboard over the last few minutes would send.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = rampart_testenv::repo_root().join("charts/rampart/files/dashboard.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr.replace("$__rate_interval", "10s").replace("$__range", "5m").replace("$rollout", ".*");
            queries.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        // label_values(METRIC, LABEL) is Grafana's; Prometheus answers the same question with `group by (LABEL)`.
        if let Some(definition) = variable["definition"].as_str()
            && let Some(inner) = definition.strip_prefix("label_values(").and_then(|d| d.strip_suffix(')'))
            && let Some((metric, label)) = inner.split_once(',')
        {
            queries.push((format!("variable {}", variable["name"]), format!("group by ({}) ({metric})", label.trim())));
        }
    }
    assert!(queries.len() >= 10, "the dashboard has {} queries", queries.len());
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_and_every_grafana_query_work_on_a_promoted_rollout() {
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(Duration::from_millis(2), 0.3);
    let rig = Rig::new("views", canary, None).await;
    let env = rampart_testenv::shared().unwrap();
    let prometheus = rampart_testenv::shared_prometheus().unwrap();
    let metrics_port = rampart_testenv::free_port().unwrap();
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let _controller = Controller(
        Command::new(env!("CARGO_BIN_EXE_rampart-controller"))
            .env("KUBECONFIG", env.kubeconfig_path())
            .args(["--prometheus-url", &rig.prometheus_url])
            .args(["--lease-namespace", &rig.namespace, "--namespace", &rig.namespace])
            .args(["--identity", "views", "--lease-duration-seconds", "4", "--renew-interval-seconds", "1"])
            .args(["--metrics-address", &metrics_address, "--log-format", "text"])
            .args(["--metrics-settle-seconds", "2.5", "--allow-insecure-skip-signature"])
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    prometheus.add_target(&metrics_address, &[("job", "rampart-controller")]).unwrap();

    let steps = json!([{"setWeight": 20}, {"analysis": {"duration": "60s", "interval": "1s"}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("good", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    let done = rig
        .wait_for_phase("good", &[Phase::Succeeded, Phase::RolledBack, Phase::Failed], Duration::from_secs(150))
        .await;
    assert_eq!(done.status.as_ref().and_then(|s| s.phase), Some(Phase::Succeeded), "{:?}", done.status);

    // kubectl reads the kstatus conditions the way scripts, Flux and Argo CD do.
    let target = "modelrollout/good";
    let ready = kubectl(&["wait", "--for=condition=Ready", "--timeout=60s", "-n", &rig.namespace, target]);
    assert!(ready.status.success(), "kubectl wait Ready: {}", String::from_utf8_lossy(&ready.stderr));
    assert!(String::from_utf8_lossy(&ready.stdout).contains("condition met"));
    for condition in ["Promoted", "ChecksPassed", "Reconciling=False", "Stalled=False"] {
        let waited =
            kubectl(&["wait", &format!("--for=condition={condition}"), "--timeout=30s", "-n", &rig.namespace, target]);
        assert!(waited.status.success(), "kubectl wait {condition}: {}", String::from_utf8_lossy(&waited.stderr));
    }
    let generation = kubectl(&[
        "get",
        "-n",
        &rig.namespace,
        target,
        "-o",
        "jsonpath={.metadata.generation} {.status.observedGeneration} {.status.conditions[?(@.type==\"Ready\")].observedGeneration}",
    ]);
    let numbers: Vec<String> =
        String::from_utf8_lossy(&generation.stdout).split_whitespace().map(String::from).collect();
    assert_eq!(numbers.len(), 3, "{numbers:?}");
    assert!(numbers.iter().all(|n| n == &numbers[0]), "observedGeneration follows metadata.generation: {numbers:?}");

    // Every dashboard query is valid PromQL over series the controller and the model servers really export.
    prometheus.wait_for_target(&metrics_address, Duration::from_secs(30)).await.unwrap();
    prometheus
        .wait_for_series(
            &format!(r#"rampart_rollout_phase{{namespace="{}",rollout="good",phase="Succeeded"}} == 1"#, rig.namespace),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    for (panel, query) in dashboard_queries() {
        let samples = prometheus
            .query(&query)
            .await
            .unwrap_or_else(|err| panic!("panel `{panel}`: Prometheus rejected `{query}`: {err}"));
        // Reconcile errors are exported only once one happens; a clean run has none.
        if !query.contains("rampart_reconcile_errors_total") {
            assert!(!samples.is_empty(), "panel `{panel}`: `{query}` returned no series");
        }
    }
    prometheus.remove_target(&metrics_address).unwrap();
}
