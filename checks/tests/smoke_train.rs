//! Real runs of the reference trainer on CPU, judged by the evaluator: a healthy residual run passes,
//! a too-high learning rate blows up, and removing the residual connections stalls training.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use rampart_checks::smoke::{MetricLine, SmokeThresholds, SmokeVerdict, TrainConfig, evaluate, parse_metrics, train};

/// Trains and evaluates through the same text the protocol carries.
fn train_and_judge(config: &TrainConfig) -> SmokeVerdict {
    let mut text = String::new();
    let summary = train(config, |line: &MetricLine| {
        text.push_str(&line.to_json_line());
        text.push('\n');
        Ok(())
    })
    .unwrap();
    assert_eq!(summary.steps, config.steps);
    assert_eq!(text.lines().count() as u64, config.steps);
    evaluate(&parse_metrics(&text), &SmokeThresholds::default())
}

fn failed_checks(verdict: &SmokeVerdict) -> Vec<&str> {
    verdict.checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect()
}

#[test]
fn residual_mlp_with_the_default_learning_rate_passes() {
    let verdict = train_and_judge(&TrainConfig { steps: 80, ..TrainConfig::default() });
    assert!(verdict.passed, "{:?}", verdict.reasons);
    let (first, last) = (verdict.stats.first_loss_mean.unwrap(), verdict.stats.last_loss_mean.unwrap());
    assert!(last < first, "loss fell: {first} -> {last}");
}

#[test]
fn a_high_learning_rate_blows_up_and_is_caught() {
    let verdict = train_and_judge(&TrainConfig { steps: 40, learning_rate: 2.0, ..TrainConfig::default() });
    assert!(!verdict.passed);
    let failed = failed_checks(&verdict);
    assert!(failed.contains(&"finite"), "{failed:?}");
    assert!(failed.contains(&"max_grad_norm"), "{failed:?}");
    assert!(verdict.reasons.iter().any(|r| r.contains("gradient norm blew up")), "{:?}", verdict.reasons);
}

#[test]
fn removing_the_residual_connections_stalls_training_and_is_caught() {
    let verdict = train_and_judge(&TrainConfig { steps: 80, residual: false, ..TrainConfig::default() });
    assert!(!verdict.passed);
    assert_eq!(failed_checks(&verdict), ["loss_trend"], "{:?}", verdict.reasons);
    // Gradients reaching the weights are much smaller than in the residual network.
    let residual = train_and_judge(&TrainConfig { steps: 80, ..TrainConfig::default() });
    assert!(verdict.stats.max_grad_norm.unwrap() < residual.stats.max_grad_norm.unwrap());
}

#[test]
fn training_is_reproducible_for_a_seed() {
    let collect = |seed| {
        let mut losses = Vec::new();
        train(&TrainConfig { steps: 5, seed, ..TrainConfig::default() }, |line| {
            losses.push(line.loss);
            Ok(())
        })
        .unwrap();
        losses
    };
    assert_eq!(collect(7), collect(7));
    assert_ne!(collect(7), collect(8));
}

#[test]
fn invalid_configuration_is_an_error_not_a_panic() {
    for config in [
        TrainConfig { depth: 0, ..TrainConfig::default() },
        TrainConfig { learning_rate: f64::NAN, ..TrainConfig::default() },
        TrainConfig { batch_size: usize::MAX, ..TrainConfig::default() },
    ] {
        assert!(train(&config, |_| Ok(())).is_err());
    }
}

#[test]
fn cli_train_output_feeds_smoke_eval() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_rampart-check");
    let run = |name: &str, extra: &[&str]| -> i32 {
        let metrics = dir.path().join(name);
        let status = Command::new(bin)
            .args(["train", "--steps", "60", "--metrics-out", metrics.to_str().unwrap()])
            .args(extra)
            .status()
            .unwrap();
        assert!(status.success());
        Command::new(bin)
            .args(["smoke-eval", "--metrics", metrics.to_str().unwrap()])
            .env_remove("RAMPART_TERMINATION_LOG")
            .output()
            .unwrap()
            .status
            .code()
            .unwrap()
    };
    assert_eq!(run("healthy.jsonl", &[]), 0);
    assert_eq!(run("exploding.jsonl", &["--lr", "2.0"]), 1);
    assert_eq!(run("plain.jsonl", &["--no-residual"]), 1);
    let status = Command::new(bin).args(["train", "--device", "cuda", "--steps", "1"]).output().unwrap();
    assert_eq!(status.status.code(), Some(2), "no CUDA in the default build");
}

#[test]
fn a_run_starts_from_the_weights_it_is_given_and_refuses_a_model_of_another_shape() {
    let dir = tempfile::tempdir().unwrap();
    let losses = |config: &TrainConfig| {
        let mut losses = Vec::new();
        train(config, |line| {
            losses.push(line.loss);
            Ok(())
        })
        .unwrap();
        losses
    };
    // The seed-7 model saved, then loaded into a seed-8 run: the first step's loss is that of the seed-7 model on
    // seed-8 data, so it differs from a plain seed-8 run.
    let saved = dir.path().join("seed7.safetensors");
    rampart_checks::smoke::save_initial_weights(&TrainConfig { seed: 7, ..TrainConfig::default() }, &saved).unwrap();
    let plain = losses(&TrainConfig { steps: 3, seed: 8, ..TrainConfig::default() });
    let loaded = losses(&TrainConfig { steps: 3, seed: 8, init_from: Some(saved.clone()), ..TrainConfig::default() });
    assert_ne!(plain[0], loaded[0], "the loaded weights were used");
    // Loading a seed-8 model into a seed-8 run changes nothing: what is saved is exactly the model trained.
    let same = dir.path().join("seed8.safetensors");
    rampart_checks::smoke::save_initial_weights(&TrainConfig { seed: 8, ..TrainConfig::default() }, &same).unwrap();
    assert_eq!(losses(&TrainConfig { steps: 3, seed: 8, init_from: Some(same), ..TrainConfig::default() }), plain);

    let shallow = dir.path().join("depth2.safetensors");
    rampart_checks::smoke::save_initial_weights(&TrainConfig { depth: 2, ..TrainConfig::default() }, &shallow).unwrap();
    let err = train(&TrainConfig { init_from: Some(shallow), ..TrainConfig::default() }, |_| Ok(())).unwrap_err();
    assert!(err.to_string().contains("has no tensor \"blocks.2.0.weight\""), "{err}");
    let narrow = dir.path().join("hidden8.safetensors");
    rampart_checks::smoke::save_initial_weights(&TrainConfig { hidden: 8, ..TrainConfig::default() }, &narrow).unwrap();
    let err = train(&TrainConfig { init_from: Some(narrow), ..TrainConfig::default() }, |_| Ok(())).unwrap_err();
    assert!(err.to_string().contains("has shape [16, 8], the model needs [16, 64]"), "{err}");
    let missing =
        train(&TrainConfig { init_from: Some(dir.path().join("nope")), ..TrainConfig::default() }, |_| Ok(()));
    assert!(missing.unwrap_err().to_string().contains("cannot read the model to start from"));
}
