//! The commands that need neither cluster nor database: validate against a file, sign, verify, analyze,
//! completions, help, and the kubectl plugin name. Each runs the real binary.
#![allow(clippy::unwrap_used)]

mod support;

use support::{key_pair, model_dir, model_fixture, path_str, run};

#[test]
fn help_lists_every_command_with_examples_and_exit_codes() {
    let outcome = run(&["--help"]);
    outcome.expect_code(0);
    for command in
        ["validate", "sign", "verify", "register", "status", "promote", "abort", "retry", "history", "analyze"]
    {
        assert!(outcome.stdout.contains(command), "--help does not list {command}:\n{}", outcome.stdout);
    }
    assert!(outcome.stdout.contains("Examples:"));
    assert!(outcome.stdout.contains("Exit codes: 0 success, 1"));
}

#[test]
fn an_unknown_flag_is_a_usage_error_with_exit_2() {
    let outcome = run(&["status", "x", "--frobnicate"]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("--frobnicate"), "{}", outcome.stderr);
}

#[test]
fn completions_for_bash_zsh_and_fish_know_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let outcome = run(&["completions", shell]);
        outcome.expect_code(0);
        assert!(outcome.stdout.contains("promote"), "{shell} completion lacks `promote`");
        assert!(outcome.stdout.contains("rampart"), "{shell} completion does not name the program");
    }
    run(&["completions", "tcsh"]).expect_code(2);
}

#[test]
fn installed_as_kubectl_rampart_it_speaks_as_the_kubectl_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-rampart");
    std::os::unix::fs::symlink(support::binary(), &plugin).unwrap();
    let mut command = std::process::Command::new(&plugin);
    command.arg("--help");
    let outcome = support::run_command(command);
    outcome.expect_code(0);
    assert!(outcome.stdout.contains("Usage: kubectl rampart"), "{}", outcome.stdout);

    let mut command = std::process::Command::new(&plugin);
    command.args(["status", "x", "--kubeconfig", "/nonexistent/kubeconfig"]);
    let outcome = support::run_command(command);
    outcome.expect_code(2);
    assert!(outcome.stderr.starts_with("kubectl rampart: "), "{}", outcome.stderr);
}

#[test]
fn validate_passes_a_model_against_itself_with_exit_0() {
    let model = model_fixture("residual_mlp.onnx");
    let outcome = run(&["validate", "--candidate", path_str(&model), "--baseline", path_str(&model)]);
    outcome.expect_code(0);
    assert!(outcome.stdout.contains("contract: same as the baseline"), "{}", outcome.stdout);
    assert!(outcome.stdout.contains("verdict: compatible"));
    assert!(outcome.stdout.contains("batch 64: all nodes fit"));
}

#[test]
fn validate_fails_a_renamed_input_with_exit_1_and_names_both_inputs() {
    let candidate = model_fixture("residual_mlp_renamed_input.onnx");
    let baseline = model_fixture("residual_mlp.onnx");
    let outcome = run(&["validate", "--candidate", path_str(&candidate), "--baseline", path_str(&baseline)]);
    outcome.expect_code(1);
    assert!(
        outcome.stdout.contains("[breaking] input \"features\" is missing from the candidate"),
        "{}",
        outcome.stdout
    );
    assert!(outcome.stdout.contains("verdict: INCOMPATIBLE"));
}

