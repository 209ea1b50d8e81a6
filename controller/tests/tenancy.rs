//! What a rollout author (an untrusted tenant) can do by deleting, bending or forging their rollout, on the real API
//! server, Postgres and Prometheus: deleting a rollout at full weight returns every request to the baseline before it
//! goes, a route someone deleted does not block a rollback, another team's model cannot be taken, records forged into
//! the outbox are refused, a status forged past the gates moves no traffic, a look-alike or swapped training image
//! gets no Job, a retried rollout is recorded as a new
//! attempt that can promote (through a Postgres restart), and versions that are not label values roll out.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use rampart_api::Phase;
use rampart_checks::signing::{HashingOptions, PrivateKey, TrustedKey, hash_model, sign_manifest};
use rampart_registry::{NewRollout, NewVersion, Outcome, Registry, VersionStatus};
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::{Value, json};
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
        assert!(
            std::time::Instant::now() < deadline,
            "the rollout was not released within 30 s: {:?}",
            rig.rollouts().get_opt("doomed").await.unwrap().map(|r| (r.metadata.finalizers, r.status))
        );
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
    assert_eq!(condition(&done, "TrafficTargetFound"), Some(("False".into(), "Missing".into())), "and it says why");
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

/// Signs a small model directory with `seed`'s key as model `fraud`; returns (bundle JSON, digest, the key as the
/// controller trusts it). The directory is the artifact URI the rig's kubelet fetches and verifies.
fn signed_model(dir: &Path, seed: u8) -> (String, String, TrustedKey) {
    let key = PrivateKey::from_scalar_bytes(&[seed; 32]).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("model.onnx"), b"bytes to sign").unwrap();
    let options = HashingOptions::default();
    let mut manifest = hash_model(dir, &options).unwrap();
    manifest.model_name = "fraud".into();
    let signed = sign_manifest(&manifest, &key, &options).unwrap();
    (signed.bundle_json, signed.model_digest, TrustedKey::from_private(&key, "trusted.pem"))
}

fn condition(rollout: &rampart_api::ModelRollout, type_: &str) -> Option<(String, String)> {
    let conditions = rollout.status.as_ref()?.conditions.as_ref()?;
    let found = conditions.iter().find(|c| c.type_ == type_)?;
    Some((found.status.clone(), found.reason.clone().unwrap_or_default()))
}

async fn jobs(rig: &Rig) -> usize {
    let api: Api<Job> = Api::namespaced(rig.client.clone(), &rig.namespace);
    api.list(&Default::default()).await.unwrap().items.len()
}

