//! The bake after promotion on the real API server, Prometheus and Postgres: a candidate five accuracy points worse
//! whose labels arrive only after promotion (the label delay is longer than the canary steps) is promoted, then
//! rolled back during the bake; traffic and the registry's `production` alias return to the previous version, and the
//! trail holds both the promotion and the rollback after promotion.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use rampart_api::Phase;
use rampart_api::v1alpha1::BakeOutcome;
use rampart_checks::signing::{HashingOptions, PrivateKey, TrustedKey, hash_model, sign_manifest};
use rampart_registry::{AliasMove, NewVersion, Registry, Verification};
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::json;
use support::{Rig, accuracy_metric, rollout};

const QUICK: Duration = Duration::from_millis(2);
/// Longer than the canary steps (setWeight 50, 20 s, setWeight 100): no candidate label arrives before promotion.
const LABEL_DELAY: Duration = Duration::from_secs(30);

/// Signs a small model directory for model `fraud`: (bundle JSON, digest, the directory as the artifact URI).
fn signed_model(dir: &Path, key: &PrivateKey, content: &[u8]) -> (String, String, String) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("model.onnx"), content).unwrap();
    let options = HashingOptions::default();
    let mut manifest = hash_model(dir, &options).unwrap();
    manifest.model_name = "fraud".into();
    let signed = sign_manifest(&manifest, key, &options).unwrap();
    (signed.bundle_json, signed.model_digest, dir.display().to_string())
}

