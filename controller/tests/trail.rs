//! Gates before traffic and the registry trail: unsigned, tampered and untrusted candidates fail before anything is
//! routed; a promoted rollout leaves a complete, chain-verified trail and moves `production`; a Postgres outage during
//! a failing analysis does not delay the rollback, and the trail fills in once Postgres is back.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use rampart_api::Phase;
use rampart_checks::signing::{HashingOptions, PrivateKey, TrustedKey, hash_model, sign_manifest};
use rampart_registry::Registry;
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::{Value, json};
use support::{Rig, accuracy_metric, rollout};

const QUICK: Duration = Duration::from_millis(2);

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_scalar_bytes(&[seed; 32]).unwrap()
}

/// Signs a small model directory for model `fraud`; returns (bundle JSON, digest, the directory as the artifact URI
/// the rig's kubelet fetches from).
fn signed_model(dir: &Path, key: &PrivateKey) -> (String, String, String) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("model.onnx"), b"not really onnx, but bytes to sign").unwrap();
    std::fs::write(dir.join("config.json"), br#"{"classes": 10}"#).unwrap();
    let options = HashingOptions::default();
    let mut manifest = hash_model(dir, &options).unwrap();
    manifest.model_name = "fraud".into();
    let signed = sign_manifest(&manifest, key, &options).unwrap();
    (signed.bundle_json, signed.model_digest, dir.display().to_string())
}