// ----- finding 2: a model belongs to the namespace that registered it first -------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_of_a_model_another_namespace_owns_is_refused_with_a_clear_message() {
    let database_url = rampart_testenv::shared_postgres().unwrap().new_database().unwrap();
    let registry = Registry::connect(&database_url).await.unwrap();
    // Team B registered `fraud` first (its controller-recorded v1).
    let owned = NewVersion {
        model: "fraud".into(),
        version: "v1".into(),
        uri: "s3://team-b/fraud/v1".into(),
        digest: format!("sha256:{}", "b".repeat(64)),
        ..Default::default()
    };
    registry.register_version_for("team-b", &owned).await.unwrap();

    let mut rig = Rig::new("owner", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    rig.database_url = Some(database_url);
    rig.start_controller();
    let steps = json!([{"setWeight": 50}, {"pause": {}}]);
    rig.create_rollout(rollout("taker", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    let done =
        rig.wait_for_phase("taker", &[Phase::Failed, Phase::RolledBack, Phase::Paused], Duration::from_secs(30)).await;
    let status = done.status.clone().unwrap();
    assert_ne!(status.phase, Some(Phase::Paused), "the rollout went on: {:?}", status.message);
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains("registry refused") && message.contains("belongs to namespace `team-b`"),
        "the status says why: {message}"
    );
    assert_eq!(condition(&done, "Recorded"), Some(("False".into(), "RegistryRefused".into())));
    assert_eq!(status.canary_weight.unwrap_or(0), 0);
    assert_ne!(rig.route_canary_weight().await, Some(50), "no traffic moved");
    // Nothing of the taker's landed in team B's model.
    let versions: Vec<String> = registry.versions("fraud").await.unwrap().into_iter().map(|v| v.version).collect();
    assert_eq!(versions, ["v1"]);
    assert!(registry.rollouts("fraud").await.unwrap().is_empty());
    assert_eq!(registry.model_owner("fraud").await.unwrap().as_deref(), Some("team-b"));
    let reasons = rig.event_reasons("taker").await;
    assert!(reasons.iter().any(|r| r == "RegistryRefused" || r == "RollingBack"), "{reasons:?}");
    rig.stop_controller().await;
}

// ----- finding 2 (keys): a key trusted for one team cannot vouch for another's rollout -----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_trusted_only_for_another_team_cannot_vouch_for_this_teams_model() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, digest, trusted) = signed_model(dir.path(), 23);
    let mut rig = Rig::new("keyscope", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    // The platform trusts team B's release key, for team B's namespace only.
    let scope = rampart_controller::verify::KeyScope { namespaces: vec!["team-b".into()], models: vec![] };
    rig.key_scopes = [(trusted.label.clone(), scope)].into();
    rig.trusted_keys = vec![trusted];
    rig.allow_insecure = false;
    rig.start_controller();
    // This team signed nothing; it copies a bundle team B's key signed and rolls it out here.
    let mut object = rollout("borrowed", json!([{"setWeight": 50}]), json!([accuracy_metric(0.05)]), json!({}));
    object["spec"]["candidate"]["artifact"]["uri"] = json!(dir.path().display().to_string());
    object["spec"]["candidate"]["artifact"]["digest"] = json!(digest);
    object["spec"]["candidate"]["artifact"]["signature"] = json!({"bundle": bundle});
    object["spec"].as_object_mut().unwrap().remove("checks");
    rig.create_rollout(object).await;
    let done = rig
        .wait_for_phase("borrowed", &[Phase::Failed, Phase::Checking, Phase::Progressing], Duration::from_secs(30))
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed), "{:?}", status.message);
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("trusts that key only for namespaces: team-b") && message.contains("no traffic"),
        "{message}"
    );
    assert_eq!(jobs(&rig).await, 0, "not even the artifact Job ran");
    assert_eq!(rig.route_canary_weight().await, None, "nothing routed");
    rig.stop_controller().await;
}

