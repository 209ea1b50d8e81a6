//! The failures operators meet: Prometheus going away mid-analysis, the controller killed mid-analysis, and a second
//! replica taking over when the leader dies.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use rampart_api::Phase;
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::json;
use support::{Rig, accuracy_metric, rollout};

const QUICK: Duration = Duration::from_millis(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stopped_mid_analysis_never_promotes_and_the_inconclusive_policy_applies() {
    // Scraped every 250 ms like the shared Prometheus: with a slower scrape the baseline's and the canary's counters
    // are read at moments far enough apart that, on a loaded machine, the traffic split looks wrong (a sample-ratio
    // Fail this test is not about).
    let options = rampart_testenv::PrometheusOptions::default().scrape_interval(Duration::from_millis(250));
    let mut prometheus = rampart_testenv::Prometheus::start_with(options).unwrap();
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("promdown", canary, Some(prometheus.url())).await;
    for server in [&rig.baseline, &rig.canary] {
        prometheus.add_target(&server.addr().to_string(), &[]).unwrap();
    }
    for server in [&rig.baseline, &rig.canary] {
        prometheus.wait_for_target(&server.addr().to_string(), Duration::from_secs(30)).await.unwrap();
    }
    rig.start_controller();
    // Tolerance 0: an equal canary never passes early, so the analysis is still running when Prometheus goes. Alpha
    // 0.001 keeps the chance of a (correct-by-design) false Fail on this A/A canary negligible.
    let steps = json!([{"setWeight": 25}, {"analysis": {"duration": "20s", "interval": "1s"}}, {"setWeight": 100}]);
    rig.create_rollout(rollout(
        "blind",
        steps,
        json!([accuracy_metric(0.0)]),
        json!({"onInconclusive": "rollback", "alpha": 0.001}),
    ))
    .await;
    rig.wait_for("blind", Duration::from_secs(30), "two analysis looks", |r| {
        r.status.as_ref().and_then(|s| s.analysis.as_ref()).and_then(|a| a.looks).unwrap_or(0) >= 2
    })
    .await;
    prometheus.stop();

    let unreadable = rig
        .wait_for("blind", Duration::from_secs(20), "a metrics read error", |r| {
            r.status.as_ref().and_then(|s| s.analysis.as_ref()).and_then(|a| a.provider_errors).unwrap_or(0) >= 1
        })
        .await;
    let analysis = unreadable.status.unwrap().analysis.unwrap();
    assert!(analysis.last_error.unwrap().contains("unreachable"), "the error names Prometheus as unreachable");

    let done = rig.wait_for_phase("blind", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(40)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack), "never promoted without metrics: {:?}", status.message);
    let message = status.message.unwrap();
    assert!(message.contains("metrics could not be read") && message.contains("onInconclusive: rollback"), "{message}");
    assert_eq!(rig.route_canary_weight().await, Some(0));
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_analysis_resumes_at_the_same_step_without_repeating_it() {
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("sigkill", canary, None).await;
    let first = rig.spawn_controller_process("replica-a");
    // An equal canary at tolerance 0 keeps the analysis running; alpha 0.001 makes a false Fail negligible.
    let steps = json!([{"setWeight": 20}, {"analysis": {"duration": "25s", "interval": "1s"}}, {"setWeight": 100}]);
    rig.create_rollout(rollout(
        "resumed",
        steps,
        json!([accuracy_metric(0.0)]),
        json!({"onInconclusive": "rollback", "alpha": 0.001}),
    ))
    .await;
    let before = rig
        .wait_for("resumed", Duration::from_secs(40), "three analysis looks", |r| {
            r.status.as_ref().and_then(|s| s.analysis.as_ref()).and_then(|a| a.looks).unwrap_or(0) >= 3
        })
        .await
        .status
        .unwrap();
    rig.kill(first);
    let killed_at = Instant::now();
    assert_eq!(rig.route_canary_weight().await, Some(20));

    rig.spawn_controller_process("replica-b");
    let looks_before = before.analysis.as_ref().unwrap().looks.unwrap();
    let resumed = rig
        .wait_for("resumed", Duration::from_secs(30), "more looks after the restart", |r| {
            let s = r.status.as_ref().unwrap();
            s.analysis.as_ref().and_then(|a| a.looks).unwrap_or(0) > looks_before + 1
        })
        .await
        .status
        .unwrap();
    println!("resumed {:.1}s after SIGKILL", killed_at.elapsed().as_secs_f64());
    assert_eq!(resumed.current_step, before.current_step, "same step");
    assert_eq!(resumed.step_started_at, before.step_started_at, "the step was not restarted");
    assert_eq!(resumed.canary_weight, Some(20));
    assert_eq!(rig.route_canary_weight().await, Some(20), "weight unchanged");

    let done = rig.wait_for_phase("resumed", &[Phase::RolledBack, Phase::Succeeded], Duration::from_secs(40)).await;
    assert_eq!(done.status.unwrap().phase, Some(Phase::RolledBack), "an A/A canary at tolerance 0 ends inconclusive");
    let reasons = rig.event_reasons("resumed").await;
    assert_eq!(reasons.iter().filter(|r| *r == "Started").count(), 1, "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| *r == "WeightSet").count(), 1, "setWeight 20 applied once: {reasons:?}");
    assert_eq!(reasons.iter().filter(|r| *r == "RollingBack").count(), 1, "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_acts_and_the_other_replica_takes_over_when_it_dies() {
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("leader", canary, None).await;
    let a = rig.spawn_controller_process("replica-a");
    let b = rig.spawn_controller_process("replica-b");
    let leases: Api<Lease> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let holder = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(lease) = leases.get("rampart-controller").await
                && let Some(holder) = lease.spec.and_then(|s| s.holder_identity)
            {
                return holder;
            }
            assert!(Instant::now() < deadline, "no replica took the lease");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let leader = holder.await;
    let steps = json!([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("ha", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    rig.wait_for_phase("ha", &[Phase::Paused], Duration::from_secs(30)).await;

    let events: Api<Event> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let instances: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reporting_instance)
        .collect();
    assert!(!instances.is_empty());
    assert!(instances.iter().all(|i| *i == leader), "only {leader} wrote events: {instances:?}");

    let (dead, survivor) = if leader == "replica-a" { (a, "replica-b") } else { (b, "replica-a") };
    rig.kill(dead);
    let killed = Instant::now();
    loop {
        let lease = leases.get("rampart-controller").await.unwrap();
        if lease.spec.and_then(|s| s.holder_identity).as_deref() == Some(survivor) {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(15), "{survivor} did not take over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed.elapsed();
    println!("takeover after {:.1}s (lease duration 4s)", takeover.as_secs_f64());
    assert!(takeover <= Duration::from_secs(4) + Duration::from_secs(3), "took {takeover:?}");

    rig.annotate("ha", rampart_api::ANNOTATION_PROMOTE, Some("true")).await;
    rig.wait_for_phase("ha", &[Phase::Succeeded], Duration::from_secs(30)).await;
    // The Event is published right after the status write that made the rollout Succeeded: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let promoted_by = loop {
        let promoted_by: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Promoted"))
            .filter_map(|e| e.reporting_instance)
            .collect();
        if !promoted_by.is_empty() || Instant::now() > deadline {
            break promoted_by;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(promoted_by, vec![survivor.to_string()]);
}
