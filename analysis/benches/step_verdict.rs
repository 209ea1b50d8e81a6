//! Criterion bench: one step verdict over five metrics (two ratios, one mean, two latency histograms with 30
//! buckets each), with SRM and the carried state, as the controller runs it every interval.
//!
//! `cargo bench -p rampart-analysis --bench step_verdict`

#![allow(clippy::unwrap_used)]

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use rampart_analysis::{
    AnalysisConfig, ArmCounts, ArmPair, Bucket, Direction, MetricConfig, MetricKind, MetricObservation, StepInput,
    Tolerance, evaluate_step,
};

fn histogram(total: f64, shift: f64) -> ArmCounts {
    // 30 exponential buckets from 5 ms; a smooth bell-shaped mass over them.
    let mut acc = 0.0;
    let weights: Vec<f64> = (0..31).map(|i| (-((f64::from(i) - 14.0 - shift) / 4.0).powi(2)).exp()).collect();
    let sum: f64 = weights.iter().sum();
    let buckets = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            acc += (total * w / sum).round();
            let le = if i < 30 { 0.005 * 1.3_f64.powi(i32::try_from(i).unwrap()) } else { f64::INFINITY };
            Bucket { le, count: acc }
        })
        .collect();
    ArmCounts::Histogram { buckets }
}

fn setup() -> (AnalysisConfig, StepInput) {
    let ratio = |name: &str, direction| MetricConfig {
        name: name.into(),
        kind: MetricKind::Ratio { direction },
        tolerance: Tolerance::Absolute(0.01),
        min_samples: None,
    };
    let latency = |name: &str| MetricConfig {
        name: name.into(),
        kind: MetricKind::Latency { quantile: 0.95, threshold_slack: 0.1, threshold_seconds: None },
        tolerance: Tolerance::Absolute(0.0),
        min_samples: None,
    };
    let config = AnalysisConfig::with_metrics(vec![
        ratio("accuracy", Direction::HigherIsBetter),
        ratio("error-rate", Direction::LowerIsBetter),
        MetricConfig {
            name: "tokens-per-second".into(),
            kind: MetricKind::Mean { direction: Direction::HigherIsBetter },
            tolerance: Tolerance::Relative(0.02),
            min_samples: None,
        },
        latency("latency"),
        latency("time-to-first-token"),
    ]);
    let obs = |name: &str, canary, baseline| MetricObservation { name: name.into(), canary, baseline };
    let input = StepInput {
        configured_canary_weight: 0.1,
        requests: Some(ArmPair { canary: 1000.0, baseline: 9000.0 }),
        metrics: vec![
            obs(
                "accuracy",
                ArmCounts::Ratio { successes: 895.0, trials: 1000.0 },
                ArmCounts::Ratio { successes: 8100.0, trials: 9000.0 },
            ),
            obs(
                "error-rate",
                ArmCounts::Ratio { successes: 12.0, trials: 1000.0 },
                ArmCounts::Ratio { successes: 90.0, trials: 9000.0 },
            ),
            obs(
                "tokens-per-second",
                ArmCounts::Mean { sum: 99_000.0, sum_sq: 9_900_000.0, count: 1000.0 },
                ArmCounts::Mean { sum: 900_000.0, sum_sq: 90_500_000.0, count: 9000.0 },
            ),
            obs("latency", histogram(1000.0, 0.5), histogram(9000.0, 0.0)),
            obs("time-to-first-token", histogram(1000.0, 0.0), histogram(9000.0, 0.0)),
        ],
        final_look: false,
    };
    (config, input)
}

fn bench(c: &mut Criterion) {
    let (config, input) = setup();
    let previous = evaluate_step(&config, &input, None).unwrap().state;
    c.bench_function("step verdict, 5 metrics (2 latency histograms x 30 buckets)", |b| {
        b.iter(|| evaluate_step(black_box(&config), black_box(&input), black_box(Some(&previous))).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
