//! Shadow steps end to end on the real API server (the real Gateway API HTTPRoute CRD validating the RequestMirror
//! filter Rampart writes), a real Prometheus and the pairing component `rampart-shadow`: the load driver mirrors
//! requests to the candidate as a gateway would, both model servers log requests and responses as KServe-logger
//! CloudEvents, `rampart-shadow` pairs them, and the controller judges agreement from its counters. Users never get an
//! answer from the candidate, whatever the verdict.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use rampart_api::Phase;
use rampart_api::v1alpha1::Verdict;
use rampart_shadow::{ShadowConfig, ShadowServer};
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::{Value, json};
use support::{Rig, accuracy_metric, rollout, routes};

const QUICK: Duration = Duration::from_millis(2);

/// The pairing component, scraped by the shared Prometheus.
async fn pairing() -> ShadowServer {
    let server = ShadowServer::spawn(ShadowConfig::default()).await.unwrap();
    let prometheus = rampart_testenv::shared_prometheus().unwrap();
    prometheus.add_target(&server.addr().to_string(), &[]).unwrap();
    prometheus.wait_for_target(&server.addr().to_string(), Duration::from_secs(30)).await.unwrap();
    server
}

/// Stops the pairing component and its scraping.
async fn stop_pairing(server: ShadowServer) {
    let _ = rampart_testenv::shared_prometheus().unwrap().remove_target(&server.addr().to_string());
    server.shutdown().await;
}

/// A rig whose two model servers log to `shadow` (baseline as `baseline`, candidate as `canary`).
async fn shadow_rig(prefix: &str, shadow: &ShadowServer, candidate: ModelServerConfig) -> Rig {
    let baseline =
        ModelServerConfig::new("v1").accuracy(0.9).latency(QUICK, 0.3).logger(shadow.url(), "baseline", "fraud");
    Rig::with_servers(prefix, baseline, candidate.logger(shadow.url(), "canary", "fraud"), None).await
}

fn shadow_step(duration: &str) -> Value {
    json!({"shadow": {"duration": duration, "interval": "1s", "tolerance": 0.01}})
}

/// The route's rules' filters (an empty list for a rule without any).
async fn filters(rig: &Rig) -> Vec<Value> {
    let route = routes(&rig.client, &rig.namespace).get("model").await.unwrap();
    route.data["spec"]["rules"].as_array().unwrap().iter().map(|rule| rule["filters"].clone()).collect()
}

fn has_mirror(filters: &[Value]) -> bool {
    filters.iter().any(|f| f.as_array().is_some_and(|list| list.iter().any(|f| f["type"] == "RequestMirror")))
}

