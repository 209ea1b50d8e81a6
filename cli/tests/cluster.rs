//! `status`, `promote`, `abort` and `retry` against the real test API server: the tests create ModelRollouts and
//! write their status the way the controller would, then run the real binary with the test kubeconfig.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use rampart_api::{ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RETRY, ModelRollout};
use serde_json::json;
use support::{Outcome, closed_port, command, path_str, run_command};

fn kubeconfig() -> &'static Path {
    rampart_testenv::shared().unwrap().kubeconfig_path()
}

/// Runs the binary with the test cluster's kubeconfig and `-n namespace`.
fn rampart(namespace: &str, args: &[&str]) -> Outcome {
    let mut command = command(args);
    command.args(["--kubeconfig", path_str(kubeconfig()), "-n", namespace]);
    run_command(command)
}

async fn setup(prefix: &str) -> (Api<ModelRollout>, String) {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, prefix).await.unwrap();
    (Api::namespaced(client, &namespace), namespace)
}

async fn create_rollout(api: &Api<ModelRollout>, name: &str) -> ModelRollout {
    let rollout: ModelRollout = serde_json::from_value(json!({
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": name},
        "spec": {
            "model": "fraud-detector",
            "candidate": {"version": "v8", "artifact": {
                "uri": "s3://models/fraud-detector/v8/",
                "digest": format!("sha256:{}", "ab".repeat(32)),
                "signature": {"secretRef": {"name": "fraud-v8-signature", "key": "model.sig"}}
            }},
            "serving": {"deployment": {"name": "fraud-detector", "modelEnv": "MODEL_URI"}},
            "traffic": {"gatewayAPI": {"httpRoute": "fraud", "baselineBackend": "fraud", "canaryBackend": "fraud-canary"}},
            "steps": [
                {"setWeight": 10},
                {"analysis": {"duration": "10m", "interval": "30s"}},
                {"setWeight": 50},
                {"pause": {}},
                {"setWeight": 100}
            ],
            "analysis": {"metrics": [{
                "name": "accuracy", "kind": "ratio", "direction": "higherIsBetter", "tolerance": {"absolute": 0.01},
                "queries": {"success": "sum(correct{version=\"{{version}}\"})", "total": "sum(labelled{version=\"{{version}}\"})"}
            }]}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &rollout).await.unwrap()
}

async fn set_status(api: &Api<ModelRollout>, name: &str, status: serde_json::Value) {
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await.unwrap();
}

fn progressing_status() -> serde_json::Value {
    json!({
        "phase": "Progressing",
        "currentStep": 1,
        "canaryWeight": 10,
        "baselineVersion": "v7",
        "message": "analysis step running",
        "checks": {"signature": {"result": "Passed", "signer": "team-ml"}, "contract": {"result": "Passed"}},
        "analysis": {
            "verdict": "Continue",
            "looks": 4,
            "metrics": [{
                "name": "accuracy", "verdict": "Continue", "canary": "0.9012", "baseline": "0.8990",
                "effect": "+0.0022", "interval": "[-0.0150, +0.0190]", "pValue": "0.41", "samples": "1200/10800"
            }],
            "srm": {"name": "sample ratio", "verdict": "Pass", "canary": "0.101", "baseline": "0.899"}
        },
        "history": [{"time": "2026-11-27T10:00:00Z", "phase": "Progressing", "step": 0, "message": "canary at 10%"}]
    })
}

#[tokio::test]
async fn status_shows_phase_step_weight_bar_and_metric_verdicts() {
    let (api, ns) = setup("cli-status").await;
    create_rollout(&api, "fraud-v8").await;
    set_status(&api, "fraud-v8", progressing_status()).await;

    let outcome = rampart(&ns, &["status", "fraud-v8"]);
    outcome.expect_code(0);
    let text = &outcome.stdout;
    assert!(text.contains(&format!("Rollout:  {ns}/fraud-v8   model fraud-detector: v7 -> v8")), "{text}");
    assert!(text.contains("Phase:    Progressing"), "{text}");
    assert!(text.contains("Step:     2 of 5: analysis for 10m every 30s"), "{text}");
    // Not a terminal: the plain ASCII bar.
    assert!(text.contains("Weight:   [##------------------]  10% to the canary"), "{text}");
    assert!(text.contains("signature Passed (signer team-ml)"), "{text}");
    assert!(text.contains("Analysis: Continue after 4 look(s)"), "{text}");
    let accuracy = text.lines().find(|line| line.trim_start().starts_with("accuracy")).unwrap();
    for cell in ["Continue", "0.9012", "0.8990", "+0.0022", "[-0.0150, +0.0190]", "0.41", "1200/10800"] {
        assert!(accuracy.contains(cell), "accuracy row lacks {cell}: {accuracy}");
    }
    assert!(text.contains("sample ratio"), "{text}");
    assert!(!text.contains('\u{1b}'), "no terminal escapes when stdout is not a terminal: {text:?}");

    let json = rampart(&ns, &["status", "fraud-v8", "--format", "json"]);
    json.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["status"]["canaryWeight"], 10);
    assert_eq!(value["status"]["analysis"]["metrics"][0]["pValue"], "0.41");
}

#[tokio::test]
async fn status_of_a_rollout_without_status_says_it_was_not_picked_up() {
    let (api, ns) = setup("cli-status-new").await;
    create_rollout(&api, "fresh").await;
    let outcome = rampart(&ns, &["status", "fresh"]);
    outcome.expect_code(0);
    assert!(outcome.stdout.contains("Phase:    Pending (not picked up yet)"), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("Step:     not started (5 step(s) planned)"), "{}", outcome.stdout);
}

#[tokio::test]
async fn status_watch_redraws_each_change_and_exits_1_when_rolled_back() {
    let (api, ns) = setup("cli-watch").await;
    create_rollout(&api, "fraud-v8").await;
    set_status(&api, "fraud-v8", progressing_status()).await;

    let child = tokio::process::Command::new(support::binary())
        .args(["status", "fraud-v8", "--watch", "--interval", "0.2", "--kubeconfig", path_str(kubeconfig()), "-n", &ns])
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    set_status(&api, "fraud-v8", json!({"phase": "RollingBack", "canaryWeight": 0, "message": "accuracy failed"}))
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    set_status(&api, "fraud-v8", json!({"phase": "RolledBack", "message": "rolled back: accuracy failed"})).await;

    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let frames: Vec<&str> = stdout.split("---\n").collect();
    assert_eq!(frames.len(), 3, "one frame per change, separated by ---:\n{stdout}");
    assert!(frames[0].contains("Phase:    Progressing"), "{stdout}");
    assert!(
        frames[1].contains("Phase:    RollingBack") && frames[1].contains("[--------------------]   0%"),
        "{stdout}"
    );
    assert!(
        frames[2].contains("Phase:    RolledBack") && frames[2].contains("rolled back: accuracy failed"),
        "{stdout}"
    );
}

#[tokio::test]
async fn status_watch_exits_0_when_the_rollout_succeeds() {
    let (api, ns) = setup("cli-watch-ok").await;
    create_rollout(&api, "fraud-v8").await;
    set_status(&api, "fraud-v8", json!({"phase": "Succeeded", "canaryWeight": 100, "currentStep": 5})).await;
    let outcome = rampart(&ns, &["status", "fraud-v8", "--watch"]);
    outcome.expect_code(0);
    assert!(outcome.stdout.contains("Step:     5 of 5: all steps done"), "{}", outcome.stdout);
}

#[tokio::test]
async fn status_of_an_unknown_rollout_exits_2_and_says_how_to_list_them() {
    let (_, ns) = setup("cli-unknown").await;
    let outcome = rampart(&ns, &["status", "nope"]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains(&format!("rampart: ModelRollout {ns}/nope not found")), "{}", outcome.stderr);
    assert!(outcome.stderr.contains(&format!("hint: list the rollouts with `kubectl get modelrollouts -n {ns}`")));
}

#[tokio::test]
async fn a_context_missing_from_the_kubeconfig_exits_2_and_lists_the_known_ones() {
    let (_, ns) = setup("cli-context").await;
    let outcome = rampart(&ns, &["status", "anything", "--context", "production-eu"]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("context `production-eu` is not in kubeconfig"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("(it has: rampart-test)"), "{}", outcome.stderr);
    // The context that exists works.
    rampart(&ns, &["status", "anything", "--context", "rampart-test"]).expect_code(2);
}

#[tokio::test]
async fn kubeconfig_from_the_environment_is_used_like_kubectl() {
    let (api, ns) = setup("cli-env").await;
    create_rollout(&api, "fraud-v8").await;
    let mut command = command(&["status", "fraud-v8", "-n", &ns]);
    command.env("KUBECONFIG", kubeconfig());
    let outcome = run_command(command);
    outcome.expect_code(0);
    assert!(outcome.stdout.contains("fraud-v8"));

    let outcome = support::run(&["status", "fraud-v8"]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("hint: set KUBECONFIG or pass --kubeconfig FILE"), "{}", outcome.stderr);
}

#[tokio::test]
async fn an_unreachable_api_server_exits_2_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(kubeconfig()).unwrap();
    let port = closed_port();
    let mut value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    value["clusters"][0]["cluster"]["server"] = json!(format!("https://127.0.0.1:{port}"));
    let broken = dir.path().join("kubeconfig");
    std::fs::write(&broken, serde_json::to_string(&value).unwrap()).unwrap();
    let outcome = run_command({
        let mut command = command(&["status", "fraud-v8", "--kubeconfig", path_str(&broken)]);
        command.args(["-n", "default"]);
        command
    });
    outcome.expect_code(2);
    assert!(
        outcome.stderr.contains(&format!("cannot reach the Kubernetes API server at https://127.0.0.1:{port}")),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("hint: check that the cluster is up"), "{}", outcome.stderr);
}

#[tokio::test]
async fn a_malformed_kubeconfig_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("kubeconfig");
    std::fs::write(&broken, "clusters: [this is: not: valid").unwrap();
    let outcome = support::run(&["status", "x", "--kubeconfig", path_str(&broken)]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("cannot read kubeconfig"), "{}", outcome.stderr);
}

#[tokio::test]
async fn promote_writes_the_promote_annotation_and_lists_the_skipped_steps() {
    let (api, ns) = setup("cli-promote").await;
    create_rollout(&api, "fraud-v8").await;
    set_status(&api, "fraud-v8", progressing_status()).await;
    let outcome = rampart(&ns, &["promote", "fraud-v8"]);
    outcome.expect_code(0);
    assert!(outcome.stdout.contains("skips the 4 remaining step(s)"), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("promotes v8"), "{}", outcome.stdout);
    let rollout = api.get("fraud-v8").await.unwrap();
    let annotations = rollout.metadata.annotations.unwrap_or_default();
    assert!(annotations.contains_key(ANNOTATION_PROMOTE), "{annotations:?}");
    assert!(!annotations.contains_key(ANNOTATION_ABORT));
}

#[tokio::test]
async fn abort_writes_the_abort_annotation_and_says_traffic_goes_back() {
    let (api, ns) = setup("cli-abort").await;
    create_rollout(&api, "fraud-v8").await;
    set_status(&api, "fraud-v8", progressing_status()).await;
    let outcome = rampart(&ns, &["abort", "fraud-v8"]);
    outcome.expect_code(0);
    assert!(outcome.stdout.contains("canary weight 10%"), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("sets the canary weight to 0"), "{}", outcome.stdout);
    let annotations = api.get("fraud-v8").await.unwrap().metadata.annotations.unwrap_or_default();
    assert!(annotations.contains_key(ANNOTATION_ABORT), "{annotations:?}");
}

#[tokio::test]
async fn promote_or_abort_of_a_finished_rollout_is_refused_and_writes_nothing() {
    let (api, ns) = setup("cli-ended").await;
    create_rollout(&api, "fraud-v8").await;
    set_status(&api, "fraud-v8", json!({"phase": "Succeeded", "canaryWeight": 100})).await;
    for verb in ["promote", "abort"] {
        let outcome = rampart(&ns, &[verb, "fraud-v8"]);
        outcome.expect_code(2);
        assert!(outcome.stderr.contains("has already ended (Succeeded)"), "{}", outcome.stderr);
        assert!(outcome.stderr.contains("hint: start it again with `rampart retry`"), "{}", outcome.stderr);
    }
    assert!(api.get("fraud-v8").await.unwrap().metadata.annotations.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn retry_sets_a_fresh_retry_value_and_clears_abort_and_promote() {
    let (api, ns) = setup("cli-retry").await;
    create_rollout(&api, "fraud-v8").await;
    let annotate =
        json!({"metadata": {"annotations": {ANNOTATION_ABORT: "x", ANNOTATION_PROMOTE: "y", ANNOTATION_RETRY: "old"}}});
    api.patch("fraud-v8", &PatchParams::default(), &Patch::Merge(&annotate)).await.unwrap();
    set_status(&api, "fraud-v8", json!({"phase": "RolledBack", "handledRetry": "old"})).await;

    let outcome = rampart(&ns, &["retry", "fraud-v8"]);
    outcome.expect_code(0);
    assert!(outcome.stdout.contains("starts it again from the first step"), "{}", outcome.stdout);
    let annotations = api.get("fraud-v8").await.unwrap().metadata.annotations.unwrap_or_default();
    let retry = annotations.get(ANNOTATION_RETRY).unwrap().clone();
    assert_ne!(retry, "old", "a retry needs a value the controller has not handled yet");
    assert!(!annotations.contains_key(ANNOTATION_ABORT), "{annotations:?}");
    assert!(!annotations.contains_key(ANNOTATION_PROMOTE), "{annotations:?}");

    set_status(&api, "fraud-v8", json!({"phase": "Failed", "handledRetry": retry})).await;
    rampart(&ns, &["retry", "fraud-v8"]).expect_code(0);
    let again = api.get("fraud-v8").await.unwrap().metadata.annotations.unwrap_or_default();
    assert_ne!(again.get(ANNOTATION_RETRY), Some(&retry), "a second retry gets another value");
}

#[tokio::test]
async fn retry_of_a_running_rollout_is_refused_with_exit_2() {
    let (api, ns) = setup("cli-retry-running").await;
    create_rollout(&api, "fraud-v8").await;
    set_status(&api, "fraud-v8", progressing_status()).await;
    let outcome = rampart(&ns, &["retry", "fraud-v8"]);
    outcome.expect_code(2);
    assert!(
        outcome.stderr.contains("is still Progressing; only a finished rollout can be retried"),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("rampart abort fraud-v8"), "{}", outcome.stderr);
    assert!(api.get("fraud-v8").await.unwrap().metadata.annotations.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn promote_of_an_unknown_rollout_exits_2() {
    let (_, ns) = setup("cli-promote-unknown").await;
    let outcome = rampart(&ns, &["promote", "ghost"]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains(&format!("ModelRollout {ns}/ghost not found")), "{}", outcome.stderr);
}

#[tokio::test]
async fn on_a_terminal_status_draws_a_block_bar_and_watch_redraws_in_place() {
    if !Path::new("/usr/bin/script").is_file() {
        eprintln!("NOTICE: util-linux `script` is missing; cannot give the CLI a terminal, skipping");
        return;
    }
    let (api, ns) = setup("cli-tty").await;
    create_rollout(&api, "fraud-v8").await;
    set_status(&api, "fraud-v8", json!({"phase": "Succeeded", "canaryWeight": 50})).await;
    // `script` runs the command with a pseudo-terminal as its stdout.
    let line = format!(
        "{} status fraud-v8 --watch --kubeconfig {} -n {ns}",
        support::binary().display(),
        kubeconfig().display()
    );
    let output = std::process::Command::new("/usr/bin/script").args(["-qec", &line, "/dev/null"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("[██████████░░░░░░░░░░]  50%"), "{stdout}");
    assert!(stdout.contains("\u{1b}[2J\u{1b}[H"), "watch clears the screen on a terminal: {stdout:?}");
}
