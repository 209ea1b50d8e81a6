//! Property tests of the anytime-valid machinery: p-values only fall as evidence accumulates, swapping the arms
//! mirrors the effect, and more samples at the same rates never widen the confidence sequence.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rampart_analysis::{
    AnalysisConfig, AnalysisState, ArmCounts, Direction, MetricConfig, MetricKind, MetricObservation, MetricVerdict,
    StepInput, Tolerance, evaluate_step,
};

fn config(kind: MetricKind, tolerance: f64) -> AnalysisConfig {
    let mut config = AnalysisConfig::with_metrics(vec![MetricConfig {
        name: "m".into(),
        kind,
        tolerance: Tolerance::Absolute(tolerance),
        min_samples: None,
    }]);
    config.min_samples = 20.0;
    config
}

fn ratio() -> MetricKind {
    MetricKind::Ratio { direction: Direction::HigherIsBetter }
}

fn mean() -> MetricKind {
    MetricKind::Mean { direction: Direction::HigherIsBetter }
}

fn verdict(config: &AnalysisConfig, canary: ArmCounts, baseline: ArmCounts) -> MetricVerdict {
    let input = StepInput {
        configured_canary_weight: 0.1,
        requests: None,
        metrics: vec![MetricObservation { name: "m".into(), canary, baseline }],
        final_look: false,
    };
    evaluate_step(config, &input, None).unwrap().verdict.metrics.remove(0)
}

fn ratio_counts(successes: f64, trials: f64) -> ArmCounts {
    ArmCounts::Ratio { successes, trials }
}

/// Mean counts of `n` values with the given mean and standard deviation.
fn mean_counts(mean: f64, sd: f64, n: f64) -> ArmCounts {
    let sum = mean * n;
    ArmCounts::Mean { sum, sum_sq: sd * sd * (n - 1.0) + sum * sum / n, count: n }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn always_valid_p_values_never_increase_as_evidence_accumulates(
        increments in prop::collection::vec((0u32..=50, 0u32..=450), 2..30),
        canary_rate in 0.5f64..1.0,
    ) {
        let config = config(ratio(), 0.01);
        let mut state: Option<AnalysisState> = None;
        let (mut cs, mut cn, mut bs, mut bn) = (0.0, 0.0, 0.0, 0.0);
        let mut previous = (1.0_f64, 1.0_f64);
        for (canary_successes, baseline_successes) in increments {
            cs += (f64::from(canary_successes) * canary_rate).floor();
            cn += 50.0;
            bs += f64::from(baseline_successes);
            bn += 450.0;
            let input = StepInput {
                configured_canary_weight: 0.1,
                requests: None,
                metrics: vec![MetricObservation { name: "m".into(), canary: ratio_counts(cs, cn), baseline: ratio_counts(bs, bn) }],
                final_look: false,
            };
            let outcome = evaluate_step(&config, &input, state.as_ref()).unwrap();
            let m = &outcome.verdict.metrics[0];
            prop_assert!(m.always_valid_p <= previous.0, "fail p rose from {} to {}", previous.0, m.always_valid_p);
            prop_assert!(m.pass_p <= previous.1, "pass p rose from {} to {}", previous.1, m.pass_p);
            previous = (m.always_valid_p, m.pass_p);
            state = Some(outcome.state);
        }
    }

    #[test]
    fn swapping_arms_mirrors_the_effect_of_a_ratio_metric(
        canary_n in 20.0f64..5000.0, baseline_n in 20.0f64..50000.0, canary_rate in 0.0f64..1.0, baseline_rate in 0.0f64..1.0,
    ) {
        let config = config(ratio(), 0.0);
        let c = ratio_counts((canary_rate * canary_n).round(), canary_n);
        let b = ratio_counts((baseline_rate * baseline_n).round(), baseline_n);
        let forward = verdict(&config, c.clone(), b.clone());
        let backward = verdict(&config, b, c);
        mirrored(&forward, &backward)?;
    }

    #[test]
    fn swapping_arms_mirrors_the_effect_of_a_mean_metric(
        canary_n in 20.0f64..5000.0, baseline_n in 20.0f64..50000.0,
        canary_mean in -5.0f64..5.0, baseline_mean in -5.0f64..5.0, canary_sd in 0.1f64..3.0, baseline_sd in 0.1f64..3.0,
    ) {
        let config = config(mean(), 0.0);
        let c = mean_counts(canary_mean, canary_sd, canary_n);
        let b = mean_counts(baseline_mean, baseline_sd, baseline_n);
        let forward = verdict(&config, c.clone(), b.clone());
        let backward = verdict(&config, b, c);
        mirrored(&forward, &backward)?;
    }

    #[test]
    fn more_samples_at_the_same_rates_never_widen_the_confidence_sequence(
        canary_n in 20.0f64..2000.0, ratio_of_arms in 1.0f64..19.0, canary_rate in 0.0f64..1.0, baseline_rate in 0.0f64..1.0,
        scale in 1.0f64..20.0,
    ) {
        let config = config(ratio(), 0.0);
        let baseline_n = canary_n * ratio_of_arms;
        let small = verdict(&config, ratio_counts(canary_rate * canary_n, canary_n), ratio_counts(baseline_rate * baseline_n, baseline_n));
        let large = verdict(
            &config,
            ratio_counts(canary_rate * canary_n * scale, canary_n * scale),
            ratio_counts(baseline_rate * baseline_n * scale, baseline_n * scale),
        );
        let width = |m: &MetricVerdict| m.upper_bound.unwrap() - m.lower_bound.unwrap();
        prop_assert!(width(&large) <= width(&small) * (1.0 + 1e-9), "width grew from {} to {}", width(&small), width(&large));
    }

    #[test]
    fn more_samples_at_the_same_spread_never_widen_the_confidence_sequence_of_a_mean(
        canary_n in 20.0f64..2000.0, ratio_of_arms in 1.0f64..19.0, sd in 0.1f64..5.0, shift in -2.0f64..2.0, scale in 1.0f64..20.0,
    ) {
        let config = config(mean(), 0.0);
        let baseline_n = canary_n * ratio_of_arms;
        let small = verdict(&config, mean_counts(shift, sd, canary_n), mean_counts(0.0, sd, baseline_n));
        let large = verdict(&config, mean_counts(shift, sd, canary_n * scale), mean_counts(0.0, sd, baseline_n * scale));
        let width = |m: &MetricVerdict| m.upper_bound.unwrap() - m.lower_bound.unwrap();
        prop_assert!(width(&large) <= width(&small) * (1.0 + 1e-9), "width grew from {} to {}", width(&small), width(&large));
    }
}

