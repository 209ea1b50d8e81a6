//! Behaviour of step verdicts as the controller sees them: early Fail and Pass, waiting for samples, unequal
//! traffic, latency histograms, sample ratio mismatch, Holm–Bonferroni, and bad data that must never panic.

#![allow(clippy::unwrap_used)]

use rampart_analysis::{
    AnalysisConfig, AnalysisError, AnalysisState, ArmCounts, ArmPair, Bucket, Direction, MetricConfig, MetricKind,
    MetricObservation, StepInput, Tolerance, Verdict, evaluate_step,
};

fn metric(name: &str, kind: MetricKind, tolerance: Tolerance) -> MetricConfig {
    MetricConfig { name: name.into(), kind, tolerance, min_samples: None }
}

fn accuracy(tolerance: f64) -> MetricConfig {
    metric("accuracy", MetricKind::Ratio { direction: Direction::HigherIsBetter }, Tolerance::Absolute(tolerance))
}

fn ratio(successes: f64, trials: f64) -> ArmCounts {
    ArmCounts::Ratio { successes, trials }
}

fn observation(name: &str, canary: ArmCounts, baseline: ArmCounts) -> MetricObservation {
    MetricObservation { name: name.into(), canary, baseline }
}

fn input(metrics: Vec<MetricObservation>) -> StepInput {
    StepInput { configured_canary_weight: 0.1, requests: None, metrics, final_look: false }
}

fn latency_metric() -> MetricConfig {
    metric(
        "latency",
        MetricKind::Latency { quantile: 0.95, threshold_slack: 0.1, threshold_seconds: None },
        Tolerance::Absolute(0.0),
    )
}

/// Cumulative buckets from per-bucket counts over `bounds` (+Inf appended).
fn histogram(bounds: &[f64], counts: &[f64]) -> ArmCounts {
    let mut acc = 0.0;
    ArmCounts::Histogram {
        buckets: counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                acc += c;
                Bucket { le: bounds.get(i).copied().unwrap_or(f64::INFINITY), count: acc }
            })
            .collect(),
    }
}

#[test]
fn rolls_back_when_canary_accuracy_drops_five_points() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let outcome = evaluate_step(
        &config,
        &input(vec![observation("accuracy", ratio(850.0, 1000.0), ratio(8100.0, 9000.0))]),
        None,
    )
    .unwrap();
    let v = &outcome.verdict;
    assert_eq!(v.verdict, Verdict::Fail, "{}", v.reason);
    let m = &v.metrics[0];
    assert!(m.upper_bound.unwrap() < 0.0);
    assert!(m.always_valid_p <= 0.05);
    assert!((m.effect.unwrap() - (-0.05)).abs() < 1e-12);
    assert!(v.reason.contains("accuracy failed"), "{}", v.reason);
}

#[test]
fn passes_a_canary_that_matches_the_baseline_within_tolerance() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.02)]);
    let outcome = evaluate_step(
        &config,
        &input(vec![observation("accuracy", ratio(9000.0, 10000.0), ratio(81000.0, 90000.0))]),
        None,
    )
    .unwrap();
    assert_eq!(outcome.verdict.verdict, Verdict::Pass, "{}", outcome.verdict.reason);
    assert!(outcome.verdict.metrics[0].lower_bound.unwrap() > -0.02);
}

#[test]
fn continues_without_verdict_until_each_arm_has_the_minimum_samples() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    // A dramatic drop, but only 50 canary samples: no verdict yet.
    let outcome =
        evaluate_step(&config, &input(vec![observation("accuracy", ratio(10.0, 50.0), ratio(4050.0, 4500.0))]), None)
            .unwrap();
    assert_eq!(outcome.verdict.verdict, Verdict::Continue);
    assert!(
        outcome.verdict.metrics[0].reason.contains("waiting for 100 samples"),
        "{}",
        outcome.verdict.metrics[0].reason
    );
}