// ----- finding 1 (outbox): records forged into status are refused --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_forged_into_the_outbox_are_refused_and_nothing_is_recorded_for_them() {
    let database_url = rampart_testenv::shared_postgres().unwrap().new_database().unwrap();
    let registry = Registry::connect(&database_url).await.unwrap();
    // Another team's rollout, running, and its verified-nothing model.
    let victim = NewVersion {
        model: "payments".into(),
        version: "v7".into(),
        uri: "s3://team-b/payments/v7".into(),
        digest: format!("sha256:{}", "c".repeat(64)),
        ..Default::default()
    };
    registry.register_version_for("team-b", &victim).await.unwrap();
    let victim_rollout = NewRollout {
        model: "payments".into(),
        uid: "uid-of-team-b".into(),
        namespace: "team-b".into(),
        name: "payments-v7".into(),
        candidate_version: "v7".into(),
        baseline_version: None,
    };
    registry.start_rollout(&victim_rollout).await.unwrap();

    let mut rig = Rig::new("forge", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    rig.database_url = Some(database_url);
    rig.start_controller();
    let steps = json!([{"setWeight": 50}, {"pause": {}}]);
    rig.create_rollout(rollout("forger", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    let paused = rig.wait_for_phase("forger", &[Phase::Paused], Duration::from_secs(30)).await;
    rig.wait_for("forger", Duration::from_secs(20), "its own records written", |r| {
        r.status.as_ref().is_some_and(|s| s.outbox.is_none())
    })
    .await;
    let uid = paused.metadata.uid.clone().unwrap();

    // Someone with modelrollouts/status writes records: finish team B's rollout, mark their own unsigned candidate
    // verified by a key nobody trusts, register a version of team B's model, and start a rollout in team B's name.
    let forged = [
        json!({"record": "finish", "uid": "uid-of-team-b", "aborted": false, "reason": "forged"}),
        json!({"record": "markVerified", "model": "fraud", "version": "v2", "verification": {
            "digest": format!("sha256:{}", "0".repeat(64)), "signer_key_id": "made-up", "signature_bundle": "{}"}}),
        json!({"record": "registerVersion", "version": {"model": "payments", "version": "v8",
            "uri": "s3://evil/payments", "digest": format!("sha256:{}", "d".repeat(64))}}),
        json!({"record": "startRollout", "rollout": {"model": "payments", "uid": uid, "namespace": "team-b",
            "name": "forger", "candidate_version": "v7", "baseline_version": null}}),
        json!({"record": "promotedUnverified", "model": "fraud", "uid": uid, "version": "v2"}),
    ];
    let outbox: Vec<String> = forged.iter().map(Value::to_string).collect();
    let patch = json!({"status": {"outbox": outbox}});
    rig.rollouts().patch_status("forger", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    rig.wait_for("forger", Duration::from_secs(20), "the forged outbox drained", |r| {
        r.status.as_ref().is_some_and(|s| s.outbox.is_none())
    })
    .await;

    let victim = registry.rollout("uid-of-team-b").await.unwrap();
    assert_eq!(victim.outcome, None, "team B's rollout was not finished by a forged record");
    assert_eq!(registry.version("fraud", "v2").await.unwrap().status, VersionStatus::Unverified);
    let payments: Vec<String> = registry.versions("payments").await.unwrap().into_iter().map(|v| v.version).collect();
    assert_eq!(payments, ["v7"], "no version was added to team B's model");
    assert_eq!(registry.rollouts("payments").await.unwrap().len(), 1, "no rollout started in team B's name");
    let kinds: Vec<String> = registry
        .model_history("fraud", 100, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str().to_string())
        .collect();
    assert!(!kinds.iter().any(|k| k == "promoted_unverified" || k == "version_verified"), "{kinds:?}");
    assert!(registry.verify_chain("fraud").await.unwrap().is_intact());
    // The rollout itself carries on unharmed (still paused at its weight).
    let after = rig.rollouts().get("forger").await.unwrap().status.unwrap();
    assert_eq!((after.phase, after.canary_weight), (Some(Phase::Paused), Some(50)));
    rig.stop_controller().await;
}

// ----- finding 1: a status someone else wrote decides nothing ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_forged_past_the_gates_moves_no_traffic_to_the_candidate_and_promotes_nothing() {
    let mut rig = Rig::new("forged-status", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    rig.start_controller();
    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    for (name, phase) in [("to-promoting", "Promoting"), ("to-succeeded", "Succeeded")] {
        let steps = json!([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]);
        rig.create_rollout(rollout(name, steps, json!([accuracy_metric(0.05)]), json!({}))).await;
        rig.wait_for_phase(name, &[Phase::Paused], Duration::from_secs(60)).await;
        assert_eq!(rig.route_canary_weight().await, Some(10));
        // Someone with modelrollouts/status writes the rollout past its gates: promoting (or done) at full weight,
        // past the last step, with a passed contract check.
        let patch = json!({"status": {"phase": phase, "currentStep": 99, "canaryWeight": 100,
            "checks": {"contract": {"result": "Passed", "message": "trust me"}}}});
        rig.rollouts().patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let done = rig
            .wait_for(name, Duration::from_secs(30), "the forged status answered", |r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.message.as_deref())
                    .is_some_and(|m| m.contains("someone other than Rampart"))
                    && r.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_terminal())
            })
            .await;
        let status = done.status.unwrap();
        let expected = if phase == "Promoting" { Phase::RolledBack } else { Phase::Succeeded };
        assert_eq!(status.phase, Some(expected), "{name}: {:?}", status.message);
        assert_eq!(status.checks, None, "{name}: the forged check result is gone");
        assert!(status.seal.is_some(), "{name}: Rampart sealed what it wrote");
        // No traffic on the candidate, no canary, and the baseline still serves v1.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while deployments.get_opt("model-canary").await.unwrap().is_some() {
            assert!(std::time::Instant::now() < deadline, "{name}: the canary should go");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(rig.route_canary_weight().await.unwrap_or(0), 0, "{name}");
        let base = serde_json::to_string(&deployments.get("model").await.unwrap().spec).unwrap();
        assert!(base.contains("s3://models/fraud/v1") && !base.contains("fraud/v2"), "{name}: {base}");
        assert!(rig.event_reasons(name).await.iter().any(|r| r == "StatusForged"), "{name}");
    }
    rig.stop_controller().await;
}