fn mirrored(forward: &MetricVerdict, backward: &MetricVerdict) -> Result<(), TestCaseError> {
    let tol = |x: f64| 1e-7 * (1.0 + x.abs());
    let (fe, be) = (forward.effect.unwrap(), backward.effect.unwrap());
    prop_assert!((fe + be).abs() <= tol(fe), "effects {fe} and {be} are not mirrored");
    let (fl, fu) = (forward.lower_bound.unwrap(), forward.upper_bound.unwrap());
    let (bl, bu) = (backward.lower_bound.unwrap(), backward.upper_bound.unwrap());
    prop_assert!((fl + bu).abs() <= tol(fl), "lower {fl} does not mirror upper {bu}");
    prop_assert!((fu + bl).abs() <= tol(fu), "upper {fu} does not mirror lower {bl}");
    // With no tolerance, "surely worse" one way is "surely better" the other way.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300) || (a - b).abs() < 1e-300;
    prop_assert!(
        close(forward.always_valid_p, backward.pass_p),
        "fail p {} vs mirrored pass p {}",
        forward.always_valid_p,
        backward.pass_p
    );
    prop_assert!(
        close(forward.pass_p, backward.always_valid_p),
        "pass p {} vs mirrored fail p {}",
        forward.pass_p,
        backward.always_valid_p
    );
    Ok(())
}

fn any_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-1.0),
        -1e12f64..1e12,
        0.0f64..1e6,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_numbers_from_prometheus_never_panic(
        numbers in prop::collection::vec(any_number(), 12),
        les in prop::collection::vec(any_number(), 0..6),
        weight in any_number(),
    ) {
        let config = AnalysisConfig::with_metrics(vec![
            MetricConfig { name: "r".into(), kind: ratio(), tolerance: Tolerance::Relative(0.1), min_samples: None },
            MetricConfig { name: "m".into(), kind: mean(), tolerance: Tolerance::Absolute(0.0), min_samples: None },
            MetricConfig {
                name: "l".into(),
                kind: MetricKind::Latency { quantile: 0.9, threshold_slack: 0.0, threshold_seconds: None },
                tolerance: Tolerance::Absolute(0.0),
                min_samples: None,
            },
        ]);
        let buckets = |scale: f64| ArmCounts::Histogram {
            buckets: les
                .iter()
                .enumerate()
                .map(|(i, le)| rampart_analysis::Bucket { le: *le, count: scale * i as f64 })
                .chain(std::iter::once(rampart_analysis::Bucket { le: f64::INFINITY, count: scale * 10.0 }))
                .collect(),
        };
        let n = &numbers;
        let input = StepInput {
            configured_canary_weight: weight,
            requests: Some(rampart_analysis::ArmPair { canary: n[10], baseline: n[11] }),
            metrics: vec![
                MetricObservation { name: "r".into(), canary: ratio_counts(n[0], n[1]), baseline: ratio_counts(n[2], n[3]) },
                MetricObservation {
                    name: "m".into(),
                    canary: ArmCounts::Mean { sum: n[4], sum_sq: n[5], count: n[6] },
                    baseline: ArmCounts::Mean { sum: n[7], sum_sq: n[8], count: n[9] },
                },
                MetricObservation { name: "l".into(), canary: buckets(n[0].abs().min(1e6)), baseline: buckets(n[1].abs().min(1e6)) },
            ],
            final_look: false,
        };
        // Errors are allowed (a weight outside [0, 1]); panics are not, and a verdict must serialize.
        if let Ok(outcome) = evaluate_step(&config, &input, None) {
            prop_assert!(serde_json::to_string(&outcome.verdict).is_ok());
        }
    }
}

