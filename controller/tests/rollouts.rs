//! Rollouts end to end on the real API server and a real Prometheus: promotion of a good candidate, automatic
//! rollback on an accuracy drop, a latency regression and a broken traffic split, and manual promote/abort/retry.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use rampart_api::Phase;
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::json;
use support::{Rig, accuracy_metric, latency_metric, rollout};

const QUICK: Duration = Duration::from_millis(2);

fn analysis_step() -> serde_json::Value {
    json!({"analysis": {"duration": "60s", "interval": "1s"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_candidate_walks_5_25_50_100_and_is_promoted() {
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("happy", canary, None).await;
    rig.start_controller();
    let started = Instant::now();
    let steps = json!([
        {"setWeight": 5}, {"pause": {"duration": "1s"}},
        {"setWeight": 25}, analysis_step(),
        {"setWeight": 50}, analysis_step(),
        {"setWeight": 100},
    ]);
    rig.create_rollout(rollout("good", steps, json!([accuracy_metric(0.05)]), json!({}))).await;

    let done = rig
        .wait_for_phase("good", &[Phase::Succeeded, Phase::RolledBack, Phase::Failed], Duration::from_secs(150))
        .await;
    let elapsed = started.elapsed();
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{status:?}");
    println!("happy-path rollout wall time: {:.1}s", elapsed.as_secs_f64());

    // The weights went 5 -> 25 -> 50 -> 100, in order, each once.
    let weights: Vec<String> = status
        .history
        .unwrap_or_default()
        .iter()
        .filter_map(|h| h.message.clone())
        .filter(|m| m.contains("canary weight set to"))
        .collect();
    assert_eq!(weights.len(), 4, "{weights:?}");
    for (message, weight) in weights.iter().zip(["5%", "25%", "50%", "100%"]) {
        assert!(message.ends_with(weight), "{message} should set {weight}");
    }
    // Both analysis steps passed early: well before their 60 s limit.
    let reasons = rig.event_reasons("good").await;
    assert_eq!(reasons.iter().filter(|r| *r == "AnalysisPassed").count(), 2, "{reasons:?}");
    assert!(elapsed < Duration::from_secs(110), "analysis should pass early, took {elapsed:?}");
    // The second analysis step kept its own looks, not the first step's.
    let analysis = done.status.as_ref().unwrap().analysis.clone().unwrap();
    assert_eq!(analysis.step, Some(5), "the status shows the last analysis step");
    assert_eq!(analysis.verdict, Some(rampart_api::v1alpha1::Verdict::Pass));

    // Promotion moved the baseline Deployment to the candidate and removed the canary.
    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let baseline = deployments.get("model").await.unwrap();
    let env = baseline.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    assert_eq!(env[0].value.as_deref(), Some("s3://models/fraud/v2"));
    assert!(deployments.get_opt("model-canary").await.unwrap().is_none(), "the canary Deployment is deleted");
    assert_eq!(rig.route_canary_weight().await, Some(0), "traffic is back on the (promoted) baseline");
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_five_accuracy_points_worse_is_rolled_back_and_the_route_returns_to_the_baseline() {
    let canary = ModelServerConfig::new("v2").accuracy(0.85).latency(QUICK, 0.3);
    let mut rig = Rig::new("accuracy", canary, None).await;
    rig.start_controller();
    let steps = json!([{"setWeight": 25}, {"analysis": {"duration": "90s", "interval": "1s"}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("worse", steps, json!([accuracy_metric(0.01)]), json!({}))).await;

    let done = rig.wait_for_phase("worse", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(120)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack), "{:?}", status.message);
    assert_eq!(status.canary_weight, Some(0));
    assert_eq!(rig.route_canary_weight().await, Some(0));
    let message = status.message.unwrap();
    assert!(message.contains("accuracy"), "the message names the metric: {message}");
    let condition = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(condition.status, "False");
    let condition_message = condition.message.unwrap();
    assert!(
        condition_message.contains("accuracy: canary 0.")
            && condition_message.contains("vs baseline 0.")
            && condition_message.contains("confidence sequence"),
        "numbers: {condition_message}"
    );
    let metrics = status.analysis.unwrap().metrics.unwrap();
    assert_eq!(metrics[0].verdict, rampart_api::v1alpha1::Verdict::Fail);
    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    assert!(deployments.get_opt("model-canary").await.unwrap().is_none(), "the canary is removed after rollback");
    let env =
        deployments.get("model").await.unwrap().spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    assert_eq!(env[0].value.as_deref(), Some("s3://models/fraud/v1"), "the baseline is untouched");
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_with_p95_latency_50_percent_higher_is_rolled_back() {
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(Duration::from_millis(3), 0.3);
    let mut rig = Rig::new("latency", canary, None).await;
    rig.baseline.set_latency(Duration::from_millis(2), 0.3);
    rig.start_controller();
    let steps = json!([{"setWeight": 25}, {"analysis": {"duration": "90s", "interval": "1s"}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("slow", steps, json!([latency_metric(0.02)]), json!({}))).await;
    let done = rig.wait_for_phase("slow", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(120)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack), "{:?}", status.message);
    assert!(status.message.unwrap().contains("latency"));
    assert_eq!(rig.route_canary_weight().await, Some(0));
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_receives_no_traffic_fails_the_step_with_a_sample_ratio_mismatch() {
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("srm", canary, None).await;
    rig.driver.drop_backend("model-canary");
    rig.start_controller();
    let steps = json!([{"setWeight": 25}, {"analysis": {"duration": "60s", "interval": "1s"}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("misrouted", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    let done = rig.wait_for_phase("misrouted", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(90)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack));
    let message = status.message.unwrap();
    assert!(message.contains("traffic"), "the message says traffic is not reaching the canary: {message}");
    assert_eq!(status.analysis.unwrap().srm.unwrap().verdict, rampart_api::v1alpha1::Verdict::Fail);
    assert_eq!(rig.driver.sent_to("model-canary"), 0);
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_promote_abort_and_retry_do_what_the_docs_say() {
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("manual", canary, None).await;
    rig.start_controller();
    let steps = json!([{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]);

    // abort: from an indefinite pause straight to RolledBack, weight 0.
    rig.create_rollout(rollout("manual", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    rig.wait_for_phase("manual", &[Phase::Paused], Duration::from_secs(30)).await;
    assert_eq!(rig.route_canary_weight().await, Some(10));
    rig.annotate("manual", rampart_api::ANNOTATION_ABORT, Some("true")).await;
    let aborted = rig.wait_for_phase("manual", &[Phase::RolledBack], Duration::from_secs(30)).await;
    assert!(aborted.status.unwrap().message.unwrap().contains("abort"));
    assert_eq!(rig.route_canary_weight().await, Some(0));

    // retry: clears abort (as `rampart retry` does) and starts again from step 0.
    rig.annotate("manual", rampart_api::ANNOTATION_ABORT, None).await;
    rig.annotate("manual", rampart_api::ANNOTATION_RETRY, Some("1")).await;
    let paused = rig
        .wait_for("manual", Duration::from_secs(30), "paused again at step 1", |r| {
            let s = r.status.as_ref().unwrap();
            s.phase == Some(Phase::Paused) && s.current_step == Some(1) && s.handled_retry.as_deref() == Some("1")
        })
        .await;
    assert_eq!(paused.status.unwrap().canary_weight, Some(10));
    assert_eq!(rig.route_canary_weight().await, Some(10));

    // promote: skips the remaining steps (50%, pause) and promotes.
    rig.annotate("manual", rampart_api::ANNOTATION_PROMOTE, Some("true")).await;
    let promoted = rig.wait_for_phase("manual", &[Phase::Succeeded], Duration::from_secs(30)).await;
    let history = promoted.status.unwrap().history.unwrap();
    assert!(!history.iter().any(|h| h.message.as_deref().is_some_and(|m| m.ends_with("50%"))), "50% was skipped");
    assert_eq!(rig.route_canary_weight().await, Some(0));
    let reasons = rig.event_reasons("manual").await;
    for expected in ["Started", "WeightSet", "Paused", "RollingBack", "RolledBack", "Retrying", "Promoting", "Promoted"]
    {
        assert!(reasons.iter().any(|r| r == expected), "missing event {expected}: {reasons:?}");
    }
    rig.stop_controller().await;
}