#[test]
fn validate_json_report_carries_the_verdict_and_the_problems() {
    let candidate = model_fixture("residual_mlp_removed_output.onnx");
    let baseline = model_fixture("residual_mlp.onnx");
    let outcome = run(&[
        "validate",
        "--candidate",
        path_str(&candidate),
        "--baseline",
        path_str(&baseline),
        "--format",
        "json",
        "--batch-sizes",
        "2,4",
    ]);
    outcome.expect_code(1);
    let report: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(report["compatible"], false);
    assert_eq!(report["problems"][0], "output \"embedding\" was removed");
    let sizes: Vec<u64> =
        report["residual_checks"].as_array().unwrap().iter().map(|c| c["batch_size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [2, 4]);
}

#[test]
fn validate_junit_report_has_one_case_per_check_and_marks_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("reports-contract.xml");
    let candidate = model_fixture("residual_mlp_float16_input.onnx");
    let baseline = model_fixture("residual_mlp.onnx");
    let outcome = run(&[
        "validate",
        "--candidate",
        path_str(&candidate),
        "--baseline",
        path_str(&baseline),
        "--format",
        "junit",
        "--output",
        path_str(&report_path),
    ]);
    outcome.expect_code(1);
    assert!(outcome.stderr.contains("INCOMPATIBLE"), "{}", outcome.stderr);
    let xml = std::fs::read_to_string(&report_path).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert!(xml.contains("<testsuites name=\"rampart validate\" tests=\"4\" failures=\"1\""), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 4, "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
    assert!(xml.contains("input &quot;features&quot;: dtype float32 -&gt; float16"), "{xml}");
}

#[test]
fn validate_a_file_that_is_not_a_model_exits_2_and_says_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("model.onnx");
    std::fs::write(&garbage, b"\x08\x07\xff\xff\xff garbage").unwrap();
    let baseline = model_fixture("residual_mlp.onnx");
    let outcome = run(&["validate", "--candidate", path_str(&garbage), "--baseline", path_str(&baseline)]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("cannot read the candidate model"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("hint: give an ONNX model file or a safetensors file"), "{}", outcome.stderr);

    let missing = dir.path().join("missing.onnx");
    let outcome = run(&["validate", "--candidate", path_str(&baseline), "--baseline", path_str(&missing)]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("cannot read the baseline model"), "{}", outcome.stderr);

    // A CI job that asked for JSON parses stdout: it gets the error there, not an empty document.
    let outcome =
        run(&["validate", "--candidate", path_str(&garbage), "--baseline", path_str(&baseline), "--format", "json"]);
    outcome.expect_code(2);
    let error: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(error["compatible"], false);
    assert_eq!(error["error"]["kind"], "not_a_model");
    assert_eq!(error["error"]["role"], "candidate");
}

#[test]
fn validate_without_a_baseline_is_a_usage_error() {
    let model = model_fixture("residual_mlp.onnx");
    let outcome = run(&["validate", "--candidate", path_str(&model)]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("--baseline"), "{}", outcome.stderr);
}

#[test]
fn validate_refuses_a_zero_batch_size() {
    let model = model_fixture("residual_mlp.onnx");
    let outcome =
        run(&["validate", "--candidate", path_str(&model), "--baseline", path_str(&model), "--batch-sizes", "0"]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("--batch-sizes must be between 1 and 65536"), "{}", outcome.stderr);
}

#[test]
fn a_signed_model_verifies_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = key_pair(dir.path(), "signer", 3);
    let model = model_dir(dir.path());
    let signed = run(&["sign", "--key", path_str(&private), path_str(&model)]);
    signed.expect_code(0);
    let bundle = dir.path().join("model.sig");
    assert!(bundle.is_file(), "sign writes MODEL_PATH.sig by default: {}", signed.stdout);
    let digest_line = signed.stdout.lines().find(|l| l.starts_with("model digest: sha256:")).unwrap();
    let digest = digest_line.trim_start_matches("model digest: ");

    let verified = run(&[
        "verify",
        "--key",
        path_str(&public),
        "--bundle",
        path_str(&bundle),
        "--expected-digest",
        digest,
        path_str(&model),
    ]);
    verified.expect_code(0);
    assert!(verified.stdout.contains(&format!("model digest: {digest}")), "{}", verified.stdout);

    let json = run(&[
        "verify",
        "--key",
        path_str(&public),
        "--bundle",
        path_str(&bundle),
        "--format",
        "json",
        path_str(&model),
    ]);
    json.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["verified"], true);
    assert_eq!(value["modelDigest"], digest);
}

#[test]
fn a_changed_file_fails_verification_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = key_pair(dir.path(), "signer", 3);
    let model = model_dir(dir.path());
    let bundle = dir.path().join("v1.sig");
    run(&["sign", "--key", path_str(&private), "--out", path_str(&bundle), path_str(&model)]).expect_code(0);
    std::fs::write(model.join("weights.bin"), vec![8u8; 4096]).unwrap();
    let outcome = run(&["verify", "--key", path_str(&public), "--bundle", path_str(&bundle), path_str(&model)]);
    outcome.expect_code(1);
    assert!(outcome.stderr.contains("NOT VERIFIED"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("weights.bin"), "{}", outcome.stderr);
}