/// One random look for the finality property: increments of an accuracy metric and a latency histogram, a weight,
/// and sometimes bad data.
#[derive(Debug, Clone)]
struct RandomLook {
    canary: u32,
    baseline: u32,
    canary_correct: f64,
    baseline_correct: f64,
    canary_fast: f64,
    weight_high: bool,
    glitch: u8,
}

fn random_look() -> impl Strategy<Value = RandomLook> {
    (0u32..=80, 0u32..=600, 0.3f64..1.0, 0.3f64..1.0, 0.0f64..1.0, any::<bool>(), 0u8..20).prop_map(
        |(canary, baseline, canary_correct, baseline_correct, canary_fast, weight_high, glitch)| RandomLook {
            canary,
            baseline,
            canary_correct,
            baseline_correct,
            canary_fast,
            weight_high,
            glitch,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Must-show 4 of issue 14: once a step (or one of its metrics) has reached Pass or Fail, no later look of the
    /// step says anything else, whatever the later data (shifting rates, split changes, bad numbers, the last look).
    #[test]
    fn a_verdict_once_reached_never_changes_later_in_the_step(
        looks in prop::collection::vec(random_look(), 2..60),
        tolerance in 0.0f64..0.1,
        alpha in 0.05f64..0.5,
    ) {
        let mut config = AnalysisConfig::with_metrics(vec![
            MetricConfig { name: "accuracy".into(), kind: ratio(), tolerance: Tolerance::Absolute(tolerance), min_samples: None },
            MetricConfig {
                name: "latency".into(),
                kind: MetricKind::Latency { quantile: 0.9, threshold_slack: 0.1, threshold_seconds: None },
                tolerance: Tolerance::Absolute(tolerance),
                min_samples: None,
            },
        ]);
        config.alpha = alpha;
        config.min_samples = 20.0;
        config.tuning = rampart_analysis::Tuning::ExpectedSamples(200.0);
        let mut state: Option<AnalysisState> = None;
        let (mut cs, mut cn, mut bs, mut bn) = (0.0, 0.0, 0.0, 0.0);
        let (mut c_fast, mut b_fast) = (0.0, 0.0);
        let mut step_decided: Option<rampart_analysis::Verdict> = None;
        let mut metric_decided: [Option<rampart_analysis::Verdict>; 2] = [None, None];
        let count = looks.len();
        for (i, look) in looks.into_iter().enumerate() {
            cn += f64::from(look.canary);
            bn += f64::from(look.baseline);
            cs += (f64::from(look.canary) * look.canary_correct).floor();
            bs += (f64::from(look.baseline) * look.baseline_correct).floor();
            c_fast += (f64::from(look.canary) * look.canary_fast).floor();
            b_fast += (f64::from(look.baseline) * 0.5).floor();
            let histogram = |fast: f64, total: f64| ArmCounts::Histogram { buckets: vec![
                rampart_analysis::Bucket { le: 0.1, count: fast },
                rampart_analysis::Bucket { le: f64::INFINITY, count: total },
            ]};
            let mut accuracy = MetricObservation { name: "accuracy".into(), canary: ratio_counts(cs, cn), baseline: ratio_counts(bs, bn) };
            match look.glitch {
                0 => accuracy.canary = ratio_counts(f64::NAN, cn),
                1 => accuracy.baseline = ratio_counts(0.0, 0.0),
                _ => {}
            }
            let input = StepInput {
                configured_canary_weight: if look.weight_high { 0.1 } else { 0.05 },
                requests: Some(rampart_analysis::ArmPair { canary: cn, baseline: bn }),
                metrics: vec![
                    accuracy,
                    MetricObservation { name: "latency".into(), canary: histogram(c_fast, cn), baseline: histogram(b_fast, bn) },
                ],
                final_look: i + 1 == count,
            };
            let outcome = evaluate_step(&config, &input, state.as_ref()).unwrap();
            let verdict = outcome.verdict.verdict;
            if let Some(decided) = step_decided {
                prop_assert_eq!(verdict, decided, "the step changed from {:?} at look {}: {}", decided, i + 1, outcome.verdict.reason);
            } else if matches!(verdict, rampart_analysis::Verdict::Pass | rampart_analysis::Verdict::Fail) {
                step_decided = Some(verdict);
            }
            for (slot, metric) in metric_decided.iter_mut().zip(&outcome.verdict.metrics) {
                if let Some(decided) = *slot {
                    prop_assert_eq!(metric.verdict, decided, "metric {} changed at look {}", metric.name, i + 1);
                } else if matches!(metric.verdict, rampart_analysis::Verdict::Pass | rampart_analysis::Verdict::Fail) {
                    *slot = Some(metric.verdict);
                }
            }
            // The state goes through JSON, as it does through the ModelRollout status.
            let text = serde_json::to_string(&outcome.state).unwrap();
            state = Some(serde_json::from_str(&text).unwrap());
        }
    }
}
