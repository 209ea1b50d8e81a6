//! Bench: time from a failing analysis verdict to the HTTPRoute weight 0, over 20 real rollbacks on the test control
//! plane with a real Prometheus; and the wall time of a happy-path rollout (5 -> 25 -> 50 -> 100 with two analysis
//! steps). Run: `cargo bench -p rampart-controller --bench rollback_latency`.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use rampart_api::Phase;
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::json;
use support::{Rig, accuracy_metric, rollout};

const ROLLBACKS: usize = 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = Duration::from_millis(2);

    // Happy path wall time.
    let mut rig = Rig::new("bench-happy", ModelServerConfig::new("v2").accuracy(0.9).latency(quick, 0.3), None).await;
    rig.start_controller();
    let steps = json!([
        {"setWeight": 5}, {"pause": {"duration": "1s"}},
        {"setWeight": 25}, {"analysis": {"duration": "60s", "interval": "1s"}},
        {"setWeight": 50}, {"analysis": {"duration": "60s", "interval": "1s"}},
        {"setWeight": 100},
    ]);
    let started = Instant::now();
    rig.create_rollout(rollout("happy", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    let done = rig.wait_for_phase("happy", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(180)).await;
    let happy = started.elapsed();
    assert_eq!(done.status.unwrap().phase, Some(Phase::Succeeded));
    rig.stop_controller().await;
    drop(rig);

    // Rollbacks: a canary 10 points worse, 20 times in a row on the same route.
    let mut rig =
        Rig::new("bench-rollback", ModelServerConfig::new("v2").accuracy(0.8).latency(quick, 0.3), None).await;
    rig.start_controller();
    let mut latencies = Vec::new();
    for i in 0..ROLLBACKS {
        let name = format!("bad-{i}");
        let steps =
            json!([{"setWeight": 25}, {"analysis": {"duration": "60s", "interval": "500ms"}}, {"setWeight": 100}]);
        let (sum_before, count_before) = histogram_sum_count(&rig.metrics.encode(), "rampart_rollback_latency_seconds");
        rig.create_rollout(rollout(&name, steps, json!([accuracy_metric(0.01)]), json!({}))).await;
        let done = rig.wait_for_phase(&name, &[Phase::RolledBack], Duration::from_secs(60)).await;
        let message = done.status.and_then(|s| s.message).unwrap_or_default();
        assert_eq!(rig.route_canary_weight().await, Some(0));
        let (sum_after, count_after) = histogram_sum_count(&rig.metrics.encode(), "rampart_rollback_latency_seconds");
        assert_eq!(count_after, count_before + 1.0, "rollback {i} was not caused by a failing verdict: {message}");
        latencies.push(Duration::from_secs_f64(sum_after - sum_before));
    }
    rig.stop_controller().await;

    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("happy-path rollout (5 -> 25 -> 50 -> 100, two analysis steps): {:.1} s", happy.as_secs_f64());
    println!(
        "failing verdict -> HTTPRoute weight 0 (n = {}): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        latencies.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() * 9 / 10]),
        ms(latencies[latencies.len() - 1]),
    );
}

fn histogram_sum_count(text: &str, name: &str) -> (f64, f64) {
    let value = |suffix: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}_{suffix}")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (value("sum"), value("count"))
}