#[test]
fn judges_a_five_percent_canary_against_a_large_baseline() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let mut step = input(vec![observation("accuracy", ratio(440.0, 500.0), ratio(8550.0, 9500.0))]);
    step.configured_canary_weight = 0.05;
    let m = evaluate_step(&config, &step, None).unwrap().verdict.metrics.remove(0);
    // 88% against 90%: the sequence must reflect the canary's 500 samples, not the baseline's 9500.
    let width = m.upper_bound.unwrap() - m.lower_bound.unwrap();
    let canary_se = (0.88_f64 * 0.12 / 500.0).sqrt();
    assert!(width > 4.0 * canary_se, "width {width} is narrower than the canary's own uncertainty allows");
    assert_eq!(m.verdict, Verdict::Continue);
}

#[test]
fn fails_an_error_rate_that_rises_when_lower_is_better() {
    let config = AnalysisConfig::with_metrics(vec![metric(
        "error-rate",
        MetricKind::Ratio { direction: Direction::LowerIsBetter },
        Tolerance::Absolute(0.005),
    )]);
    let outcome =
        evaluate_step(&config, &input(vec![observation("error-rate", ratio(60.0, 1000.0), ratio(90.0, 9000.0))]), None)
            .unwrap();
    assert_eq!(outcome.verdict.verdict, Verdict::Fail, "{}", outcome.verdict.reason);
    assert!(outcome.verdict.metrics[0].lower_bound.unwrap() > 0.005);
}

#[test]
fn relative_tolerance_scales_with_the_baseline() {
    let config = AnalysisConfig::with_metrics(vec![metric(
        "accuracy",
        MetricKind::Ratio { direction: Direction::HigherIsBetter },
        Tolerance::Relative(0.05),
    )]);
    let m = evaluate_step(
        &config,
        &input(vec![observation("accuracy", ratio(9000.0, 10000.0), ratio(72000.0, 80000.0))]),
        None,
    )
    .unwrap()
    .verdict
    .metrics
    .remove(0);
    assert!((m.margin.unwrap() - 0.045).abs() < 1e-12);
    assert_eq!(m.verdict, Verdict::Pass, "{}", m.reason);
}

fn mean_counts(mean: f64, sd: f64, n: f64) -> ArmCounts {
    let sum = mean * n;
    ArmCounts::Mean { sum, sum_sq: sd * sd * (n - 1.0) + sum * sum / n, count: n }
}

#[test]
fn fails_a_mean_metric_that_is_clearly_worse_and_reports_welch_for_reference() {
    let config = AnalysisConfig::with_metrics(vec![metric(
        "tokens-per-second",
        MetricKind::Mean { direction: Direction::HigherIsBetter },
        Tolerance::Relative(0.02),
    )]);
    let outcome = evaluate_step(
        &config,
        &input(vec![observation(
            "tokens-per-second",
            mean_counts(90.0, 10.0, 400.0),
            mean_counts(100.0, 10.0, 3600.0),
        )]),
        None,
    )
    .unwrap();
    assert_eq!(outcome.verdict.verdict, Verdict::Fail, "{}", outcome.verdict.reason);
    assert!(outcome.verdict.metrics[0].welch.unwrap().statistic < -10.0);
}

#[test]
fn a_mean_without_any_variation_is_inconclusive_not_a_panic() {
    let config = AnalysisConfig::with_metrics(vec![metric(
        "m",
        MetricKind::Mean { direction: Direction::HigherIsBetter },
        Tolerance::Absolute(0.0),
    )]);
    let flat = ArmCounts::Mean { sum: 500.0, sum_sq: 500.0, count: 500.0 };
    let outcome = evaluate_step(&config, &input(vec![observation("m", flat.clone(), flat)]), None).unwrap();
    assert_eq!(outcome.verdict.verdict, Verdict::Inconclusive);
    assert!(outcome.verdict.reason.contains("no variation"), "{}", outcome.verdict.reason);
}

const BOUNDS: [f64; 8] = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.6];

#[test]
fn fails_latency_when_the_canary_has_many_more_slow_requests() {
    let config = AnalysisConfig::with_metrics(vec![latency_metric()]);
    let baseline = histogram(&BOUNDS, &[900.0, 3600.0, 2700.0, 1350.0, 450.0, 0.0, 0.0, 0.0, 0.0]);
    let canary = histogram(&BOUNDS, &[50.0, 250.0, 300.0, 200.0, 100.0, 60.0, 40.0, 0.0, 0.0]);
    let outcome = evaluate_step(&config, &input(vec![observation("latency", canary, baseline)]), None).unwrap();
    assert_eq!(outcome.verdict.verdict, Verdict::Fail, "{}", outcome.verdict.reason);
    let detail = outcome.verdict.metrics[0].latency.clone().unwrap();
    assert_eq!(detail.threshold_seconds, Some(0.25));
    let mw = detail.mann_whitney.unwrap();
    assert!(mw.z > 0.0 && mw.hodges_lehmann.unwrap() > 0.0, "canary should rank slower: {mw:?}");
}

