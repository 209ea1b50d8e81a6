//! What a rollout author (an untrusted tenant) can do to traffic by deleting or bending their rollout, on the real
//! API server: deleting a rollout at full weight returns every request to the baseline before it goes, and a route
//! someone deleted does not block a rollback.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::DeleteParams;
use rampart_api::Phase;
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::json;
use support::{Rig, accuracy_metric, rollout};

const QUICK: Duration = Duration::from_millis(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_deleted_at_weight_100_leaves_all_traffic_on_the_baseline() {
    let mut rig = Rig::new("delete", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    rig.start_controller();
    let steps = json!([{"setWeight": 100}, {"pause": {}}]);
    rig.create_rollout(rollout("doomed", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    let paused = rig.wait_for_phase("doomed", &[Phase::Paused], Duration::from_secs(30)).await;
    assert_eq!(paused.status.unwrap().canary_weight, Some(100));
    assert_eq!(rig.route_canary_weight().await, Some(100), "all traffic on the canary before the delete");
    let finalizers = paused.metadata.finalizers.unwrap_or_default();
    assert!(finalizers.iter().any(|f| f == "rampart.dev/return-traffic"), "{finalizers:?}");

    rig.rollouts().delete("doomed", &DeleteParams::default()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rig.rollouts().get_opt("doomed").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "the rollout was not released within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rig.route_canary_weight().await, Some(0), "every request goes to the baseline again");
    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    assert!(deployments.get_opt("model-canary").await.unwrap().is_none(), "the canary is gone");
    let env =
        deployments.get("model").await.unwrap().spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    assert_eq!(env[0].value.as_deref(), Some("s3://models/fraud/v1"), "the baseline still serves what it served");
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_after_the_route_was_deleted_still_ends_rolled_back() {
    let mut rig = Rig::new("noroute", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    rig.start_controller();
    let steps = json!([{"setWeight": 50}, {"pause": {}}]);
    rig.create_rollout(rollout("stranded", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    rig.wait_for_phase("stranded", &[Phase::Paused], Duration::from_secs(30)).await;
    let routes: Api<kube::api::DynamicObject> =
        Api::namespaced_with(rig.client.clone(), &rig.namespace, &rampart_controller::traffic::httproute_resource());
    let route = routes.list(&Default::default()).await.unwrap().items.remove(0);
    routes.delete(&route.metadata.name.unwrap(), &DeleteParams::default()).await.unwrap();
    rig.annotate("stranded", "rampart.dev/abort", Some("true")).await;
    let done = rig.wait_for_phase("stranded", &[Phase::RolledBack], Duration::from_secs(30)).await;
    assert_eq!(done.status.unwrap().canary_weight, Some(0));
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_under_the_canarys_name_that_the_rollout_did_not_create_is_neither_overwritten_nor_deleted() {
    let mut rig = Rig::new("squat", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    // Another team's Deployment that happens to carry the name Rampart would give the canary.
    let mut foreign = deployments.get("model").await.unwrap();
    foreign.metadata = kube::api::ObjectMeta { name: Some("model-canary".into()), ..Default::default() };
    foreign.status = None;
    deployments.create(&Default::default(), &foreign).await.unwrap();
    let before = deployments.get("model-canary").await.unwrap();

    rig.start_controller();
    let steps = json!([{"setWeight": 50}, {"pause": {}}]);
    rig.create_rollout(rollout("squatter", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = deployments.get("model-canary").await.unwrap();
    assert_eq!(after.metadata.uid, before.metadata.uid, "not deleted and recreated");
    assert_eq!(after.spec, before.spec, "not overwritten");
    assert_ne!(rig.route_canary_weight().await, Some(50), "no traffic moved to a Deployment the rollout does not own");
    let status = rig.rollouts().get("squatter").await.unwrap().status.unwrap_or_default();
    assert_eq!(status.current_step.unwrap_or(0), 0, "the step did not complete");

    rig.annotate("squatter", "rampart.dev/abort", Some("true")).await;
    rig.wait_for_phase("squatter", &[Phase::RolledBack], Duration::from_secs(30)).await;
    assert!(deployments.get_opt("model-canary").await.unwrap().is_some(), "the abort leaves the foreign Deployment");
    rig.stop_controller().await;
}
