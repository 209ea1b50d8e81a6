//! Behaviour added by issue 14: comparisons within each look's increments (a drift common to both versions while
//! the split changes is not a regression), decisions that stay final, and a carried state that is bounded in size
//! and cannot be forged into a Pass.

#![allow(clippy::unwrap_used)]

use rampart_analysis::{
    AnalysisConfig, AnalysisState, ArmCounts, ArmPair, Bucket, Decided, Direction, MetricConfig, MetricKind,
    MetricObservation, Movement, StateSeal, StepInput, Tolerance, Verdict, evaluate_step, evaluate_step_sealed,
};

fn accuracy(tolerance: f64) -> MetricConfig {
    MetricConfig {
        name: "accuracy".into(),
        kind: MetricKind::Ratio { direction: Direction::HigherIsBetter },
        tolerance: Tolerance::Absolute(tolerance),
        min_samples: None,
    }
}

fn look(cs: f64, cn: f64, bs: f64, bn: f64, weight: f64) -> StepInput {
    StepInput {
        configured_canary_weight: weight,
        requests: Some(ArmPair { canary: cn, baseline: bn }),
        metrics: vec![MetricObservation {
            name: "accuracy".into(),
            canary: ArmCounts::Ratio { successes: cs, trials: cn },
            baseline: ArmCounts::Ratio { successes: bs, trials: bn },
        }],
        final_look: false,
    }
}

/// Feeds per-look increments (canary successes, canary trials, baseline successes, baseline trials, weight) as
/// cumulative counts, carrying the state; returns every outcome.
fn run(config: &AnalysisConfig, looks: &[(f64, f64, f64, f64, f64)]) -> Vec<rampart_analysis::StepOutcome> {
    let (mut cs, mut cn, mut bs, mut bn) = (0.0, 0.0, 0.0, 0.0);
    let mut state: Option<AnalysisState> = None;
    let mut outcomes = Vec::new();
    for (s, n, t, m, w) in looks {
        cs += s;
        cn += n;
        bs += t;
        bn += m;
        let outcome = evaluate_step(config, &look(cs, cn, bs, bn, *w), state.as_ref()).unwrap();
        state = Some(outcome.state.clone());
        outcomes.push(outcome);
    }
    outcomes
}

#[test]
fn a_base_rate_drift_while_the_canary_share_doubles_is_not_a_regression() {
    // Both versions are equally accurate in every look: 95% while the canary gets 5% of traffic, 70% after it
    // gets 10%. Pooled totals make the canary look 7 points worse; within each look there is no difference.
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let mut looks = Vec::new();
    for _ in 0..10 {
        looks.push((475.0, 500.0, 9025.0, 9500.0, 0.05));
    }
    for _ in 0..10 {
        looks.push((700.0, 1000.0, 6300.0, 9000.0, 0.10));
    }
    let outcomes = run(&config, &looks);
    let last = outcomes.last().unwrap();
    let metric = &last.verdict.metrics[0];
    assert!(metric.canary.unwrap().estimate < metric.baseline.unwrap().estimate - 0.04, "pooled shares differ");
    assert!(metric.effect.unwrap().abs() < 1e-12, "within-look effect {}", metric.effect.unwrap());
    for outcome in &outcomes {
        assert_ne!(outcome.verdict.verdict, Verdict::Fail, "{}", outcome.verdict.reason);
    }
    // The weight change is no traffic mismatch either: each look is checked against its own weight.
    assert_eq!(last.verdict.srm.as_ref().unwrap().verdict, Verdict::Pass, "{}", last.verdict.reason);
}

#[test]
fn a_real_drop_is_still_caught_while_the_base_rate_drifts() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let mut looks = Vec::new();
    for k in 0..20 {
        let base = 0.95 - 0.01 * f64::from(k);
        looks.push(((base - 0.08) * 1000.0, 1000.0, base * 9000.0, 9000.0, 0.10));
    }
    let outcomes = run(&config, &looks);
    assert!(outcomes.iter().any(|o| o.verdict.verdict == Verdict::Fail));
}

#[test]
fn a_metric_that_passed_stays_passed_when_later_looks_look_worse() {
    // The old engine turned such a Pass into a Fail once the fail p-value cleared Holm later in the step.
    let mut config = AnalysisConfig::with_metrics(vec![accuracy(0.02)]);
    config.srm.enabled = false;
    let mut looks = vec![(4600.0, 5000.0, 40500.0, 45000.0, 0.1)];
    for _ in 0..10 {
        looks.push((3000.0, 5000.0, 40500.0, 45000.0, 0.1));
    }
    let outcomes = run(&config, &looks);
    assert_eq!(outcomes[0].verdict.verdict, Verdict::Pass, "{}", outcomes[0].verdict.reason);
    // Alone, the later looks would fail by far.
    let alone = evaluate_step(&config, &look(3000.0, 5000.0, 40500.0, 45000.0, 0.1), None).unwrap();
    assert_eq!(alone.verdict.verdict, Verdict::Fail);
    for outcome in &outcomes[1..] {
        assert_eq!(outcome.verdict.verdict, Verdict::Pass, "{}", outcome.verdict.reason);
        assert_eq!(outcome.verdict.metrics[0].verdict, Verdict::Pass);
    }
    let reason = &outcomes[5].verdict.metrics[0].reason;
    assert!(reason.contains("passed at an earlier look"), "{reason}");
}