// ----- finding 7: smoke-training images by parsed reference, re-checked for each Job ----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_image_on_a_look_alike_registry_is_refused_before_anything_is_created() {
    let mut rig = Rig::new("lookalike", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    rig.smoke_allow = vec!["registry.example.com".into(), "registry.example.com/ml".into()];
    rig.start_controller();
    for (name, image) in [
        ("host", "registry.example.com.evil.io/ml/trainer:v1"),
        ("path", "docker.io/registry.example.com/ml/trainer:v1"),
    ] {
        let mut object = rollout(name, json!([{"setWeight": 50}]), json!([accuracy_metric(0.05)]), json!({}));
        object["spec"]["checks"] = json!({"insecureSkipSignature": true, "smokeTraining": {"image": image}});
        rig.create_rollout(object).await;
        let done = rig
            .wait_for_phase(name, &[Phase::Failed, Phase::Checking, Phase::Progressing], Duration::from_secs(30))
            .await;
        let status = done.status.unwrap();
        assert_eq!(status.phase, Some(Phase::Failed), "{name}: {:?}", status.message);
        assert!(status.message.unwrap_or_default().contains("not allowed"), "{name}");
    }
    assert_eq!(jobs(&rig).await, 0, "no Job was created");
    assert_eq!(rig.route_canary_weight().await, None, "nothing routed");
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_image_swapped_after_the_start_gate_is_refused_when_the_job_is_built() {
    let mut rig = Rig::new("swapped", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    rig.smoke_allow = vec!["registry.example.com/ml".into()];
    let mut object = rollout("swapper", json!([{"setWeight": 50}]), json!([accuracy_metric(0.05)]), json!({}));
    object["spec"]["checks"] =
        json!({"insecureSkipSignature": true, "smokeTraining": {"image": "docker.io/someone/miner:latest"}});
    rig.create_rollout(object).await;
    // A status written past the start gate: it carries no seal of Rampart's, so the gates run again from the start
    // and the image is refused there. (An image edited after a real start gate is refused when the Job is built:
    // `jobs::tests::a_smoke_job_is_built_only_for_an_image_on_the_allow_list_whatever_the_start_gate_saw`.)
    let patch = json!({"status": {"phase": "Checking", "currentStep": 0, "canaryWeight": 0,
        "baselineVersion": "v1", "stableUri": "s3://models/fraud/v1"}});
    rig.rollouts().patch_status("swapper", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    rig.start_controller();
    let done = rig.wait_for_phase("swapper", &[Phase::Failed, Phase::Progressing], Duration::from_secs(30)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed), "{:?}", status.message);
    let message = status.message.unwrap_or_default();
    assert!(message.contains("docker.io/someone/miner:latest") && message.contains("not allowed"), "{message}");
    assert_eq!(jobs(&rig).await, 0, "the Job was never created");
    assert_eq!(rig.route_canary_weight().await, None);
    rig.stop_controller().await;
}

// ----- finding 5: one registry attempt per retry; a Postgres restart mid-promotion loses nothing ----------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_rollback_promotes_through_a_postgres_restart_and_the_registry_shows_both_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, digest, trusted) = signed_model(dir.path(), 21);
    let mut postgres = rampart_testenv::Postgres::start().unwrap();
    let database_url = postgres.new_database().unwrap();
    let mut rig = Rig::new("retry", ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3), None).await;
    rig.trusted_keys = vec![trusted];
    rig.allow_insecure = false;
    rig.database_url = Some(database_url.clone());
    rig.start_controller();
    let mut object =
        rollout("again", json!([{"setWeight": 50}, {"pause": {}}]), json!([accuracy_metric(0.05)]), json!({}));
    object["spec"]["candidate"]["artifact"]["uri"] = json!(dir.path().display().to_string());
    object["spec"]["candidate"]["artifact"]["digest"] = json!(digest);
    object["spec"]["candidate"]["artifact"]["signature"] = json!({"bundle": bundle});
    object["spec"].as_object_mut().unwrap().remove("checks");
    rig.create_rollout(object).await;

    // Attempt 1: rolled back (aborted at weight 50).
    rig.wait_for_phase("again", &[Phase::Paused], Duration::from_secs(30)).await;
    rig.annotate("again", "rampart.dev/abort", Some("true")).await;
    let rolled_back = rig.wait_for_phase("again", &[Phase::RolledBack], Duration::from_secs(30)).await;
    let uid = rolled_back.metadata.uid.clone().unwrap();
    rig.wait_for("again", Duration::from_secs(20), "the first attempt recorded", |r| {
        r.status.as_ref().is_some_and(|s| s.outbox.is_none())
    })
    .await;

    // rampart retry (which clears abort), then promote the second attempt while Postgres restarts.
    rig.annotate("again", "rampart.dev/abort", None).await;
    rig.annotate("again", "rampart.dev/retry", Some("2026-12-01T09:00:00Z")).await;
    rig.wait_for("again", Duration::from_secs(30), "the second attempt paused", |r| {
        r.status.as_ref().is_some_and(|s| s.phase == Some(Phase::Paused) && s.handled_retry.is_some())
    })
    .await;
    postgres.stop();
    rig.annotate("again", "rampart.dev/promote", Some("true")).await;
    let waiting = rig.wait_for_phase("again", &[Phase::Promoting, Phase::Succeeded], Duration::from_secs(30)).await;
    assert_eq!(waiting.status.unwrap().phase, Some(Phase::Promoting), "promotion waits for the registry");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rig.rollouts().get("again").await.unwrap().status.unwrap().phase, Some(Phase::Promoting));
    postgres.restart().unwrap();
    let done = rig
        .wait_for_phase("again", &[Phase::Succeeded, Phase::Failed, Phase::RolledBack], Duration::from_secs(60))
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
    assert!(status.outbox.is_none(), "every record written: {:?}", status.outbox);

    let registry = Registry::connect(&database_url).await.unwrap();
    let attempts = registry.rollout_attempts(&uid).await.unwrap();
    let summary: Vec<(i32, Option<Outcome>)> = attempts.iter().map(|a| (a.attempt, a.outcome)).collect();
    assert_eq!(summary, [(2, Some(Outcome::Promoted)), (1, Some(Outcome::Aborted))]);
    assert_eq!(registry.production("fraud").await.unwrap().unwrap().version, "v2");
    let kinds: Vec<String> =
        registry.rollout_events(&uid).await.unwrap().into_iter().map(|e| e.kind.as_str().to_string()).collect();
    let count = |kind: &str| kinds.iter().filter(|k| *k == kind).count();
    assert_eq!((count("rollout_started"), count("step_applied")), (2, 2), "each attempt's start and step: {kinds:?}");
    assert_eq!(count("promoted"), 1, "{kinds:?}");
    assert!(registry.verify_chain("fraud").await.unwrap().is_intact());
    rig.stop_controller().await;
}