fn signed_rollout(name: &str, steps: Value, (bundle, digest, uri): &(String, String, String)) -> Value {
    let mut r = rollout(name, steps, json!([accuracy_metric(0.05)]), json!({}));
    r["spec"]["candidate"]["artifact"]["uri"] = json!(uri);
    r["spec"]["candidate"]["artifact"]["digest"] = json!(digest);
    r["spec"]["candidate"]["artifact"]["signature"] = json!({"bundle": bundle});
    r["spec"].as_object_mut().unwrap().remove("checks");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverifiable_candidates_fail_before_any_traffic_moves() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = key(7);
    let stranger = key(9);
    let good = signed_model(&dir.path().join("good"), &trusted);
    let stranger_signed = signed_model(&dir.path().join("stranger"), &stranger);

    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("gates", canary, None).await;
    rig.trusted_keys = vec![TrustedKey::from_private(&trusted, "trusted.pem")];
    rig.allow_insecure = false;
    rig.start_controller();
    let steps = json!([{"setWeight": 50}, {"setWeight": 100}]);

    let tampered = format!("sha256:{}", "1".repeat(64));
    let mut unsigned = rollout("unsigned", steps.clone(), json!([accuracy_metric(0.05)]), json!({}));
    unsigned["spec"]["checks"] = json!({"insecureSkipSignature": true});
    let cases = [
        (
            signed_rollout("tampered", steps.clone(), &(good.0.clone(), tampered.clone(), good.2.clone())),
            "digest mismatch",
        ),
        (signed_rollout("stranger", steps.clone(), &stranger_signed), "does not verify"),
        (unsigned, "does not allow unsigned models"),
    ];
    for (object, _) in &cases {
        rig.create_rollout(object.clone()).await;
    }
    for (object, expected) in &cases {
        let name = object["metadata"]["name"].as_str().unwrap();
        let done = rig
            .wait_for_phase(name, &[Phase::Failed, Phase::Progressing, Phase::Succeeded], Duration::from_secs(30))
            .await;
        let status = done.status.unwrap();
        assert_eq!(status.phase, Some(Phase::Failed), "{name}: {:?}", status.message);
        let message = status.message.unwrap();
        assert!(message.contains(expected) && message.contains("no traffic was moved"), "{name}: {message}");
        assert_eq!(status.checks.unwrap().signature.unwrap().result, rampart_api::v1alpha1::CheckOutcome::Failed);
        assert_eq!(status.canary_weight.unwrap_or(0), 0);
    }
    assert_eq!(rig.route_canary_weight().await, None, "the route never got a canary backend");
    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    assert!(deployments.get_opt("model-canary").await.unwrap().is_none(), "no canary was created");
    assert_eq!(rig.driver.sent_to("model-canary"), 0);

    // The same bundle with the right digest passes the gate.
    rig.create_rollout(signed_rollout("genuine", steps, &good)).await;
    let done = rig.wait_for_phase("genuine", &[Phase::Succeeded, Phase::Failed], Duration::from_secs(30)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
    let signature = status.checks.unwrap().signature.unwrap();
    assert_eq!(signature.result, rampart_api::v1alpha1::CheckOutcome::Passed);
    assert_eq!(signature.signer.as_deref(), Some(TrustedKey::from_private(&trusted, "x").key_id()));
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_rollout_leaves_a_complete_verified_trail_and_moves_production() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = key(11);
    let signed = signed_model(dir.path(), &trusted);
    let digest = signed.1.clone();
    let database_url = rampart_testenv::shared_postgres().unwrap().new_database().unwrap();

    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("trail", canary, None).await;
    rig.trusted_keys = vec![TrustedKey::from_private(&trusted, "trusted.pem")];
    rig.database_url = Some(database_url.clone());
    rig.start_controller();
    let steps = json!([{"setWeight": 25}, {"analysis": {"duration": "60s", "interval": "1s"}}, {"setWeight": 100}]);
    rig.create_rollout(signed_rollout("recorded", steps, &signed)).await;
    let done = rig.wait_for_phase("recorded", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(90)).await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
    assert!(status.outbox.is_none(), "everything was written: {:?}", status.outbox);

    let registry = Registry::connect(&database_url).await.unwrap();
    let production = registry.production("fraud").await.unwrap().unwrap();
    assert_eq!(production.version, "v2");
    let uid = done.metadata.uid.unwrap();
    let kinds: Vec<String> =
        registry.rollout_events(&uid).await.unwrap().iter().map(|e| e.kind.as_str().to_string()).collect();
    assert_eq!(kinds.first().map(String::as_str), Some("rollout_started"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "step_applied").count(),
        3,
        "setWeight 25, analysis, setWeight 100: {kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "verdict"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "promoted"), "{kinds:?}");
    let report = registry.verify_chain("fraud").await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    let version = registry.version("fraud", "v2").await.unwrap();
    assert_eq!(version.digest, digest);
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_does_not_delay_the_rollback_and_the_trail_fills_in_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = key(13);
    let signed = signed_model(dir.path(), &trusted);
    let mut postgres = rampart_testenv::Postgres::start().unwrap();
    let database_url = postgres.new_database().unwrap();

    let canary = ModelServerConfig::new("v2").accuracy(0.8).latency(QUICK, 0.3);
    let mut rig = Rig::new("pgdown", canary, None).await;
    rig.trusted_keys = vec![TrustedKey::from_private(&trusted, "trusted.pem")];
    rig.database_url = Some(database_url.clone());
    rig.start_controller();
    let steps = json!([{"setWeight": 25}, {"analysis": {"duration": "90s", "interval": "1s"}}, {"setWeight": 100}]);
    let mut object = signed_rollout("outage", steps, &signed);
    object["spec"]["analysis"]["metrics"] = json!([accuracy_metric(0.01)]);
    rig.create_rollout(object).await;
    rig.wait_for("outage", Duration::from_secs(30), "the rollout recorded as started", |r| {
        let s = r.status.as_ref();
        s.and_then(|s| s.current_step).unwrap_or(0) >= 1 && s.and_then(|s| s.outbox.as_ref()).is_none()
    })
    .await;

    postgres.stop();
    let stopped = Instant::now();
    let done = rig.wait_for_phase("outage", &[Phase::RolledBack, Phase::Succeeded], Duration::from_secs(60)).await;
    println!("rolled back {:.1}s after Postgres stopped", stopped.elapsed().as_secs_f64());
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack));
    assert_eq!(rig.route_canary_weight().await, Some(0));
    let pending = status.outbox.unwrap_or_default();
    assert!(pending.iter().any(|r| r.contains("\"rollback\"")), "the rollback waits in the outbox: {pending:?}");

    // A controller restart while Postgres is down: the outbox lives in the cluster, not in memory.
    rig.stop_controller().await;
    rig.start_controller();
    postgres.restart().unwrap();
    rig.wait_for("outage", Duration::from_secs(40), "an empty outbox", |r| {
        r.status.as_ref().is_some_and(|s| s.outbox.is_none())
    })
    .await;

    let registry = Registry::connect(&database_url).await.unwrap();
    let rollbacks = registry.rollbacks("fraud").await.unwrap();
    assert_eq!(rollbacks.len(), 1);
    let uid = rollbacks[0].rollout.uid.clone();
    let kinds: Vec<String> =
        registry.rollout_events(&uid).await.unwrap().iter().map(|e| e.kind.as_str().to_string()).collect();
    assert_eq!(kinds.first().map(String::as_str), Some("rollout_started"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "verdict"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("rolled_back"), "{kinds:?}");
    assert!(registry.verify_chain("fraud").await.unwrap().is_intact());
    rig.stop_controller().await;
}
