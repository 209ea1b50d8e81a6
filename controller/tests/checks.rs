//! Check Jobs before traffic: a contract mismatch and a smoke-training run with NaN loss fail the rollout before any
//! traffic moves, and a training image outside the allow-list is refused before anything is created. The tests play
//! the kubelet: they run the real `rampart-check` binary on the fixture files and complete the Job and its Pod with
//! the verdict it wrote. A Job someone created under a check's name beforehand (tenancy finding 7) is not read as the
//! check, whatever its Pod says.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use rampart_api::Phase;
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::{Value, json};
use support::{Rig, accuracy_metric, rollout};

const QUICK: Duration = Duration::from_millis(2);

fn fixture(name: &str) -> PathBuf {
    rampart_testenv::repo_root().join("checks/fixtures").join(name)
}

/// The `rampart-check` binary of this workspace (built by `cargo test --workspace`).
fn rampart_check() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().and_then(Path::parent).unwrap().join("rampart-check");
    assert!(path.is_file(), "{} is missing: cargo build -p rampart-checks --bin rampart-check", path.display());
    path
}

/// Runs `rampart-check` and returns (exit code, the termination message it wrote).
fn run_check(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let message = dir.path().join("termination-log");
    let out =
        std::process::Command::new(rampart_check()).args(args).arg("--termination-log").arg(&message).output().unwrap();
    (out.status.code().unwrap_or(-1), std::fs::read_to_string(&message).unwrap_or_default())
}

/// Waits for the check Job the controller creates.
async fn wait_for_job(rig: &Rig, name: &str) -> Job {
    let jobs: Api<Job> = Api::namespaced(rig.client.clone(), &rig.namespace);
    for _ in 0..300 {
        if let Some(job) = jobs.get_opt(name).await.unwrap() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the controller did not create Job {name}");
}

/// Plays the Job controller and kubelet: a Pod for the Job that terminated with `message`, and the Job's status.
async fn complete_job(rig: &Rig, job: &str, container: &str, exit_code: i32, message: &str) {
    // As the Job controller: a pod that runs the Job's template, labelled with the Job's uid.
    let found = Api::<Job>::namespaced(rig.client.clone(), &rig.namespace).get(job).await.unwrap();
    let spec = found.spec.unwrap().template.spec.unwrap();
    finish_pod(rig, job, container, exit_code, message, serde_json::to_value(spec).unwrap()).await;
}

/// A Pod labelled as the Job's (by its uid) that runs `spec` and terminated with `message`, then the Job's status as
/// the Job controller would write it once it counted that Pod.
async fn finish_pod(rig: &Rig, job: &str, container: &str, exit_code: i32, message: &str, spec: Value) {
    let account = spec.get("serviceAccountName").and_then(Value::as_str).unwrap_or("default").to_string();
    let accounts: Api<ServiceAccount> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": account}})).unwrap();
    let _ = accounts.create(&PostParams::default(), &account).await;
    let pods: Api<Pod> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let uid = Api::<Job>::namespaced(rig.client.clone(), &rig.namespace).get(job).await.unwrap().metadata.uid.unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{job}-x1"), "labels": {"job-name": job, "batch.kubernetes.io/controller-uid": uid}},
        "spec": spec,
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {"phase": if exit_code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [{
        "name": container, "image": "rampart/rampart-check:test", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": if exit_code == 0 { "Completed" } else { "Error" }, "message": message}},
    }]}});
    pods.patch_status(&format!("{job}-x1"), &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    let now = jiff::Timestamp::now().to_string();
    let job_status = if exit_code == 0 {
        json!({"status": {"succeeded": 1, "startTime": now, "completionTime": now,
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}})
    } else {
        json!({"status": {"failed": 1, "startTime": now,
            "conditions": [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
                           {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}})
    };
    Api::<Job>::namespaced(rig.client.clone(), &rig.namespace)
        .patch_status(job, &PatchParams::default(), &Patch::Merge(&job_status))
        .await
        .unwrap();
}

async fn point_baseline_at(rig: &Rig, uri: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "server", "env": [{"name": "MODEL_URI", "value": uri}]}]}}}});
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(rig.client.clone(), &rig.namespace)
        .patch("model", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
}

