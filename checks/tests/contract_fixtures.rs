//! Every committed fixture pair gives the expected verdict and message, through the library and the CLI.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_checks::contract::{ContractOptions, ContractReport, Dim, ModelFormat, check_contract, read_contract};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

fn compare(candidate: &str, baseline: &str) -> ContractReport {
    check_contract(&fixture(candidate), Some(&fixture(baseline)), &ContractOptions::default()).unwrap()
}

fn breaking(report: &ContractReport) -> Vec<String> {
    report.differences.iter().filter(|d| d.breaking).map(|d| d.message.clone()).collect()
}

#[test]
fn reads_the_residual_mlp_contract_with_a_symbolic_batch_dim() {
    let contract = read_contract(&fixture("residual_mlp.onnx")).unwrap();
    assert_eq!(contract.format, ModelFormat::Onnx);
    assert_eq!(contract.inputs.len(), 1, "initializers are not inputs");
    assert_eq!(contract.inputs[0].name, "features");
    assert_eq!(contract.inputs[0].dtype, "float32");
    assert_eq!(contract.inputs[0].shape, Some(vec![Dim::Symbolic("batch".into()), Dim::Fixed(16)]));
    let outputs: Vec<&str> = contract.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["scores", "embedding"]);
    assert_eq!(contract.opsets, ["ai.onnx:17"]);
}

#[test]
fn a_model_is_compatible_with_itself_at_every_batch_size() {
    for model in ["residual_mlp.onnx", "resnet_small.onnx"] {
        let report = compare(model, model);
        assert!(report.compatible, "{model}: {}", report.to_text());
        assert!(report.differences.is_empty());
        let sizes: Vec<u64> = report.residual_checks.iter().map(|c| c.batch_size).collect();
        assert_eq!(sizes, [1, 8, 64]);
    }
}

#[test]
fn shape_inference_follows_the_resnet_through_its_dynamic_flatten() {
    let report = compare("resnet_small.onnx", "resnet_small.onnx");
    for check in &report.residual_checks {
        let logits = check.outputs.iter().find(|o| o.name == "logits").unwrap();
        assert_eq!(logits.shape, Some(vec![Dim::Fixed(check.batch_size), Dim::Fixed(10)]));
    }
}

#[test]
fn renamed_input_is_breaking_and_names_both_inputs() {
    let report = compare("residual_mlp_renamed_input.onnx", "residual_mlp.onnx");
    assert!(!report.compatible);
    assert_eq!(
        breaking(&report),
        [
            "input \"features\" is missing from the candidate (renamed to \"inputs\"?)",
            "new input \"inputs\" float32 [batch,16]: callers of the baseline do not send it",
        ]
    );
}

#[test]
fn changed_input_dtype_is_breaking() {
    let report = compare("residual_mlp_float16_input.onnx", "residual_mlp.onnx");
    assert!(!report.compatible);
    assert_eq!(breaking(&report), ["input \"features\": dtype float32 -> float16"]);
}

#[test]
fn removed_output_is_breaking() {
    let report = compare("residual_mlp_removed_output.onnx", "residual_mlp.onnx");
    assert!(!report.compatible);
    assert_eq!(breaking(&report), ["output \"embedding\" was removed"]);
}

#[test]
fn new_output_is_a_note_unless_outputs_must_match_exactly() {
    let report = compare("residual_mlp_extra_output.onnx", "residual_mlp.onnx");
    assert!(report.compatible, "{}", report.to_text());
    assert_eq!(report.differences.len(), 1);
    assert!(!report.differences[0].breaking);
    assert_eq!(report.differences[0].message, "new output \"confidence\" float32 [batch,4]");

    let strict = ContractOptions { allow_new_outputs: false, ..ContractOptions::default() };
    let report =
        check_contract(&fixture("residual_mlp_extra_output.onnx"), Some(&fixture("residual_mlp.onnx")), &strict)
            .unwrap();
    assert!(!report.compatible);
}

#[test]
fn fixing_the_batch_dim_breaks_the_contract() {
    let report = compare("resnet_small_fixed_batch.onnx", "resnet_small.onnx");
    assert!(!report.compatible);
    assert_eq!(
        breaking(&report),
        [
            "input \"pixels\": shape [batch,3,16,16] -> [1,3,16,16] (dim 0 was symbolic \"batch\", now fixed 1)",
            "output \"logits\": shape [batch,10] -> [1,10] (dim 0 was symbolic \"batch\", now fixed 1)",
        ]
    );
    // Against a baseline whose batch was dynamic, the pinned batch fails every batch size it excludes.
    assert!(report.residual_checks[0].passed, "batch 1 still fits");
    let at_eight = &report.residual_checks[1];
    assert!(!at_eight.passed);
    assert_eq!(
        at_eight.findings[0].describe(),
        "graph input \"pixels\" (inputs \"pixels\" [1,3,16,16]): the batch axis (axis 0) was dynamic (batch) in the \
         baseline and is fixed to 1 in the candidate, so batch size 8 cannot be taken"
    );
    // Checked alone, a fixed batch is the model's declared contract: a note, not a failure.
    let alone = check_contract(&fixture("resnet_small_fixed_batch.onnx"), None, &ContractOptions::default()).unwrap();
    assert!(alone.compatible, "{}", alone.to_text());
    assert_eq!(
        alone.residual_checks[1].notes,
        [
            "input \"pixels\": its batch axis (axis 0) is fixed to 1, so the model cannot take batch size 8; it was checked with its declared shape"
        ]
    );
}