#[test]
fn keeps_the_latency_threshold_fixed_across_looks() {
    let config = AnalysisConfig::with_metrics(vec![latency_metric()]);
    let first_baseline = histogram(&BOUNDS, &[100.0, 400.0, 300.0, 150.0, 50.0, 0.0, 0.0, 0.0, 0.0]);
    let step = input(vec![observation("latency", first_baseline.clone(), first_baseline)]);
    let first = evaluate_step(&config, &step, None).unwrap();
    let threshold = first.state.metrics["latency"].latency_threshold.unwrap();
    // The baseline slows down later; the threshold chosen at the first look stays.
    let slower = histogram(&BOUNDS, &[100.0, 400.0, 300.0, 150.0, 50.0, 500.0, 500.0, 0.0, 0.0]);
    let second =
        evaluate_step(&config, &input(vec![observation("latency", slower.clone(), slower)]), Some(&first.state))
            .unwrap();
    assert_eq!(second.verdict.metrics[0].latency.clone().unwrap().threshold_seconds, Some(threshold));
}

#[test]
fn fails_the_step_when_traffic_does_not_reach_the_canary_as_configured() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let mut step = input(vec![observation("accuracy", ratio(270.0, 300.0), ratio(8730.0, 9700.0))]);
    step.requests = Some(ArmPair { canary: 300.0, baseline: 9700.0 });
    let outcome = evaluate_step(&config, &step, None).unwrap();
    assert_eq!(outcome.verdict.verdict, Verdict::Fail);
    assert!(
        outcome.verdict.reason.contains("traffic is not reaching the canary as configured"),
        "{}",
        outcome.verdict.reason
    );
    assert!(outcome.verdict.srm.unwrap().test.unwrap().p_value < 0.001);
}

#[test]
fn does_not_flag_a_traffic_split_that_matches_the_weight() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let mut step = input(vec![observation("accuracy", ratio(900.0, 1000.0), ratio(8100.0, 9000.0))]);
    step.requests = Some(ArmPair { canary: 1010.0, baseline: 8990.0 });
    let srm = evaluate_step(&config, &step, None).unwrap().verdict.srm.unwrap();
    assert_eq!(srm.verdict, Verdict::Pass, "{}", srm.reason);
}

#[test]
fn holm_bonferroni_holds_back_a_borderline_failure_among_three_metrics() {
    // Find a canary count whose single-metric fail p lies between alpha/3 and alpha.
    let single = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let p_for = |successes: f64| {
        evaluate_step(
            &single,
            &input(vec![observation("accuracy", ratio(successes, 2000.0), ratio(18000.0, 20000.0))]),
            None,
        )
        .unwrap()
        .verdict
        .metrics[0]
            .always_valid_p
    };
    let successes = (1700..1800).rev().map(f64::from).find(|s| {
        let p = p_for(*s);
        p > 0.05 / 3.0 && p <= 0.05
    });
    let successes = successes.expect("some count gives a borderline p");
    let neutral =
        |name: &str| metric(name, MetricKind::Ratio { direction: Direction::HigherIsBetter }, Tolerance::Absolute(0.0));
    let three = AnalysisConfig::with_metrics(vec![accuracy(0.0), neutral("b"), neutral("c")]);
    let same = || ratio(1800.0, 2000.0);
    let same_base = || ratio(18000.0, 20000.0);
    let step = input(vec![
        observation("accuracy", ratio(successes, 2000.0), ratio(18000.0, 20000.0)),
        observation("b", same(), same_base()),
        observation("c", same(), same_base()),
    ]);
    assert_eq!(
        evaluate_step(&single, &input(vec![step.metrics[0].clone()]), None).unwrap().verdict.verdict,
        Verdict::Fail
    );
    let outcome = evaluate_step(&three, &step, None).unwrap();
    assert_ne!(outcome.verdict.verdict, Verdict::Fail, "{}", outcome.verdict.reason);
    assert!(
        outcome.verdict.metrics[0].reason.contains("not after Holm-Bonferroni"),
        "{}",
        outcome.verdict.metrics[0].reason
    );
}