/// A rollout of `candidate` (unsigned) whose only check is the contract check at batch sizes 1 and 8.
fn contract_rollout(name: &str, candidate: &std::path::Path) -> Value {
    let mut object =
        rollout(name, json!([{"setWeight": 50}, {"setWeight": 100}]), json!([accuracy_metric(0.05)]), json!({}));
    object["spec"]["candidate"]["artifact"]["uri"] = json!(candidate.to_str().unwrap());
    object["spec"]["checks"] = json!({"insecureSkipSignature": true, "contract": {"batchSizes": [1, 8]}});
    object
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_mismatch_fails_the_rollout_before_traffic_with_the_incompatibilities_listed() {
    let mut rig = Rig::new("contract", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    let baseline = fixture("residual_mlp.onnx");
    let candidate = fixture("residual_mlp_renamed_input.onnx");
    point_baseline_at(&rig, baseline.to_str().unwrap()).await;
    rig.start_controller();
    rig.create_rollout(contract_rollout("renamed", &candidate)).await;

    let job = wait_for_job(&rig, "renamed-contract").await;
    let spec = job.spec.clone().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert!(spec.active_deadline_seconds.is_some() && spec.ttl_seconds_after_finished.is_some());
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("rampart-checks"), "check Jobs use the configured account");
    let args = pod.containers[0].args.clone().unwrap();
    assert!(
        args.contains(&candidate.display().to_string()) && args.contains(&baseline.display().to_string()),
        "{args:?}"
    );

    let (code, message) = run_check(&[
        "contract",
        "--candidate",
        candidate.to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
        "--batch-sizes",
        "1,8",
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "the real check finds the mismatch");
    complete_job(&rig, "renamed-contract", "contract", code, &message).await;

    let done = rig.wait_for_phase("renamed", &[Phase::Failed, Phase::Progressing], Duration::from_secs(30)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
    let text = status.message.unwrap();
    assert!(text.contains("contract check failed, no traffic was moved"), "{text}");
    assert!(text.contains("input"), "the incompatibilities are listed: {text}");
    assert_eq!(status.checks.unwrap().contract.unwrap().result, rampart_api::v1alpha1::CheckOutcome::Failed);
    assert_eq!(rig.route_canary_weight().await, None, "nothing routed");

    // A compatible candidate (one extra output) passes the same check and goes on to its steps.
    let compatible = fixture("residual_mlp_extra_output.onnx");
    let mut object =
        rollout("extra", json!([{"setWeight": 50}, {"setWeight": 100}]), json!([accuracy_metric(0.05)]), json!({}));
    object["spec"]["candidate"]["artifact"]["uri"] = json!(compatible.to_str().unwrap());
    object["spec"]["checks"] = json!({"insecureSkipSignature": true, "contract": {"batchSizes": [1, 8]}});
    rig.create_rollout(object).await;
    wait_for_job(&rig, "extra-contract").await;
    let (code, message) = run_check(&[
        "contract",
        "--candidate",
        compatible.to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
        "--batch-sizes",
        "1,8",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    complete_job(&rig, "extra-contract", "contract", code, &message).await;
    let done = rig.wait_for_phase("extra", &[Phase::Failed, Phase::Succeeded], Duration::from_secs(30)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
    assert_eq!(status.checks.unwrap().contract.unwrap().result, rampart_api::v1alpha1::CheckOutcome::Passed);
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smoke_training_run_with_nan_loss_fails_before_traffic_and_the_job_asked_for_a_gpu() {
    let mut rig = Rig::new("smoke", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    rig.smoke_allow = vec!["registry.example.com/ml/".into()];
    rig.start_controller();
    let mut object =
        rollout("exploding", json!([{"setWeight": 50}, {"setWeight": 100}]), json!([accuracy_metric(0.05)]), json!({}));
    object["spec"]["checks"] = json!({"insecureSkipSignature": true, "smokeTraining": {
        "image": "registry.example.com/ml/trainer:v2",
        "args": ["--lr", "2.0"],
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "nodeSelector": {"accelerator": "nvidia-h100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "timeout": "10m",
        "thresholds": {"maxGradNorm": 100.0},
    }});
    rig.create_rollout(object).await;

    let job = wait_for_job(&rig, "exploding-smoke-training").await;
    let spec = job.spec.unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(600));
    let pod = spec.template.spec.unwrap();
    let trainer = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(trainer.image.as_deref(), Some("registry.example.com/ml/trainer:v2"));
    let limits = trainer.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "1", "the GPU request reached the Job");
    assert_eq!(pod.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("nvidia.com/gpu"));
    assert_eq!(pod.node_selector.as_ref().unwrap()["accelerator"], "nvidia-h100");
    assert_eq!(pod.service_account_name.as_deref(), Some("rampart-checks"));

    // The real trainer at a learning rate that blows up, then the real evaluator on its output.
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.jsonl");
    let train = std::process::Command::new(rampart_check())
        .args(["train", "--steps", "40", "--lr", "2.0", "--metrics-out"])
        .arg(&metrics)
        .output()
        .unwrap();
    assert!(metrics.is_file(), "train wrote no metrics: {}", String::from_utf8_lossy(&train.stderr));
    let (code, message) = run_check(&["smoke-eval", "--metrics", metrics.to_str().unwrap(), "--max-grad-norm", "100"]);
    assert_eq!(code, 1, "the evaluator fails the run");
    complete_job(&rig, "exploding-smoke-training", "smoke-eval", code, &message).await;

    let done = rig.wait_for_phase("exploding", &[Phase::Failed, Phase::Progressing], Duration::from_secs(30)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
    let text = status.message.unwrap();
    assert!(text.contains("smoke-training check failed, no traffic was moved"), "{text}");
    assert!(text.to_lowercase().contains("finite") || text.contains("NaN"), "names the NaN loss: {text}");
    assert_eq!(rig.route_canary_weight().await, None, "nothing routed");
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_image_outside_the_allow_list_is_refused_before_anything_is_created() {
    let mut rig = Rig::new("allowlist", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    rig.smoke_allow = vec!["registry.example.com/ml/".into()];
    rig.start_controller();
    let mut object = rollout("miner", json!([{"setWeight": 50}]), json!([accuracy_metric(0.05)]), json!({}));
    object["spec"]["checks"] =
        json!({"insecureSkipSignature": true, "smokeTraining": {"image": "docker.io/someone/miner:latest"}});
    rig.create_rollout(object).await;
    let done = rig
        .wait_for_phase("miner", &[Phase::Failed, Phase::Checking, Phase::Progressing], Duration::from_secs(30))
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
    let text = status.message.unwrap();
    assert!(
        text.contains("docker.io/someone/miner:latest is not allowed") && text.contains("registry.example.com/ml/"),
        "{text}"
    );
    let jobs: Api<Job> = Api::namespaced(rig.client.clone(), &rig.namespace);
    assert!(jobs.list(&Default::default()).await.unwrap().items.is_empty(), "no Job was created");
    assert_eq!(rig.route_canary_weight().await, None);
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_created_under_the_checks_name_beforehand_is_not_read_as_the_check() {
    let mut rig = Rig::new("forgedjob", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    let baseline = fixture("residual_mlp.onnx");
    let candidate = fixture("residual_mlp_renamed_input.onnx");
    point_baseline_at(&rig, baseline.to_str().unwrap()).await;
    // The attack as written: a Job under the name the contract check will have, running something else, whose Pod
    // ends with a passing verdict (taken from a real passing run).
    let forged: Job = serde_json::from_value(json!({
        "metadata": {"name": "forged-contract"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "contract", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}],
        }}},
    }))
    .unwrap();
    Api::<Job>::namespaced(rig.client.clone(), &rig.namespace).create(&PostParams::default(), &forged).await.unwrap();
    let same = baseline.to_str().unwrap();
    let (code, passing) =
        run_check(&["contract", "--candidate", same, "--baseline", same, "--batch-sizes", "1,8", "--format", "json"]);
    assert_eq!(code, 0, "a passing verdict to forge with");
    complete_job(&rig, "forged-contract", "contract", 0, &passing).await;

    rig.start_controller();
    rig.create_rollout(contract_rollout("forged", &candidate)).await;
    let done = rig.wait_for_phase("forged", &[Phase::Failed, Phase::Succeeded], Duration::from_secs(30)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed), "{:?}", status.message);
    let message = status.message.unwrap_or_default();
    assert!(message.contains("is not the check Rampart started") && message.contains("differs from what Rampart runs"));
    assert_eq!(status.checks.unwrap().contract.unwrap().result, rampart_api::v1alpha1::CheckOutcome::Failed);
    assert_eq!(rig.route_canary_weight().await, None, "no traffic moved");
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_labelled_as_the_check_jobs_but_running_something_else_is_not_read_as_its_verdict() {
    let mut rig = Rig::new("forgedpod", ModelServerConfig::new("v2").latency(QUICK, 0.3), None).await;
    let baseline = fixture("residual_mlp.onnx");
    let candidate = fixture("residual_mlp_renamed_input.onnx");
    point_baseline_at(&rig, baseline.to_str().unwrap()).await;
    rig.start_controller();
    rig.create_rollout(contract_rollout("podded", &candidate)).await;
    // The real check Job exists; before its own pod runs, someone who can create Pods makes one with the Job's uid
    // label that runs their own container and ends with a passing verdict (taken from a real passing run). A Job
    // controller adopts a matching orphan pod and counts it; there is no Job controller here, so the test writes the
    // Job's status as it would (the one part of this attack that is played, not performed).
    wait_for_job(&rig, "podded-contract").await;
    let same = baseline.to_str().unwrap();
    let (code, passing) =
        run_check(&["contract", "--candidate", same, "--baseline", same, "--batch-sizes", "1,8", "--format", "json"]);
    assert_eq!(code, 0, "a passing verdict to forge with");
    let own = json!({"restartPolicy": "Never", "containers": [{"name": "contract", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}]});
    finish_pod(&rig, "podded-contract", "contract", 0, &passing, own).await;

    let done = rig
        .wait_for_phase("podded", &[Phase::Failed, Phase::Progressing, Phase::Succeeded], Duration::from_secs(30))
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed), "{:?}", status.message);
    let message = status.message.unwrap_or_default();
    assert!(message.contains("left no verdict"), "{message}");
    assert_eq!(status.checks.unwrap().contract.unwrap().result, rampart_api::v1alpha1::CheckOutcome::Failed);
    assert_eq!(rig.route_canary_weight().await, None, "no traffic moved");
    rig.stop_controller().await;
}