#[test]
fn a_bundle_from_an_untrusted_key_fails_verification_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = key_pair(dir.path(), "stranger", 5);
    let (_, trusted) = key_pair(dir.path(), "team", 6);
    let model = model_dir(dir.path());
    let bundle = dir.path().join("v1.sig");
    run(&["sign", "--key", path_str(&private), "--out", path_str(&bundle), path_str(&model)]).expect_code(0);
    let outcome = run(&["verify", "--key", path_str(&trusted), "--bundle", path_str(&bundle), path_str(&model)]);
    outcome.expect_code(1);
    assert!(outcome.stderr.contains("NOT VERIFIED"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("hint: re-sign the model with a trusted key"), "{}", outcome.stderr);
}

#[test]
fn a_malformed_bundle_is_not_verified_and_a_missing_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = key_pair(dir.path(), "team", 6);
    let model = model_dir(dir.path());
    let bundle = dir.path().join("broken.sig");
    std::fs::write(&bundle, b"{ not json").unwrap();
    let outcome = run(&["verify", "--key", path_str(&public), "--bundle", path_str(&bundle), path_str(&model)]);
    outcome.expect_code(1);
    assert!(outcome.stderr.contains("NOT VERIFIED"), "{}", outcome.stderr);

    let missing = dir.path().join("missing.sig");
    let outcome = run(&["verify", "--key", path_str(&public), "--bundle", path_str(&missing), path_str(&model)]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains(&format!("cannot read {}", missing.display())), "{}", outcome.stderr);
}

#[test]
fn signing_with_a_malformed_key_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n").unwrap();
    let model = model_dir(dir.path());
    let outcome = run(&["sign", "--key", path_str(&key), path_str(&model)]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains(&format!("cannot use key {}", key.display())), "{}", outcome.stderr);
}

fn analysis_example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../analysis/tests/data/analyze-input.json")
}

#[test]
fn analyze_reports_the_fail_decision_of_the_example_and_exits_1() {
    let outcome = run(&["analyze", "--input", path_str(&analysis_example())]);
    outcome.expect_code(1);
    let report: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(report["apiVersion"], "rampart.dev/analysis/v1");
    assert_eq!(report["decision"]["verdict"], "Fail");
    // The per-look engine (issue 14) catches the example's 5-point drop one look earlier than the pooled one did.
    assert_eq!(report["decision"]["look"], 5);

    let text = run(&["analyze", "--input", path_str(&analysis_example()), "--format", "text"]);
    text.expect_code(1);
    assert!(text.stdout.contains("decision: Fail at look 5: accuracy failed"), "{}", text.stdout);
}

#[test]
fn analyze_passes_while_no_look_has_failed() {
    let text = std::fs::read_to_string(analysis_example()).unwrap();
    let mut document: serde_json::Value = serde_json::from_str(&text).unwrap();
    let intervals = document["intervals"].as_array_mut().unwrap();
    intervals.truncate(1);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("first-look.json");
    std::fs::write(&input, document.to_string()).unwrap();
    let outcome = run(&["analyze", "--input", path_str(&input)]);
    outcome.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert!(report.get("decision").is_none(), "{report}");
    assert_eq!(report["verdicts"].as_array().unwrap().len(), 1);
}

#[test]
fn analyze_rejects_a_malformed_document_with_exit_2_and_points_at_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.json");
    std::fs::write(&input, r#"{"apiVersion": "rampart.dev/analysis/v1", "intervals": 3}"#).unwrap();
    let outcome = run(&["analyze", "--input", path_str(&input)]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("is not an analysis document"), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("analysis-document.schema.json"), "{}", outcome.stderr);

    let outcome = run(&["analyze", "--input", path_str(&dir.path().join("missing.json"))]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("cannot read"), "{}", outcome.stderr);
}