#[test]
fn counter_reset_between_looks_is_inconclusive_and_keeps_the_state() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let first =
        evaluate_step(&config, &input(vec![observation("accuracy", ratio(450.0, 500.0), ratio(4050.0, 4500.0))]), None)
            .unwrap();
    let reset = evaluate_step(
        &config,
        &input(vec![observation("accuracy", ratio(45.0, 50.0), ratio(4100.0, 4550.0))]),
        Some(&first.state),
    )
    .unwrap();
    assert_eq!(reset.verdict.verdict, Verdict::Inconclusive);
    assert!(reset.verdict.reason.contains("counts went down"), "{}", reset.verdict.reason);
    assert_eq!(reset.state.metrics["accuracy"].canary_samples, 500.0);
}

#[test]
fn bad_numbers_from_prometheus_never_panic() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0), latency_metric()]);
    let bad_ratios = [
        ratio(f64::NAN, 100.0),
        ratio(-1.0, 100.0),
        ratio(200.0, 100.0),
        ratio(0.0, 0.0),
        ratio(f64::INFINITY, f64::INFINITY),
        ArmCounts::Mean { sum: 1.0, sum_sq: 1.0, count: 1.0 },
    ];
    let bad_histograms = [
        ArmCounts::Histogram { buckets: vec![] },
        ArmCounts::Histogram { buckets: vec![Bucket { le: 0.1, count: 5.0 }] },
        histogram(&BOUNDS, &[0.0; 9]),
        ArmCounts::Histogram {
            buckets: vec![Bucket { le: 0.1, count: 500.0 }, Bucket { le: f64::INFINITY, count: 100.0 }],
        },
        ArmCounts::Histogram { buckets: vec![Bucket { le: f64::NAN, count: 1.0 }] },
    ];
    let good = ratio(900.0, 1000.0);
    for bad in &bad_ratios {
        let outcome =
            evaluate_step(&config, &input(vec![observation("accuracy", bad.clone(), good.clone())]), None).unwrap();
        let m = &outcome.verdict.metrics[0];
        assert!(
            matches!(m.verdict, Verdict::Inconclusive | Verdict::Continue),
            "{bad:?} gave {:?}: {}",
            m.verdict,
            m.reason
        );
    }
    let good_histogram = histogram(&BOUNDS, &[100.0, 400.0, 300.0, 150.0, 50.0, 0.0, 0.0, 0.0, 0.0]);
    for bad in &bad_histograms {
        let outcome =
            evaluate_step(&config, &input(vec![observation("latency", bad.clone(), good_histogram.clone())]), None)
                .unwrap();
        let m = &outcome.verdict.metrics[1];
        assert!(
            matches!(m.verdict, Verdict::Inconclusive | Verdict::Continue),
            "{bad:?} gave {:?}: {}",
            m.verdict,
            m.reason
        );
    }
}

#[test]
fn a_metric_missing_from_the_input_is_inconclusive() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let outcome = evaluate_step(&config, &input(vec![]), None).unwrap();
    assert_eq!(outcome.verdict.verdict, Verdict::Inconclusive);
    assert!(outcome.verdict.reason.contains("no counts"), "{}", outcome.verdict.reason);
}

#[test]
fn the_last_look_turns_an_undecided_metric_inconclusive() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let mut step = input(vec![observation("accuracy", ratio(450.0, 500.0), ratio(4050.0, 4500.0))]);
    assert_eq!(evaluate_step(&config, &step, None).unwrap().verdict.verdict, Verdict::Continue);
    step.final_look = true;
    let outcome = evaluate_step(&config, &step, None).unwrap();
    assert_eq!(outcome.verdict.verdict, Verdict::Inconclusive);
    assert!(outcome.verdict.reason.contains("step ended"), "{}", outcome.verdict.reason);
}