#[test]
fn broken_projection_shortcut_passes_at_batch_1_and_fails_at_batch_8() {
    let candidate = fixture("resnet_small_batch1_shortcut.onnx");
    let baseline = fixture("resnet_small.onnx");
    let at_one = ContractOptions { batch_sizes: vec![1], ..ContractOptions::default() };
    let report = check_contract(&candidate, Some(&baseline), &at_one).unwrap();
    assert!(report.compatible, "{}", report.to_text());
    assert!(report.differences.is_empty(), "the declared contract is unchanged");

    let at_one_and_eight = ContractOptions { batch_sizes: vec![1, 8], ..ContractOptions::default() };
    let report = check_contract(&candidate, Some(&baseline), &at_one_and_eight).unwrap();
    assert!(!report.compatible);
    assert!(report.residual_checks[0].passed);
    let at_eight = &report.residual_checks[1];
    assert_eq!(at_eight.batch_size, 8);
    assert!(!at_eight.passed);
    assert_eq!(at_eight.findings.len(), 1);
    let finding = &at_eight.findings[0];
    assert_eq!(finding.node, "block_residual_add");
    assert_eq!(finding.op_type, "Add");
    let inputs: Vec<(&str, String)> = finding
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), rampart_checks::contract::shape_text(i.shape.as_deref())))
        .collect();
    assert_eq!(inputs, [("c2", "[8,16,8,8]".to_string()), ("shortcut.reshaped", "[1,16,64,8]".to_string())]);
    assert!(finding.message.contains("axis 2 is 8 in one and 64 in another"), "{}", finding.message);
    assert!(report.problems()[0].starts_with("batch 8: Add \"block_residual_add\""));
}

#[test]
fn safetensors_contracts_compare_weight_names_dtypes_and_shapes() {
    let contract = read_contract(&fixture("mlp_weights.safetensors")).unwrap();
    assert_eq!(contract.format, ModelFormat::Safetensors);
    let names: Vec<&str> = contract.weights.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["head.weight", "stem.weight"]);

    assert!(compare("mlp_weights.safetensors", "mlp_weights.safetensors").compatible);
    let wider = compare("mlp_weights_wider_head.safetensors", "mlp_weights.safetensors");
    assert_eq!(breaking(&wider), ["tensor \"head.weight\": shape [4,32] -> [8,32] (dim 0: 4 -> 8)"]);
    let half = compare("mlp_weights_float16.safetensors", "mlp_weights.safetensors");
    assert_eq!(
        breaking(&half),
        ["tensor \"head.weight\": dtype float32 -> float16", "tensor \"stem.weight\": dtype float32 -> float16"]
    );
    assert!(half.residual_checks.is_empty(), "no graph, no shape inference");
}

#[test]
fn comparing_onnx_with_safetensors_is_a_format_change() {
    let report = compare("mlp_weights.safetensors", "residual_mlp.onnx");
    assert_eq!(breaking(&report), ["model format changed from onnx to safetensors"]);
}

fn rampart_check(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_rampart-check"))
        .args(args)
        .env_remove("RAMPART_TERMINATION_LOG")
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn cli_exits_0_when_compatible_1_when_not_and_2_when_unreadable() {
    let mlp = fixture("residual_mlp.onnx");
    let renamed = fixture("residual_mlp_renamed_input.onnx");
    let (code, stdout, _) =
        rampart_check(&["contract", "--candidate", mlp.to_str().unwrap(), "--baseline", mlp.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("verdict: compatible"));

    let (code, stdout, _) =
        rampart_check(&["contract", "--candidate", renamed.to_str().unwrap(), "--baseline", mlp.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.contains("input \"features\" is missing from the candidate"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("model.onnx");
    std::fs::write(&garbage, b"this is not a model at all").unwrap();
    let (code, stdout, stderr) =
        rampart_check(&["contract", "--candidate", garbage.to_str().unwrap(), "--baseline", mlp.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert!(stderr.contains("is not a readable model"), "{stderr}");
    // Asked for JSON, the caller gets the error as JSON on stdout, not an empty document.
    let (code, stdout, _) = rampart_check(&["contract", "--candidate", garbage.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 2);
    let error: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(error["compatible"], false);
    assert_eq!(error["error"]["kind"], "not_a_model");
    assert!(error["error"]["message"].as_str().unwrap().contains("is not a readable model"), "{stdout}");

    let missing = dir.path().join("missing.onnx");
    let (code, _, stderr) = rampart_check(&["contract", "--candidate", missing.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read model file"), "{stderr}");
}

#[test]
fn cli_json_report_and_termination_message_agree() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let candidate = fixture("resnet_small_batch1_shortcut.onnx");
    let baseline = fixture("resnet_small.onnx");
    let (code, stdout, _) = rampart_check(&[
        "contract",
        "--candidate",
        candidate.to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
        "--batch-sizes",
        "1,8",
        "--format",
        "json",
        "--termination-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    let report: ContractReport = serde_json::from_str(&stdout).unwrap();
    assert!(!report.compatible);
    let message: serde_json::Value = serde_json::from_slice(&std::fs::read(&log).unwrap()).unwrap();
    assert_eq!(message["check"], "contract");
    assert_eq!(message["passed"], false);
    assert!(message["reasons"][0].as_str().unwrap().contains("block_residual_add"));
}

#[test]
fn cli_without_baseline_runs_only_the_shape_checks() {
    let candidate = fixture("resnet_small_batch1_shortcut.onnx");
    let (code, stdout, _) =
        rampart_check(&["contract", "--candidate", candidate.to_str().unwrap(), "--batch-sizes", "1"]);
    assert_eq!(code, 0, "{stdout}");
    let (code, stdout, _) =
        rampart_check(&["contract", "--candidate", candidate.to_str().unwrap(), "--batch-sizes", "8"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("no baseline given"));
}