/// Waits until the route mirrors to the candidate (the step started), checking the mirror is really written.
async fn wait_for_mirror(rig: &Rig) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !has_mirror(&filters(rig).await) {
        assert!(tokio::time::Instant::now() < deadline, "the shadow step never wrote a RequestMirror filter");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_candidate_agrees_and_passes_early_and_users_never_get_its_answers() {
    let shadow = pairing().await;
    let candidate = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = shadow_rig("shadow-ok", &shadow, candidate).await;
    rig.start_controller();
    let steps = json!([shadow_step("120s"), {"pause": {}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("tenant", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    wait_for_mirror(&rig).await;

    let paused = rig
        .wait_for("tenant", Duration::from_secs(150), "paused after the shadow step", |r| {
            r.status.as_ref().is_some_and(|s| s.phase == Some(Phase::Paused) && s.current_step == Some(1))
                || r.status.as_ref().is_some_and(|s| matches!(s.phase, Some(Phase::RolledBack | Phase::Failed)))
        })
        .await;
    let status = paused.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Paused), "{:?}", status.message);
    assert_eq!(status.canary_weight, Some(0), "a shadow step moves no live traffic");
    let analysis = status.analysis.clone().unwrap();
    assert_eq!(analysis.verdict, Some(Verdict::Pass), "{analysis:?}");
    let looks = analysis.looks.unwrap();
    let agreement = &analysis.metrics.clone().unwrap()[0];
    assert_eq!(agreement.name, "agreement");
    eprintln!("identical candidate: {looks} looks, {agreement:?}");
    // Early: looks are 1 s apart, so passing in under 100 looks is well before the 120 s the step may take.
    assert!(looks < 100, "passed after {looks} looks of 1 s: {agreement:?}");
    let reasons = rig.event_reasons("tenant").await;
    assert!(reasons.iter().any(|r| r == "ShadowStarted"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "ShadowPassed"), "{reasons:?}");

    // The candidate saw mirrored copies, answered none of the users, and the mirror is gone after the step.
    let counts = rig.driver.counts();
    assert!(counts["model-canary"].mirrored > 100, "the candidate received mirrored requests: {counts:?}");
    assert_eq!(counts["model-canary"].sent, 0, "no live request went to the candidate: {counts:?}");
    let answered = rig.driver.answered_by();
    assert!(answered.get("v1").copied().unwrap_or(0) > 100, "{answered:?}");
    assert_eq!(answered.get("v2"), None, "users never received a shadow response: {answered:?}");
    assert!(!has_mirror(&filters(&rig).await), "the mirror is removed when the step passes");
    rig.stop_controller().await;
    stop_pairing(shadow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_disagreeing_on_three_percent_fails_with_a_one_percent_tolerance_before_any_live_traffic() {
    let shadow = pairing().await;
    let candidate = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3).disagree(0.03);
    let mut rig = shadow_rig("shadow-bad", &shadow, candidate).await;
    rig.start_controller();
    let steps = json!([shadow_step("240s"), {"setWeight": 50}, {"setWeight": 100}]);
    rig.create_rollout(rollout("tenant", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    wait_for_mirror(&rig).await;

    let done = rig.wait_for_phase("tenant", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(270)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack), "{:?}", status.message);
    let message = status.message.clone().unwrap();
    eprintln!("disagreeing candidate: {message}");
    assert!(message.contains("shadow comparison failed") && message.contains("agreement"), "{message}");
    let analysis = status.analysis.clone().unwrap();
    assert_eq!(analysis.verdict, Some(Verdict::Fail), "a failing verdict, not a timeout: {analysis:?}");
    let agreement = &analysis.metrics.unwrap()[0];
    // The estimate is the candidate's agreement minus the baseline's (1): about -0.03, with its interval, and the
    // message says both.
    let estimate: f64 = agreement.effect.as_deref().unwrap().parse().unwrap();
    assert!((-0.06..-0.01).contains(&estimate), "agreement difference {estimate}: {agreement:?}");
    let interval = agreement.interval.as_deref().unwrap();
    let high: f64 = interval.trim_matches(|c| c == '[' || c == ']').split(", ").nth(1).unwrap().parse().unwrap();
    assert!(high < -0.01 + 1e-9, "the whole interval is below the tolerance: {agreement:?}");
    assert!(message.contains(agreement.reason.as_deref().unwrap()), "{message}");

    // No live traffic ever moved to the candidate, and the mirror is gone.
    assert_eq!(rig.driver.answered_by().get("v2"), None, "{:?}", rig.driver.answered_by());
    assert_eq!(rig.driver.counts()["model-canary"].sent, 0);
    assert!(!has_mirror(&filters(&rig).await), "the mirror is removed on rollback");
    rig.stop_controller().await;
    stop_pairing(shadow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_dropping_mirrored_requests_fails_the_pairing_check_not_the_agreement() {
    let shadow = pairing().await;
    let candidate = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = shadow_rig("shadow-drop", &shadow, candidate).await;
    let mut behaviour = rig.canary.behaviour();
    behaviour.drop = 0.2;
    rig.canary.set_behaviour(behaviour);
    rig.start_controller();
    let steps = json!([shadow_step("240s"), {"setWeight": 100}]);
    rig.create_rollout(rollout("tenant", steps, json!([accuracy_metric(0.05)]), json!({}))).await;

    let done = rig.wait_for_phase("tenant", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(270)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack), "{:?}", status.message);
    let message = status.message.clone().unwrap();
    eprintln!("dropping candidate: {message}");
    assert!(message.contains("pairing check failed"), "{message}");
    let analysis = status.analysis.clone().unwrap();
    // The pairs that did form all agree: the dropped requests were not counted as agreement or disagreement.
    let agreement = &analysis.metrics.unwrap()[0];
    assert_ne!(agreement.verdict, Verdict::Fail, "{agreement:?}");
    let srm = analysis.srm.unwrap();
    assert_eq!(srm.verdict, Verdict::Fail, "{srm:?}");
    assert_eq!(rig.driver.answered_by().get("v2"), None);
    rig.stop_controller().await;
    stop_pairing(shadow).await;
}