#[test]
fn a_failure_stays_failed_for_the_rest_of_the_step() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let failed = evaluate_step(
        &config,
        &input(vec![observation("accuracy", ratio(800.0, 1000.0), ratio(8100.0, 9000.0))]),
        None,
    )
    .unwrap();
    assert_eq!(failed.verdict.verdict, Verdict::Fail);
    let later = evaluate_step(
        &config,
        &input(vec![observation("accuracy", ratio(9000.0, 10000.0), ratio(81000.0, 90000.0))]),
        Some(&failed.state),
    )
    .unwrap();
    assert_eq!(later.verdict.verdict, Verdict::Fail, "{}", later.verdict.reason);
    assert_eq!(later.verdict.look, 2);
}

#[test]
fn configuration_mistakes_are_errors_that_name_the_field() {
    let mut config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    config.alpha = 0.0;
    let err = evaluate_step(&config, &input(vec![]), None).unwrap_err();
    assert_eq!(err.metric_label(), "invalid_config");
    assert!(err.to_string().contains("alpha"));
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0), accuracy(0.01)]);
    assert_eq!(
        evaluate_step(&config, &input(vec![]), None).unwrap_err(),
        AnalysisError::DuplicateMetric("accuracy".into())
    );
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let err =
        evaluate_step(&config, &input(vec![observation("typo", ratio(1.0, 2.0), ratio(1.0, 2.0))]), None).unwrap_err();
    assert_eq!(err, AnalysisError::UnknownMetric("typo".into()));
}

#[test]
fn state_survives_a_json_round_trip() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0), latency_metric()]);
    let h = histogram(&BOUNDS, &[100.0, 400.0, 300.0, 150.0, 50.0, 0.0, 0.0, 0.0, 0.0]);
    let step = input(vec![
        observation("accuracy", ratio(450.0, 500.0), ratio(4050.0, 4500.0)),
        observation("latency", h.clone(), h),
    ]);
    let outcome = evaluate_step(&config, &step, None).unwrap();
    let text = serde_json::to_string(&outcome.state).unwrap();
    let back: AnalysisState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, outcome.state);
}

#[test]
fn verdict_json_uses_stable_camel_case_names() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let outcome = evaluate_step(
        &config,
        &input(vec![observation("accuracy", ratio(850.0, 1000.0), ratio(8100.0, 9000.0))]),
        None,
    )
    .unwrap();
    let json = serde_json::to_value(&outcome.verdict).unwrap();
    assert_eq!(json["verdict"], "Fail");
    let m = &json["metrics"][0];
    for key in [
        "name",
        "verdict",
        "reason",
        "canary",
        "baseline",
        "effect",
        "margin",
        "lowerBound",
        "upperBound",
        "alwaysValidP",
        "passP",
        "failThreshold",
    ] {
        assert!(m.get(key).is_some(), "metric verdict lacks {key}: {m}");
    }
    assert!(m["canary"]["estimate"].is_number() && m["canary"]["samples"].is_number());
}

#[test]
fn srm_always_valid_p_only_falls_across_looks_and_is_carried_in_the_state() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let mut state: Option<AnalysisState> = None;
    let mut last = 1.0_f64;
    let mut smallest_fixed = 1.0_f64;
    // The canary's share drifts around 9.5%: never enough to fail, but the p-value may only fall.
    for (k, canary) in [95.0, 200.0, 280.0, 390.0, 470.0].into_iter().enumerate() {
        let total = 1000.0 * (k as f64 + 1.0);
        let mut step = input(vec![observation(
            "accuracy",
            ratio(canary * 0.9, canary),
            ratio((total - canary) * 0.9, total - canary),
        )]);
        step.requests = Some(ArmPair { canary, baseline: total - canary });
        let outcome = evaluate_step(&config, &step, state.as_ref()).unwrap();
        let srm = outcome.verdict.srm.clone().unwrap();
        assert!(srm.always_valid_p <= last, "SRM p rose from {last} to {}", srm.always_valid_p);
        smallest_fixed = smallest_fixed.min(srm.test.unwrap().p_value);
        assert!(srm.always_valid_p >= smallest_fixed, "the always-valid p fell below every fixed-horizon p so far");
        assert_eq!(outcome.state.srm_p, srm.always_valid_p);
        last = srm.always_valid_p;
        state = Some(outcome.state);
    }
}
