//! The smoke evaluator on hand-written metric lines: every threshold fails the run it should, and the
//! CLI's verdict JSON, exit codes and termination message follow.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use rampart_checks::smoke::termination::MAX_TERMINATION_MESSAGE_BYTES;
use rampart_checks::smoke::{MetricLine, SmokeThresholds, SmokeVerdict, evaluate, parse_metrics};

fn run_of(losses: &[f64], grad_norm: f64) -> String {
    losses
        .iter()
        .enumerate()
        .map(|(i, &loss)| {
            MetricLine {
                step: i as u64 + 1,
                loss,
                grad_norm: Some(grad_norm),
                step_time_s: Some(0.05),
                gpu_mem_bytes: Some(1 << 30),
            }
            .to_json_line()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn falling(steps: usize) -> Vec<f64> {
    (0..steps).map(|i| 1.0 / (1.0 + i as f64 * 0.1)).collect()
}

fn judge(text: &str) -> SmokeVerdict {
    evaluate(&parse_metrics(text), &SmokeThresholds::default())
}

fn failed_checks(verdict: &SmokeVerdict) -> Vec<&str> {
    verdict.checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect()
}

#[test]
fn a_healthy_run_passes_every_check() {
    let verdict = judge(&run_of(&falling(50), 2.0));
    assert!(verdict.passed, "{:?}", verdict.reasons);
    assert!(verdict.reasons.is_empty());
    assert_eq!(verdict.stats.steps, 50);
    assert_eq!(verdict.stats.window, 10);
}

#[test]
fn a_nan_loss_fails_and_says_at_which_step() {
    let mut losses = falling(40);
    losses[17] = f64::NAN;
    let verdict = judge(&run_of(&losses, 2.0));
    assert!(!verdict.passed);
    assert_eq!(failed_checks(&verdict), ["finite"]);
    assert_eq!(verdict.reasons, ["loss is NaN at step 18 (1 non-finite value(s) in all)"]);
}

#[test]
fn a_rising_loss_fails_the_trend_check() {
    let losses: Vec<f64> = (0..40).map(|i| 1.0 + i as f64 * 0.05).collect();
    let verdict = judge(&run_of(&losses, 2.0));
    assert_eq!(failed_checks(&verdict), ["loss_trend"]);
    assert!(verdict.reasons[0].starts_with("loss did not fall enough"), "{}", verdict.reasons[0]);
}

#[test]
fn a_gradient_blow_up_fails_the_grad_norm_bound() {
    let verdict = judge(&run_of(&falling(40), 250.0));
    assert_eq!(failed_checks(&verdict), ["max_grad_norm"]);
    assert!(verdict.reasons[0].contains("250.000000 at step 1 exceeds the bound 100"), "{}", verdict.reasons[0]);
}

#[test]
fn step_time_and_memory_budgets_are_enforced_when_set() {
    let thresholds = SmokeThresholds {
        max_median_step_time_s: Some(0.01),
        max_gpu_mem_bytes: Some(1 << 20),
        ..SmokeThresholds::default()
    };
    let verdict = evaluate(&parse_metrics(&run_of(&falling(30), 1.0)), &thresholds);
    assert_eq!(failed_checks(&verdict), ["median_step_time", "peak_gpu_memory"]);
    assert_eq!(verdict.stats.peak_gpu_mem_bytes, Some(1 << 30));

    let roomy = SmokeThresholds {
        max_median_step_time_s: Some(1.0),
        max_gpu_mem_bytes: Some(2 << 30),
        ..SmokeThresholds::default()
    };
    assert!(evaluate(&parse_metrics(&run_of(&falling(30), 1.0)), &roomy).passed);
}

#[test]
fn vanishing_gradients_fail_the_optional_lower_bound() {
    let thresholds = SmokeThresholds { min_grad_norm: Some(1e-3), max_loss_ratio: None, ..SmokeThresholds::default() };
    let verdict = evaluate(&parse_metrics(&run_of(&vec![1.0; 30], 1e-6)), &thresholds);
    assert_eq!(failed_checks(&verdict), ["min_grad_norm"]);
    assert!(verdict.reasons[0].starts_with("gradients vanished"));
}

#[test]
fn no_metrics_and_cut_off_lines_fail_with_reasons() {
    let verdict = judge("starting training\nCUDA out of memory\n");
    assert!(!verdict.passed);
    assert!(failed_checks(&verdict).contains(&"steps"));

    let mut text = run_of(&falling(30), 1.0);
    text.push_str("\n{\"step\": 31, \"loss\": 0.2, \"grad_n");
    let verdict = judge(&text);
    assert_eq!(failed_checks(&verdict), ["readable"]);
    assert!(verdict.reasons[0].contains("at line 31"), "{}", verdict.reasons[0]);
}

#[test]
fn short_runs_use_half_their_steps_as_the_window() {
    let verdict = judge(&run_of(&falling(6), 1.0));
    assert_eq!(verdict.stats.window, 3);
    assert!(verdict.passed, "{:?}", verdict.reasons);
}

fn rampart_check(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_rampart-check"))
        .args(args)
        .env_remove("RAMPART_TERMINATION_LOG")
        .output()
        .unwrap();
    (output.status.code().unwrap(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn cli_prints_the_verdict_and_exits_0_on_pass_1_on_fail_2_when_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, run_of(&falling(30), 1.0)).unwrap();
    let (code, stdout) = rampart_check(&["smoke-eval", "--metrics", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
    let verdict: SmokeVerdict = serde_json::from_str(&stdout).unwrap();
    assert!(verdict.passed);

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, run_of(&falling(30), 1.0)).unwrap();
    let log = dir.path().join("termination-log");
    let (code, stdout) = rampart_check(&[
        "smoke-eval",
        "--metrics",
        bad.to_str().unwrap(),
        "--max-gpu-mem",
        "512Mi",
        "--termination-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}");
    let message: serde_json::Value = serde_json::from_slice(&std::fs::read(&log).unwrap()).unwrap();
    assert_eq!(message["check"], "smoke-eval");
    assert_eq!(message["passed"], false);
    assert!(message["reasons"][0].as_str().unwrap().contains("exceeds the budget 536870912"));

    let (code, _) = rampart_check(&["smoke-eval", "--metrics", dir.path().join("missing").to_str().unwrap()]);
    assert_eq!(code, 2);
}

#[test]
fn termination_message_stays_under_4_kib_for_a_run_with_every_line_malformed() {
    let text: String = (0..5000).map(|i| format!("{{\"step\": {i}, \"loss\": \"{}\"}}\n", "x".repeat(200))).collect();
    let verdict = judge(&text);
    assert!(!verdict.passed);
    let json = verdict.termination_message().to_json();
    assert!(json.len() < MAX_TERMINATION_MESSAGE_BYTES, "{}", json.len());
}
