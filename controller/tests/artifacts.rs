//! The bytes checked and served are the bytes signed, on the real API server and a real S3 server (SeaweedFS): a
//! copied trusted bundle with other files at the URI fails before any traffic and nothing is marked verified; an object
//! replaced after verification keeps the canary pod from starting and the rollout rolls back naming the file; a bundle
//! signed for another model is refused; the contract check runs on the verified copy of an `s3://` artifact; object
//! store credentials come from a Secret in the rollout's namespace, and another namespace's Secret is refused at
//! admission. The rig's kubelet runs the real `rampart-check fetch` with each container's arguments and environment.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use rampart_api::Phase;
use rampart_api::v1alpha1::CheckOutcome;
use rampart_checks::signing::{HashingOptions, PrivateKey, TrustedKey, hash_file, hash_model, sign_manifest, to_hex};
use rampart_registry::{Registry, VersionStatus};
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::{Value, json};
use support::kubelet::{self, Ran};
use support::{Rig, accuracy_metric, rollout};

const QUICK: Duration = Duration::from_millis(2);

fn s3() -> &'static rampart_testenv::S3Server {
    rampart_testenv::shared_s3().unwrap()
}

fn bucket(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    s3().create_bucket(&name).unwrap();
    name
}

fn key() -> PrivateKey {
    PrivateKey::from_scalar_bytes(&[21u8; 32]).unwrap()
}

/// Writes a small model directory.
fn write_model(dir: &Path, seed: u8) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("weights.bin"), vec![seed; 40_000]).unwrap();
    std::fs::write(dir.join("config.json"), format!("{{\"seed\": {seed}}}")).unwrap();
}

/// Signs a file or directory model for `model_name`; returns (bundle JSON, digest).
fn sign(path: &Path, model_name: &str) -> (String, String) {
    let options = HashingOptions::default();
    let mut manifest = hash_model(path, &options).unwrap();
    manifest.model_name = model_name.into();
    let signed = sign_manifest(&manifest, &key(), &options).unwrap();
    (signed.bundle_json, signed.model_digest)
}