/// `production` names a verified v1 before the rollout, as after an earlier promotion.
async fn seed_production(registry: &Registry, key: &PrivateKey, dir: &Path) {
    let (bundle, digest, uri) = signed_model(dir, key, b"the previous version's bytes");
    let new = NewVersion {
        model: "fraud".into(),
        version: "v1".into(),
        uri,
        digest: digest.clone(),
        size_bytes: None,
        format: None,
        tensor_contract: None,
        signature_bundle: Some(bundle.clone()),
    };
    registry.register_version(&new).await.unwrap();
    let key_id = TrustedKey::from_private(key, "trusted.pem").key_id().to_string();
    let verification = Verification {
        digest,
        signer_key_id: key_id,
        signature_bundle: Some(bundle),
        files: Vec::new(),
        serving: None,
    };
    registry.mark_verified("fraud", "v1", &verification).await.unwrap();
    let request = AliasMove {
        model: "fraud".into(),
        alias: "production".into(),
        version: "v1".into(),
        actor: "test".into(),
        reason: "v1 serves before the rollout".into(),
        expected_current: None,
        rollout_uid: None,
    };
    registry.move_alias(&request).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_worse_on_late_labels_is_promoted_then_rolled_back_during_the_bake() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::from_scalar_bytes(&[17; 32]).unwrap();
    let database_url = rampart_testenv::shared_postgres().unwrap().new_database().unwrap();
    let registry = Registry::connect(&database_url).await.unwrap();
    seed_production(&registry, &key, &dir.path().join("v1")).await;
    let (bundle, digest, uri) = signed_model(&dir.path().join("v2"), &key, b"the candidate's bytes");

    // Both versions' labels arrive LABEL_DELAY after the prediction; the candidate is five points less accurate.
    let baseline = ModelServerConfig::new("v1").accuracy(0.9).latency(QUICK, 0.3).label_delay(LABEL_DELAY);
    let canary = ModelServerConfig::new("v2").accuracy(0.85).latency(QUICK, 0.3).label_delay(LABEL_DELAY);
    let mut rig = Rig::with_servers("bake", baseline, canary, None).await;
    rig.trusted_keys = vec![TrustedKey::from_private(&key, "trusted.pem")];
    rig.database_url = Some(database_url.clone());
    rig.start_controller();

    let steps = json!([{"setWeight": 50}, {"pause": {"duration": "20s"}}, {"setWeight": 100}]);
    let mut object = rollout("baked", steps, json!([accuracy_metric(0.01)]), json!({}));
    object["spec"]["candidate"]["artifact"] = json!({"uri": uri, "digest": digest, "signature": {"bundle": bundle}});
    object["spec"].as_object_mut().unwrap().remove("checks");
    object["spec"]["bake"] = json!({"duration": "150s", "interval": "2s", "previousReplicas": 1});
    rig.create_rollout(object).await;

    // Promoted: production names v2 and v2 takes all traffic, before any of its labels arrived.
    let promoted =
        rig.wait_for_phase("baked", &[Phase::Baking, Phase::RolledBack, Phase::Failed], Duration::from_secs(90)).await;
    let promoted_at = Instant::now();
    let status = promoted.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::Baking), "{:?}", status.message);
    assert_eq!(rig.canary.served().labelled, 0, "no candidate label had arrived when it was promoted");
    assert!(rig.canary.served().requests > 1000, "the candidate served the canary steps");
    assert_eq!(rig.route_canary_weight().await, Some(100), "during the bake the candidate takes all traffic");
    assert_eq!(registry.production("fraud").await.unwrap().unwrap().version, "v2", "promotion moved production");
    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let env = |d: Deployment| d.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    assert_eq!(
        env(deployments.get("model").await.unwrap())[0].value.as_deref(),
        Some("s3://models/fraud/v1"),
        "the baseline Deployment keeps the previous version ready"
    );
    let replicas = |d: Deployment| d.spec.unwrap().replicas;
    let deadline = Instant::now() + Duration::from_secs(20);
    while replicas(deployments.get("model").await.unwrap()) != Some(1) {
        assert!(Instant::now() < deadline, "the previous version was not scaled to previousReplicas");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The late labels arrive and show the regression: rolled back after promotion.
    let done = rig.wait_for_phase("baked", &[Phase::RolledBack, Phase::Succeeded], Duration::from_secs(150)).await;
    println!("rolled back {:.1}s after promotion", promoted_at.elapsed().as_secs_f64());
    let status = done.status.clone().unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack), "{:?}", status.message);
    assert_eq!(status.bake.as_ref().and_then(|b| b.outcome), Some(BakeOutcome::RolledBack));
    let message = status.message.clone().unwrap();
    assert!(message.contains("rolled back after promotion to v1") && message.contains("accuracy"), "{message}");
    let metrics = status.analysis.clone().unwrap().metrics.unwrap();
    assert_eq!(metrics[0].verdict, rampart_api::v1alpha1::Verdict::Fail, "{metrics:?}");
    assert!(rig.canary.served().labelled > 0, "the verdict rests on the candidate's late labels");
    assert_eq!(rig.route_canary_weight().await, Some(0), "traffic is back on the previous version");
    assert!(deployments.get_opt("model-canary").await.unwrap().is_none(), "the candidate's Deployment is gone");
    let previous = deployments.get("model").await.unwrap();
    assert_eq!(replicas(previous.clone()), Some(2), "the previous version has its replicas back");
    assert_eq!(env(previous)[0].value.as_deref(), Some("s3://models/fraud/v1"));
    let reasons = rig.event_reasons("baked").await;
    assert!(reasons.iter().any(|r| r == "Baking"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "RolledBackAfterPromotion"), "{reasons:?}");

    // The registry: production is back on v1, and the trail holds the promotion, then the rollback after it.
    rig.wait_for("baked", Duration::from_secs(30), "an empty outbox", |r| {
        r.status.as_ref().is_some_and(|s| s.outbox.is_none())
    })
    .await;
    assert_eq!(registry.production("fraud").await.unwrap().unwrap().version, "v1");
    let moves: Vec<(Option<String>, String)> = registry
        .alias_history("fraud", "production")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.from_version, m.to_version))
        .collect();
    assert_eq!(
        moves,
        vec![(None, "v1".into()), (Some("v1".into()), "v2".into()), (Some("v2".into()), "v1".into())],
        "seeded, promoted, rolled back after promotion"
    );
    let uid = done.metadata.uid.clone().unwrap();
    let events = registry.rollout_events(&uid).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let promoted_index = kinds.iter().position(|k| *k == "promoted").expect("a promoted event");
    let rolled_back_index = kinds.iter().position(|k| *k == "rolled_back").expect("a rolled_back event");
    assert!(promoted_index < rolled_back_index, "{kinds:?}");
    let rollback = &events[rolled_back_index].payload;
    assert_eq!(rollback["after_promotion"], true, "{rollback}");
    assert_eq!(rollback["production"], "v1", "{rollback}");
    assert_eq!(rollback["statistics"]["metrics"][0]["verdict"], "Fail", "{rollback}");
    let rollbacks = registry.rollbacks("fraud").await.unwrap();
    assert_eq!(rollbacks.len(), 1);
    assert!(rollbacks[0].reason.contains("rolled back after promotion"), "{}", rollbacks[0].reason);
    assert!(registry.verify_chain("fraud").await.unwrap().is_intact());
    rig.stop_controller().await;
}
