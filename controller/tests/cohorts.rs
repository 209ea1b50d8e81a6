//! Header cohorts end to end on the real API server (with the real Gateway API HTTPRoute CRD validating what Rampart
//! writes) and a real Prometheus: only requests carrying the cohort's header reach the canary, the analysis judges
//! that cohort, and the cohort's route rule is gone after promotion and after rollback.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use rampart_api::Phase;
use rampart_testenv::load_driver::{CohortTraffic, LoadDriver, LoadOptions, RouteSource};
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::{Value, json};
use support::{LOAD_RPS, Rig, accuracy_metric, rollout, routes};

const QUICK: Duration = Duration::from_millis(2);

/// A fifth of the requests carry `x-tenant: internal`.
fn cohort_traffic() -> CohortTraffic {
    CohortTraffic { name: "x-tenant".into(), value: "internal".into(), share: 0.2 }
}

/// Replaces the rig's load driver with one that sends the cohort's header on a share of the requests.
async fn drive_with_cohort(rig: &mut Rig) {
    let backends = [("model".to_string(), rig.baseline.addr()), ("model-canary".to_string(), rig.canary.addr())].into();
    let options = LoadOptions { cohort: Some(cohort_traffic()), ..LoadOptions::default() };
    let driver = LoadDriver::start_with(
        rig.client.clone(),
        &rig.namespace,
        RouteSource::http_route("model"),
        backends,
        LOAD_RPS,
        options,
    )
    .await
    .unwrap();
    let old = std::mem::replace(&mut rig.driver, driver);
    old.stop().await;
}

fn cohort_step() -> Value {
    json!({"cohort": {"headers": [{"name": "x-tenant", "value": "internal"}]}})
}

/// Names of the route's rules (`""` for an unnamed rule).
async fn rule_names(rig: &Rig) -> Vec<String> {
    let route = routes(&rig.client, &rig.namespace).get("model").await.unwrap();
    route.data["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The canary's sample count in a `canary/baseline` samples cell.
fn canary_samples(cell: &str) -> f64 {
    cell.split('/').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_cohort_reaches_the_canary_its_analysis_judges_it_and_the_match_goes_on_promotion() {
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("cohort-ok", canary, None).await;
    drive_with_cohort(&mut rig).await;
    rig.start_controller();
    let steps = json!([
        cohort_step(),
        {"analysis": {"duration": "60s", "interval": "1s"}},
        {"pause": {}},
        {"setWeight": 100},
    ]);
    rig.create_rollout(rollout("tenant", steps, json!([accuracy_metric(0.05)]), json!({}))).await;

    // The analysis passes on the cohort alone, then the rollout waits at the pause with the cohort routed.
    let paused = rig
        .wait_for("tenant", Duration::from_secs(120), "paused after the cohort analysis", |r| {
            r.status.as_ref().is_some_and(|s| s.phase == Some(Phase::Paused) && s.current_step == Some(2))
                || r.status.as_ref().is_some_and(|s| matches!(s.phase, Some(Phase::RolledBack | Phase::Failed)))
        })
        .await;
    let status = paused.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Paused), "{:?}", status.message);
    assert_eq!(status.canary_weight, Some(0), "the cohort step moves no weighted traffic");
    assert_eq!(rule_names(&rig).await, vec!["rampart-cohort-0".to_string(), String::new()]);
    let reasons = rig.event_reasons("tenant").await;
    assert!(reasons.iter().any(|r| r == "CohortRouted"), "{reasons:?}");

    // What the analysis judged: canary samples only from the cohort (a fifth of the load), and no split check.
    let analysis = status.analysis.clone().unwrap();
    assert_eq!(analysis.verdict, Some(rampart_api::v1alpha1::Verdict::Pass));
    assert!(analysis.srm.is_none(), "the split check is off while a cohort is routed: {:?}", analysis.srm);
    let accuracy = &analysis.metrics.unwrap()[0];
    let judged = canary_samples(accuracy.samples.as_deref().unwrap());
    let counts = rig.driver.counts();
    let canary = counts["model-canary"];
    assert!(judged > 0.0, "the canary's cohort requests were judged: {accuracy:?}");
    assert!(judged <= canary.cohort_sent as f64, "judged {judged} canary samples, only {canary:?} were sent");

    // Every request at the canary carried the header, and every request with the header went to the canary.
    rig.driver.reset_counts();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let counts = rig.driver.counts();
    let (canary, baseline) = (counts["model-canary"], counts["model"]);
    assert!(canary.sent > 50, "the cohort reaches the canary: {counts:?}");
    assert_eq!(canary.sent, canary.cohort_sent, "only the cohort reaches the canary: {counts:?}");
    assert_eq!(baseline.cohort_sent, 0, "no cohort request reaches the baseline: {counts:?}");
    assert!(baseline.sent > canary.sent, "everyone else stays on the baseline: {counts:?}");

    rig.annotate("tenant", "rampart.dev/promote", Some("true")).await;
    let done = rig.wait_for_phase("tenant", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(120)).await;
    assert_eq!(done.status.as_ref().unwrap().phase, Some(Phase::Succeeded), "{:?}", done.status);
    assert_eq!(rule_names(&rig).await, vec![String::new()], "the cohort's rule is gone after promotion");
    // The driver re-reads the route every poll interval: wait until the split it plays has caught up with the route
    // read above, for requests with the header too (the cohort's rule took those before).
    rig.driver.wait_for_share("model", 1.0, Duration::from_secs(10)).await.unwrap();
    let header = [("x-tenant".to_string(), "internal".to_string())];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rig.driver.split().shares_for(&header).get("model") != Some(&1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "cohort requests are back on the baseline: {:?}",
            rig.driver.split()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_cohort_canary_is_rolled_back_and_the_match_is_gone() {
    let canary = ModelServerConfig::new("v2").accuracy(0.8).latency(QUICK, 0.3);
    let mut rig = Rig::new("cohort-bad", canary, None).await;
    drive_with_cohort(&mut rig).await;
    rig.start_controller();
    let steps = json!([cohort_step(), {"analysis": {"duration": "90s", "interval": "1s"}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("tenant", steps, json!([accuracy_metric(0.01)]), json!({}))).await;

    let done = rig.wait_for_phase("tenant", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(150)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack), "{:?}", status.message);
    assert!(status.message.unwrap().contains("accuracy"));
    let verdict = status.analysis.as_ref().and_then(|a| a.verdict);
    assert_eq!(verdict, Some(rampart_api::v1alpha1::Verdict::Fail), "a failing verdict on the cohort, not a timeout");
    assert_eq!(rule_names(&rig).await, vec![String::new()], "the cohort's rule is gone after rollback");
    // Requests with the header are back on the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    rig.driver.reset_counts();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counts = rig.driver.counts();
    assert_eq!(counts["model-canary"].sent, 0, "{counts:?}");
    assert!(counts["model"].cohort_sent > 0, "{counts:?}");
    rig.stop_controller().await;
}