/// The credentials Secret a rollout names: the S3 server's settings as the AWS environment.
async fn credentials_secret(rig: &Rig) {
    let data: serde_json::Map<String, Value> = s3().aws_env().into_iter().map(|(k, v)| (k, json!(v))).collect();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "model-store"}, "stringData": data})).unwrap();
    Api::<Secret>::namespaced(rig.client.clone(), &rig.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn signed_rollout(name: &str, steps: Value, uri: &str, bundle: &str, digest: &str) -> Value {
    let mut object = rollout(name, steps, json!([accuracy_metric(0.05)]), json!({}));
    let artifact = &mut object["spec"]["candidate"]["artifact"];
    artifact["uri"] = json!(uri);
    artifact["digest"] = json!(digest);
    artifact["signature"] = json!({"bundle": bundle});
    artifact["credentials"] = json!({"secretRef": {"name": "model-store"}});
    object["spec"].as_object_mut().unwrap().remove("checks");
    object
}

async fn signed_rig(prefix: &str, database: bool) -> Rig {
    let mut rig = Rig::new(prefix, ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3), None).await;
    rig.trusted_keys = vec![TrustedKey::from_private(&key(), "team-ml.pem")];
    rig.allow_insecure = false;
    if database {
        rig.database_url = Some(rampart_testenv::shared_postgres().unwrap().new_database().unwrap());
    }
    credentials_secret(&rig).await;
    rig
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_trusted_bundle_with_another_model_at_the_uri_fails_before_traffic_and_nothing_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let genuine = dir.path().join("genuine");
    write_model(&genuine, 1);
    let (bundle, digest) = sign(&genuine, "fraud");
    let other = dir.path().join("other");
    write_model(&other, 66);
    let bucket = bucket("reuse");
    s3().put_dir(&bucket, "fraud/v2", &other).unwrap();

    let mut rig = signed_rig("reuse", true).await;
    rig.start_controller();
    let uri = format!("s3://{bucket}/fraud/v2");
    let steps = json!([{"setWeight": 50}, {"setWeight": 100}]);
    rig.create_rollout(signed_rollout("reused", steps, &uri, &bundle, &digest)).await;
    let done = rig
        .wait_for_phase("reused", &[Phase::Failed, Phase::Progressing, Phase::Succeeded], Duration::from_secs(60))
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed), "{:?}", status.message);
    let message = status.message.unwrap();
    let signed_hex = to_hex(&hash_file(&genuine.join("config.json")).unwrap());
    let served_hex = to_hex(&hash_file(&other.join("config.json")).unwrap());
    assert!(message.contains("no traffic was moved"), "{message}");
    assert!(
        message.contains(&format!("file config.json changed (signed sha256:{signed_hex}, now sha256:{served_hex})"))
            || message.contains("file weights.bin changed (signed sha256:"),
        "names the file and both digests: {message}"
    );
    let checks = status.checks.unwrap();
    assert_eq!(checks.signature.unwrap().result, CheckOutcome::Passed, "the bundle itself is genuine");
    assert_eq!(checks.artifact.unwrap().result, CheckOutcome::Failed);
    assert_eq!(status.canary_weight.unwrap_or(0), 0);
    assert_eq!(rig.route_canary_weight().await, None, "the route never got a canary backend");
    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    assert!(deployments.get_opt("model-canary").await.unwrap().is_none(), "no canary was created");

    // The registry knows the version only as registered, never as verified.
    rig.wait_for("reused", Duration::from_secs(20), "an empty outbox", |r| {
        r.status.as_ref().is_some_and(|s| s.outbox.is_none())
    })
    .await;
    let registry = Registry::connect(rig.database_url.as_deref().unwrap()).await.unwrap();
    let version = registry.version("fraud", "v2").await.unwrap();
    assert_ne!(version.status, VersionStatus::Verified);
    assert!(version.verified_at.is_none());
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_replaced_after_verification_keeps_the_canary_from_starting_and_rolls_back_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    write_model(&model, 2);
    let (bundle, digest) = sign(&model, "fraud");
    let bucket = bucket("swap");
    s3().put_dir(&bucket, "fraud/v2", &model).unwrap();

    let mut rig = signed_rig("swap", true).await;
    rig.start_controller();
    let uri = format!("s3://{bucket}/fraud/v2");
    // The pause leaves time to replace the object between the verification and the canary's start.
    let steps = json!([{"pause": {"duration": "6s"}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]);
    rig.create_rollout(signed_rollout("swapped", steps, &uri, &bundle, &digest)).await;
    rig.wait_for("swapped", Duration::from_secs(60), "the artifact verified", |r| {
        r.status.as_ref().and_then(|s| s.checks.as_ref()).and_then(|c| c.artifact.as_ref()).map(|a| a.result)
            == Some(CheckOutcome::Passed)
    })
    .await;
    s3().put_object(&bucket, "fraud/v2/weights.bin", vec![9u8; 40_000]).unwrap();

    let done = rig
        .wait_for_phase("swapped", &[Phase::RolledBack, Phase::Succeeded, Phase::Failed], Duration::from_secs(60))
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack), "{:?}", status.message);
    let message = status.message.unwrap_or_default();
    let history: Vec<String> = status.history.iter().flatten().filter_map(|h| h.message.clone()).collect();
    let reason = std::iter::once(message.clone()).chain(history).find(|m| m.contains("refused the artifact"));
    let reason = reason.unwrap_or_else(|| panic!("the rollback names the refusal: {message}"));
    assert!(reason.contains("file weights.bin changed (signed sha256:"), "{reason}");
    assert_eq!(rig.route_canary_weight().await.unwrap_or(0), 0);
    let canary =
        Api::<Deployment>::namespaced(rig.client.clone(), &rig.namespace).get_opt("model-canary").await.unwrap();
    let ready = canary.and_then(|d| d.status).and_then(|s| s.ready_replicas).unwrap_or(0);
    assert_eq!(ready, 0, "no canary pod with the replaced object ever became ready");

    // The registry keeps what was verified before the swap: every file's digest, and how serving pods load them.
    rig.wait_for("swapped", Duration::from_secs(20), "an empty outbox", |r| {
        r.status.as_ref().is_some_and(|s| s.outbox.is_none())
    })
    .await;
    let registry = Registry::connect(rig.database_url.as_deref().unwrap()).await.unwrap();
    let (files, serving) = registry.version_files("fraud", "v2").await.unwrap();
    let recorded: Vec<(String, String)> = files.iter().map(|f| (f.path.clone(), f.sha256.clone())).collect();
    let signed: Vec<(String, String)> = ["config.json", "weights.bin"]
        .iter()
        .map(|name| (name.to_string(), to_hex(&hash_file(&model.join(name)).unwrap())))
        .collect();
    assert_eq!(recorded, signed, "the per-file digests of the bytes that were verified");
    assert_eq!(files.iter().find(|f| f.path == "weights.bin").and_then(|f| f.size_bytes), Some(40_000));
    assert_eq!(serving, Some(rampart_registry::ServingVerification::VerifiedCopy));
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_signed_for_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    write_model(&model, 3);
    let (bundle, digest) = sign(&model, "churn");
    let bucket = bucket("othername");
    s3().put_dir(&bucket, "churn/v2", &model).unwrap();

    let mut rig = signed_rig("othername", false).await;
    rig.start_controller();
    let uri = format!("s3://{bucket}/churn/v2");
    rig.create_rollout(signed_rollout("borrowed", json!([{"setWeight": 100}]), &uri, &bundle, &digest)).await;
    let done = rig.wait_for_phase("borrowed", &[Phase::Failed, Phase::Succeeded], Duration::from_secs(60)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
    let message = status.message.unwrap();
    assert!(message.contains(r#"the bundle signs model "churn", but this is model "fraud""#), "{message}");
    assert_eq!(rig.route_canary_weight().await, None);
    rig.stop_controller().await;
}

fn fixture(name: &str) -> PathBuf {
    rampart_testenv::repo_root().join("checks/fixtures").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_check_runs_on_the_verified_copy_of_an_s3_artifact() {
    let candidate = fixture("residual_mlp_extra_output.onnx");
    let baseline = fixture("residual_mlp.onnx");
    let (bundle, digest) = sign(&candidate, "fraud");
    let bucket = bucket("contract");
    s3().put_file(&bucket, "fraud/v2/model.onnx", &candidate).unwrap();

    let mut rig = signed_rig("s3contract", false).await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "server", "env": [{"name": "MODEL_URI", "value": baseline.to_str().unwrap()}]}]}}}});
    Api::<Deployment>::namespaced(rig.client.clone(), &rig.namespace)
        .patch("model", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(&patch))
        .await
        .unwrap();
    rig.start_controller();
    let uri = format!("s3://{bucket}/fraud/v2/model.onnx");
    let mut object = signed_rollout("checked", json!([{"setWeight": 100}]), &uri, &bundle, &digest);
    object["spec"]["checks"] = json!({"contract": {"batchSizes": [1, 8]}});
    rig.create_rollout(object).await;

    // The rig's kubelet verified the artifact; the contract Job is played here: its init container, then the check.
    let jobs: Api<Job> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let mut waited = 0;
    let job = loop {
        if let Some(job) = jobs.get_opt("checked-contract").await.unwrap() {
            break job;
        }
        waited += 1;
        if waited > 300 {
            let status = rig.rollouts().get("checked").await.unwrap().status;
            panic!("no contract Job after 60 s; status: {}", serde_json::to_string_pretty(&status).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pod = job.spec.unwrap().template.spec.unwrap();
    let fetch = kubelet::fetch_container(&pod).expect("the contract Job fetches the artifact first");
    let contract = pod.containers.iter().find(|c| c.name == "contract").unwrap().clone();
    let args = contract.args.clone().unwrap();
    assert!(args.contains(&"/rampart/model/model.onnx".to_string()), "the check reads the verified copy: {args:?}");
    assert!(!args.iter().any(|a| a.starts_with("s3://")), "never the URI: {args:?}");
    let volume = tempfile::tempdir().unwrap();
    let fetched: Ran = kubelet::run_container_in(&rig.client, &rig.namespace, &fetch, volume.path()).await;
    assert_eq!(fetched.exit_code, 0, "{}", fetched.stderr);
    let checked = kubelet::run_container_in(&rig.client, &rig.namespace, &contract, volume.path()).await;
    assert_eq!(checked.exit_code, 0, "an extra output is compatible: {}", checked.stderr);
    kubelet::complete_job(&rig.client, &rig.namespace, "checked-contract", "contract", &checked).await;

    let done = rig.wait_for_phase("checked", &[Phase::Succeeded, Phase::Failed], Duration::from_secs(60)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
    let checks = status.checks.unwrap();
    assert!(checks.artifact.unwrap().message.unwrap().contains(&digest), "the verdict names the verified digest");
    assert_eq!(checks.contract.unwrap().result, CheckOutcome::Passed);
    // Promotion points the baseline at the verified copy, fetched by the same init container.
    let base = Api::<Deployment>::namespaced(rig.client.clone(), &rig.namespace).get("model").await.unwrap();
    let template = base.spec.unwrap().template.spec.unwrap();
    assert!(kubelet::fetch_container(&template).is_some(), "the promoted baseline verifies what it serves");
    let env = template.containers[0].env.clone().unwrap();
    assert!(env.iter().any(|e| e.name == "MODEL_URI" && e.value.as_deref() == Some("/rampart/model/model.onnx")));
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_only_from_a_secret_of_the_rollouts_own_namespace() {
    let rig = signed_rig("creds", false).await;
    let mut object = signed_rollout(
        "elsewhere",
        json!([{"setWeight": 100}]),
        "s3://b/m",
        "{}",
        &format!("sha256:{}", "a".repeat(64)),
    );
    object["spec"]["candidate"]["artifact"]["credentials"] = json!({"secretRef": {"name": "team-b/model-store"}});
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        rig.client.clone(),
        &rig.namespace,
        &kube::api::ApiResource::erase::<rampart_api::ModelRollout>(&()),
    );
    let err = api.create(&PostParams::default(), &serde_json::from_value(object).unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("cross-namespace references are not allowed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_training_fine_tunes_the_verified_copy_of_an_s3_artifact() {
    // A candidate the reference trainer can start from: its own initial weights as a safetensors file, signed.
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.safetensors");
    let saved = std::process::Command::new(support::kubelet::rampart_check())
        .args(["train", "--save-initial"])
        .arg(&weights)
        .output()
        .unwrap();
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
    let (bundle, digest) = sign(&weights, "fraud");
    let bucket = bucket("smoke");
    s3().put_file(&bucket, "fraud/v2/model.safetensors", &weights).unwrap();

    let mut rig = signed_rig("s3smoke", false).await;
    rig.smoke_allow = vec!["registry.example.com/ml/".into()];
    rig.start_controller();
    let uri = format!("s3://{bucket}/fraud/v2/model.safetensors");
    let mut object = signed_rollout("trained", json!([{"setWeight": 100}]), &uri, &bundle, &digest);
    object["spec"]["checks"] = json!({"smokeTraining": {
        "image": "registry.example.com/ml/trainer:v2",
        "command": ["rampart-check"],
        "args": ["train", "--steps", "40", "--init-from", "$(RAMPART_MODEL_URI)", "--metrics-out", "$(RAMPART_METRICS_FILE)"],
    }});
    rig.create_rollout(object).await;

    let jobs: Api<Job> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let mut waited = 0;
    let job = loop {
        if let Some(job) = jobs.get_opt("trained-smoke-training").await.unwrap() {
            break job;
        }
        waited += 1;
        if waited > 300 {
            let status = rig.rollouts().get("trained").await.unwrap().status;
            panic!("no smoke-training Job after 60 s; status: {}", serde_json::to_string_pretty(&status).unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The Job's order, as a kubelet runs it: fetch (first init container), train (second), then the evaluator.
    let pod = job.spec.unwrap().template.spec.unwrap();
    let init = pod.init_containers.clone().unwrap();
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["rampart-fetch", "train"], "the fetch runs before the training image");
    let train = &init[1];
    let model_env = train.env.iter().flatten().find(|e| e.name == "RAMPART_MODEL_URI").unwrap();
    assert_eq!(model_env.value.as_deref(), Some("/rampart/model/model.safetensors"), "never the URI");
    let eval = pod.containers.iter().find(|c| c.name == "smoke-eval").unwrap().clone();

    let pod_dir = tempfile::tempdir().unwrap();
    let volume = pod_dir.path().join("model");
    let fetched = kubelet::run_container_in(&rig.client, &rig.namespace, &init[0], &volume).await;
    assert_eq!(fetched.exit_code, 0, "{}", fetched.stderr);
    let trained = kubelet::run_container_in(&rig.client, &rig.namespace, train, &volume).await;
    assert_eq!(trained.exit_code, 0, "the trainer started from the verified copy: {}", trained.stderr);
    assert!(pod_dir.path().join("metrics.jsonl").is_file(), "the trainer wrote its metrics to the shared volume");
    let judged = kubelet::run_container_in(&rig.client, &rig.namespace, &eval, &volume).await;
    assert_eq!(judged.exit_code, 0, "a healthy fine-tune passes: {}", judged.message);
    kubelet::complete_job(&rig.client, &rig.namespace, "trained-smoke-training", "smoke-eval", &judged).await;

    let done = rig.wait_for_phase("trained", &[Phase::Succeeded, Phase::Failed], Duration::from_secs(60)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
    let checks = status.checks.unwrap();
    assert!(checks.artifact.unwrap().message.unwrap().contains(&digest), "the verdict names the verified digest");
    let smoke = checks.smoke_training.unwrap();
    assert_eq!(smoke.result, CheckOutcome::Passed);
    // The loss curve the dashboard draws: every one of the 40 steps (at most 40 points), all finite.
    let curve = smoke.loss_curve.expect("the smoke run's loss curve is in status");
    assert_eq!(curve.len(), 40);
    assert_eq!((curve[0].step, curve[39].step), (1, 40));
    assert!(curve.iter().all(|p| p.loss.is_some_and(f64::is_finite)));

    // The same Job on a file that is not the signed one: the fetch refuses it and the trainer never runs.
    s3().put_object(&bucket, "fraud/v2/model.safetensors", vec![0u8; 1024]).unwrap();
    let refused = kubelet::run_container_in(&rig.client, &rig.namespace, &init[0], &pod_dir.path().join("again")).await;
    assert_eq!(refused.exit_code, 1, "{}", refused.stderr);
    assert!(refused.message.contains("changed"), "{}", refused.message);
    rig.stop_controller().await;
}