#[test]
fn the_carried_state_does_not_grow_with_the_number_of_looks() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.5)]);
    let sizes: Vec<usize> = run(&config, &vec![(45.0, 50.0, 405.0, 450.0, 0.1); 500])
        .iter()
        .map(|o| serde_json::to_string(&o.state).unwrap().len())
        .collect();
    assert!(sizes[499] <= sizes[9] + 64, "state grew from {} to {} bytes", sizes[9], sizes[499]);
    assert!(sizes[499] < 1024, "{} bytes", sizes[499]);
}

fn forged_pass(state: &AnalysisState) -> AnalysisState {
    let mut forged = state.clone();
    for metric in forged.metrics.values_mut() {
        metric.pass_p = 1e-12;
        metric.decided = Some(Verdict::Pass);
    }
    forged.decided = Some(Decided { verdict: Verdict::Pass, look: 1 });
    forged
}

#[test]
fn a_forged_pass_in_a_sealed_state_is_discarded() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let seal = StateSeal::new(b"controller-held key 0123456789", "rollout-uid/step 2");
    // A canary clearly worse than the baseline: honest looks must never pass it.
    let first = evaluate_step_sealed(&config, &look(430.0, 500.0, 4050.0, 4500.0, 0.1), None, &seal).unwrap();
    assert!(first.state.seal.is_some());
    let forged = forged_pass(&first.state);
    let next = evaluate_step_sealed(&config, &look(860.0, 1000.0, 8100.0, 9000.0, 0.1), Some(&forged), &seal).unwrap();
    assert_ne!(next.verdict.verdict, Verdict::Pass, "{}", next.verdict.reason);
    assert!(next.verdict.reason.contains("discarded"), "{}", next.verdict.reason);
    // The honest sealed state carries on.
    let honest = evaluate_step_sealed(&config, &look(860.0, 1000.0, 8100.0, 9000.0, 0.1), Some(&first.state), &seal);
    assert_eq!(honest.unwrap().verdict.look, 2);
    // A state sealed for another rollout does not verify here.
    let other = StateSeal::new(b"controller-held key 0123456789", "other-uid/step 2");
    let copied = evaluate_step_sealed(&config, &look(860.0, 1000.0, 8100.0, 9000.0, 0.1), Some(&first.state), &other);
    assert_eq!(copied.unwrap().verdict.look, 1);
}

#[test]
fn an_unsealed_state_that_no_look_could_produce_is_reset() {
    let config = AnalysisConfig::with_metrics(vec![accuracy(0.0)]);
    let first = evaluate_step(&config, &look(450.0, 500.0, 4050.0, 4500.0, 0.1), None).unwrap();
    // Strata claiming more effective samples than were counted, and a step Pass without passed metrics.
    let mut forged = first.state.clone();
    let strata = forged.metrics.get_mut("accuracy").unwrap().strata.as_mut().unwrap();
    strata.time = 1e9;
    strata.sum = 1e9;
    forged.decided = Some(Decided { verdict: Verdict::Pass, look: 1 });
    let next = evaluate_step(&config, &look(900.0, 1000.0, 8100.0, 9000.0, 0.1), Some(&forged)).unwrap();
    assert_ne!(next.verdict.verdict, Verdict::Pass, "{}", next.verdict.reason);
    assert!(next.verdict.reason.contains("discarded"), "{}", next.verdict.reason);
    let strata = next.state.metrics["accuracy"].strata.as_ref().unwrap();
    assert!(strata.time <= 1000.0, "the strata started over: {}", strata.time);
}

fn latency_input(canary: &[f64], baseline: &[f64], bounds: &[f64]) -> StepInput {
    let cumulative = |counts: &[f64]| {
        let mut acc = 0.0;
        counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                acc += c;
                Bucket { le: bounds.get(i).copied().unwrap_or(f64::INFINITY), count: acc }
            })
            .collect::<Vec<_>>()
    };
    StepInput {
        configured_canary_weight: 0.1,
        requests: None,
        metrics: vec![MetricObservation {
            name: "latency".into(),
            canary: ArmCounts::Histogram { buckets: cumulative(canary) },
            baseline: ArmCounts::Histogram { buckets: cumulative(baseline) },
        }],
        final_look: false,
    }
}

#[test]
fn a_slower_canary_on_coarse_default_buckets_fails_and_names_the_quantiles_that_moved() {
    // Prometheus' default buckets; most requests fall in 50-100 ms and 100-250 ms. The canary moves a fifth of its
    // requests up one bucket: no threshold between buckets is needed to see it.
    let bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let baseline = [0.0, 0.0, 0.0, 1700.0, 5000.0, 3200.0, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let canary = [0.0, 0.0, 0.0, 100.0, 500.0, 370.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let config = AnalysisConfig::with_metrics(vec![MetricConfig {
        name: "latency".into(),
        kind: MetricKind::Latency { quantile: 0.95, threshold_slack: 0.1, threshold_seconds: None },
        tolerance: Tolerance::Absolute(0.0),
        min_samples: None,
    }]);
    let outcome = evaluate_step(&config, &latency_input(&canary, &baseline, &bounds), None).unwrap();
    let metric = &outcome.verdict.metrics[0];
    assert_eq!(metric.verdict, Verdict::Fail, "{}", metric.reason);
    let detail = metric.latency.clone().unwrap();
    let p50 = detail.quantiles.iter().find(|q| q.quantile == 0.5).unwrap();
    assert_eq!(p50.moved, Movement::Slower, "{detail:?}");
    // Identical histograms move nothing and do not fail.
    let same = evaluate_step(&config, &latency_input(&baseline, &baseline, &bounds), None).unwrap();
    assert_ne!(same.verdict.metrics[0].verdict, Verdict::Fail);
    assert!(same.verdict.metrics[0].latency.clone().unwrap().quantiles.iter().all(|q| q.moved == Movement::Unchanged));
}