// ----- finding 9: versions admission allows are not all label values --------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_with_build_metadata_rolls_out_and_is_promoted_with_label_safe_values() {
    let version = "1.0.0+build.5";
    let canary = ModelServerConfig::new(version).accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("plus", canary, None).await;
    rig.start_controller();
    let steps = json!([{"setWeight": 50}, {"analysis": {"duration": "60s", "interval": "1s"}}, {"setWeight": 100}]);
    let mut object = rollout("plus", steps, json!([accuracy_metric(0.05)]), json!({}));
    object["spec"]["candidate"]["version"] = json!(version);
    rig.create_rollout(object).await;

    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let canary = loop {
        if let Some(canary) = deployments.get_opt("model-canary").await.unwrap() {
            break canary;
        }
        assert!(std::time::Instant::now() < deadline, "no canary Deployment within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let label = canary.metadata.labels.clone().unwrap_or_default()["rampart.dev/model-version"].clone();
    assert!(label.starts_with("1.0.0_build.5-h") && label.len() <= 63, "{label}");
    assert_eq!(canary.metadata.annotations.clone().unwrap_or_default()["rampart.dev/model-version"], version);

    let done = rig
        .wait_for_phase(
            "plus",
            &[Phase::Succeeded, Phase::RolledBack, Phase::Failed, Phase::Paused],
            Duration::from_secs(120),
        )
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
    let analysis = status.analysis.unwrap();
    assert_eq!(
        analysis.verdict,
        Some(rampart_api::v1alpha1::Verdict::Pass),
        "the {{version}} queries found the canary"
    );
    let baseline = deployments.get("model").await.unwrap();
    assert_eq!(baseline.metadata.labels.unwrap_or_default()["rampart.dev/model-version"], label);
    assert_eq!(baseline.metadata.annotations.unwrap_or_default()["rampart.dev/model-version"], version);
    rig.stop_controller().await;
}

// ----- finding 8: one rollout holds a target at a time; the targets are frozen at the start -----------------------

fn route_claim(route: &kube::api::DynamicObject) -> Option<String> {
    route.metadata.annotations.as_ref()?.get("rampart.dev/claimed-by").cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_rollout_on_a_claimed_route_waits_names_the_holder_and_starts_when_the_holder_ends() {
    let mut rig = Rig::new("claims", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    rig.start_controller();
    let first_steps = json!([{"setWeight": 30}, {"pause": {}}]);
    rig.create_rollout(rollout("first", first_steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    rig.wait_for_phase("first", &[Phase::Paused], Duration::from_secs(30)).await;
    assert_eq!(rig.route_canary_weight().await, Some(30));

    // The attack: a second rollout on the same Deployment and HTTPRoute, asking for most of the traffic.
    let second_steps = json!([{"setWeight": 80}, {"pause": {}}]);
    rig.create_rollout(rollout("second", second_steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    let waiting = rig
        .wait_for("second", Duration::from_secs(30), "TargetClaimed=True", |r| {
            condition(r, "TargetClaimed").is_some_and(|(status, _)| status == "True")
        })
        .await;
    let message = waiting.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default();
    assert!(message.contains(&format!("{}/first", rig.namespace)), "the holder is named: {message}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = rig.rollouts().get("second").await.unwrap().status.unwrap_or_default();
    assert_eq!(second.phase, Some(Phase::Pending), "it waits before any gate");
    assert_eq!(rig.route_canary_weight().await, Some(30), "the holder's canary weight is untouched");
    let route = support::routes(&rig.client, &rig.namespace).get("model").await.unwrap();
    assert!(route_claim(&route).unwrap_or_default().contains("/first/"), "{:?}", route_claim(&route));
    assert!(rig.event_reasons("second").await.contains(&"TargetClaimed".to_string()));

    // A third rollout that waits and is deleted (or aborted) while waiting leaves the holder's traffic alone.
    rig.create_rollout(rollout("third", json!([{"setWeight": 5}]), json!([accuracy_metric(0.05)]), json!({}))).await;
    rig.wait_for("third", Duration::from_secs(30), "TargetClaimed=True", |r| {
        condition(r, "TargetClaimed").is_some_and(|(status, _)| status == "True")
    })
    .await;
    rig.rollouts().delete("third", &DeleteParams::default()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rig.rollouts().get_opt("third").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "the waiting rollout was not released within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rig.route_canary_weight().await, Some(30), "deleting a waiting rollout moved no traffic");
    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    assert!(deployments.get_opt("model-canary").await.unwrap().is_some(), "the holder's canary is still there");

    // The holder ends: its claim goes and the waiting rollout takes the targets.
    rig.annotate("first", "rampart.dev/abort", Some("true")).await;
    rig.wait_for_phase("first", &[Phase::RolledBack], Duration::from_secs(30)).await;
    let started = rig.wait_for_phase("second", &[Phase::Paused], Duration::from_secs(60)).await;
    assert_eq!(started.status.as_ref().unwrap().canary_weight, Some(80));
    assert_eq!(condition(&started, "TargetClaimed").map(|c| c.0), Some("False".into()));
    assert_eq!(rig.route_canary_weight().await, Some(80));
    let route = support::routes(&rig.client, &rig.namespace).get("model").await.unwrap();
    assert!(route_claim(&route).unwrap_or_default().contains("/second/"), "{:?}", route_claim(&route));

    rig.annotate("second", "rampart.dev/abort", Some("true")).await;
    rig.wait_for_phase("second", &[Phase::RolledBack], Duration::from_secs(30)).await;
    let route = support::routes(&rig.client, &rig.namespace).get("model").await.unwrap();
    assert_eq!(route_claim(&route), None, "the claim is released when the holder ends");
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_the_route_mid_rollout_does_not_strand_the_old_route_at_the_canary_weight() {
    let mut rig = Rig::new("frozen", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    let other: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "other"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [{"name": "model", "port": 8080}]}]},
    }))
    .unwrap();
    let created = support::routes(&rig.client, &rig.namespace).create(&Default::default(), &other).await.unwrap();
    rig.start_controller();
    let steps = json!([{"setWeight": 50}, {"pause": {}}]);
    rig.create_rollout(rollout("edited", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    rig.wait_for_phase("edited", &[Phase::Paused], Duration::from_secs(30)).await;
    assert_eq!(rig.route_canary_weight().await, Some(50));

    // The attack: point the rollout at another route while the canary takes half the traffic, then abort.
    let patch = json!({"spec": {"traffic": {"gatewayAPI": {"httpRoute": "other"}}}});
    rig.rollouts().patch("edited", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let frozen = rig
        .wait_for("edited", Duration::from_secs(30), "TargetsFrozen=True", |r| {
            condition(r, "TargetsFrozen").is_some_and(|(status, _)| status == "True")
        })
        .await;
    let targets = frozen.status.as_ref().and_then(|s| s.targets.clone()).unwrap();
    assert_eq!(targets.traffic.unwrap().gateway_api.unwrap().http_route, "model", "the started-with route is kept");
    rig.annotate("edited", "rampart.dev/abort", Some("true")).await;
    rig.wait_for_phase("edited", &[Phase::RolledBack], Duration::from_secs(30)).await;
    assert_eq!(rig.route_canary_weight().await, Some(0), "the route the canary was on is back on the baseline");
    // Never written to: the same object the test created (the API server's defaults, e.g. `weight: 1`, included).
    let other = support::routes(&rig.client, &rig.namespace).get("other").await.unwrap();
    assert_eq!(other.metadata.resource_version, created.metadata.resource_version, "the other route was never touched");
    assert_eq!(other.data["spec"], created.data["spec"]);
    let backends = other.data.pointer("/spec/rules/0/backendRefs").and_then(|b| b.as_array()).unwrap();
    assert!(backends.iter().all(|b| b["name"] == "model"), "no canary backend on the other route: {backends:?}");
    rig.stop_controller().await;
}
