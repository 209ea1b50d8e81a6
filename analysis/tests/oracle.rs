//! Oracle tests: the textbook pieces and the stratified methods agree with scipy/statsmodels values (and an
//! independent Python implementation of the stratified ratio test) committed in `oracle/oracle.json`; regenerate
//! with `target/py/bin/python analysis/oracle/oracle.py > analysis/oracle/oracle.json` (see the script).

#![allow(clippy::unwrap_used)]

use rampart_analysis::histogram::{Histogram, compare_histograms, mann_whitney_binned, rank_stratum};
use rampart_analysis::sequence::{EffectMixture, MixingPrecision};
use rampart_analysis::textbook::{
    chi_square_goodness_of_fit, chi_square_quantile, chi_square_sf, normal_quantile, normal_sf, two_proportion_z_test,
    welch_t_test,
};
use rampart_analysis::{
    AnalysisConfig, AnalysisState, ArmCounts, ArmPair, Bucket, Direction, MetricConfig, MetricKind, MetricObservation,
    StepInput, Tolerance, evaluate_step,
};
use serde_json::Value;

fn oracle() -> Value {
    serde_json::from_str(include_str!("../oracle/oracle.json")).unwrap()
}

fn cases(section: &str) -> Vec<Value> {
    oracle()[section].as_array().unwrap().clone()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("oracle field {key} missing in {v}"))
}

fn floats(v: &Value, key: &str) -> Vec<f64> {
    v[key].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Asserts `actual` is within `rel` relative error of `expected` (absolute near zero).
fn close(actual: f64, expected: f64, rel: f64, what: &str) {
    let scale = expected.abs().max(1e-300);
    let error = (actual - expected).abs();
    assert!(
        error <= rel * scale || error <= 1e-15,
        "{what}: got {actual:e}, scipy says {expected:e} (relative error {:e})",
        error / scale
    );
}

const REL: f64 = 1e-9;

#[test]
fn normal_quantiles_match_scipy() {
    for case in cases("normal_quantiles") {
        close(normal_quantile(f(&case, "p")), f(&case, "z"), REL, &format!("norm.ppf({})", f(&case, "p")));
    }
}

#[test]
fn normal_tails_match_scipy() {
    for case in cases("normal_tails") {
        close(normal_sf(f(&case, "z")), f(&case, "sf"), REL, &format!("norm.sf({})", f(&case, "z")));
    }
}

#[test]
fn chi_square_tails_and_quantiles_match_scipy() {
    for case in cases("chi_square_tails") {
        close(chi_square_sf(f(&case, "x"), f(&case, "df")), f(&case, "sf"), REL, &format!("chi2.sf {case}"));
    }
    for case in cases("chi_square_quantiles") {
        close(chi_square_quantile(f(&case, "p"), f(&case, "df")), f(&case, "x"), REL, &format!("chi2.ppf {case}"));
    }
}

#[test]
fn goodness_of_fit_matches_scipy_chisquare() {
    for case in cases("goodness_of_fit") {
        let result = chi_square_goodness_of_fit(&floats(&case, "observed"), &floats(&case, "weights")).unwrap();
        close(result.statistic, f(&case, "statistic"), REL, &format!("chisquare statistic {case}"));
        close(result.p_value, f(&case, "p_value"), REL, &format!("chisquare p {case}"));
    }
}

fn histogram(bounds: &[f64], counts: &[f64]) -> Histogram {
    let mut acc = 0.0;
    let buckets: Vec<Bucket> = counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            acc += c;
            Bucket { le: bounds.get(i).copied().unwrap_or(f64::INFINITY), count: acc }
        })
        .collect();
    Histogram::from_cumulative(&buckets).unwrap()
}

#[test]
fn mann_whitney_with_ties_matches_scipy() {
    for case in cases("mann_whitney") {
        let first = floats(&case, "first");
        let second = floats(&case, "second");
        let result = mann_whitney_binned(&first, &second).unwrap();
        close(result.u, f(&case, "u"), REL, &format!("mannwhitneyu U {case}"));
        close(result.p_value, f(&case, "p_value"), REL, &format!("mannwhitneyu p {case}"));
    }
}

#[test]
fn hodges_lehmann_on_buckets_matches_median_of_pairwise_differences() {
    for case in cases("mann_whitney") {
        let bounds = floats(&case, "bounds");
        let a = histogram(&bounds, &floats(&case, "first"));
        let b = histogram(&bounds, &floats(&case, "second"));
        let result = compare_histograms(&a, &b).unwrap();
        close(result.hodges_lehmann.unwrap(), f(&case, "hodges_lehmann"), REL, &format!("Hodges-Lehmann {case}"));
    }
}

#[test]
fn two_proportion_z_matches_statsmodels() {
    for case in cases("two_proportion_z") {
        let result = two_proportion_z_test(f(&case, "x1"), f(&case, "n1"), f(&case, "x2"), f(&case, "n2")).unwrap();
        close(result.statistic, f(&case, "z"), REL, &format!("proportions_ztest z {case}"));
        close(result.p_value, f(&case, "p_value"), REL, &format!("proportions_ztest p {case}"));
    }
}

#[test]
fn welch_t_matches_scipy() {
    for case in cases("welch_t") {
        let result = welch_t_test(
            f(&case, "mean1"),
            f(&case, "var1"),
            f(&case, "n1"),
            f(&case, "mean2"),
            f(&case, "var2"),
            f(&case, "n2"),
        )
        .unwrap();
        close(result.statistic, f(&case, "t"), REL, &format!("Welch t {case}"));
        close(result.degrees_of_freedom.unwrap(), f(&case, "df"), REL, &format!("Welch df {case}"));
        close(result.p_value, f(&case, "p_value"), REL, &format!("Welch p {case}"));
    }
}

#[test]
fn mixing_precision_tuning_matches_a_root_finder() {
    for case in cases("mixture_tuning") {
        let rho = MixingPrecision::tuned_for(f(&case, "expected_samples"), f(&case, "alpha"));
        close(rho.0, f(&case, "rho"), REL, &format!("rho {case}"));
    }
}

/// Tolerance for the stratified methods of issue 14 (must-show 5).
const STRATIFIED_REL: f64 = 1e-6;

/// Runs a ratio metric (tolerance 0, default settings) through the looks of an oracle case, carrying the state,
/// and returns the last look's verdict.
fn last_ratio_verdict(case: &Value) -> rampart_analysis::MetricVerdict {
    let config = AnalysisConfig::with_metrics(vec![MetricConfig {
        name: "accuracy".into(),
        kind: MetricKind::Ratio { direction: Direction::HigherIsBetter },
        tolerance: Tolerance::Absolute(0.0),
        min_samples: None,
    }]);
    let (mut cs, mut cn, mut bs, mut bn) = (0.0, 0.0, 0.0, 0.0);
    let mut state: Option<AnalysisState> = None;
    let mut last = None;
    for look in case["looks"].as_array().unwrap() {
        let x: Vec<f64> = look.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        cs += x[0];
        cn += x[1];
        bs += x[2];
        bn += x[3];
        let input = StepInput {
            configured_canary_weight: x[4],
            requests: Some(ArmPair { canary: cn, baseline: bn }),
            metrics: vec![MetricObservation {
                name: "accuracy".into(),
                canary: ArmCounts::Ratio { successes: cs, trials: cn },
                baseline: ArmCounts::Ratio { successes: bs, trials: bn },
            }],
            final_look: false,
        };
        let outcome = evaluate_step(&config, &input, state.as_ref()).unwrap();
        state = Some(outcome.state);
        last = Some(outcome.verdict.metrics[0].clone());
    }
    last.unwrap()
}

#[test]
fn mantel_haenszel_over_looks_matches_statsmodels_stratified_table() {
    for case in cases("mantel_haenszel") {
        let verdict = last_ratio_verdict(&case);
        let test = verdict.mantel_haenszel.unwrap();
        close(test.statistic, f(&case, "statistic"), STRATIFIED_REL, &format!("CMH statistic {case}"));
        close(test.p_value, f(&case, "p_value"), STRATIFIED_REL, &format!("CMH p {case}"));
    }
}

#[test]
fn effect_mixture_p_values_match_the_reference_formula() {
    for case in cases("effect_mixture") {
        let mixture = EffectMixture::for_expected_samples(f(&case, "expected_samples"), f(&case, "alpha"));
        close(mixture.smallest_effect, f(&case, "smallest_effect"), STRATIFIED_REL, &format!("theta* {case}"));
        close(mixture.p_value(f(&case, "y"), f(&case, "t")), f(&case, "p_value"), STRATIFIED_REL, &format!("p {case}"));
    }
}

#[test]
fn stratified_ratio_test_matches_an_independent_implementation() {
    for case in cases("stratified_ratio") {
        let verdict = last_ratio_verdict(&case);
        close(verdict.effect.unwrap(), f(&case, "effect"), STRATIFIED_REL, &format!("effect {case}"));
        close(verdict.always_valid_p, f(&case, "fail_p"), STRATIFIED_REL, &format!("fail p {case}"));
        close(verdict.pass_p, f(&case, "pass_p"), STRATIFIED_REL, &format!("pass p {case}"));
    }
}

#[test]
fn per_look_rank_statistics_match_scipy_ranks_and_mann_whitney() {
    for case in cases("rank_strata") {
        let looks = case["looks"].as_array().unwrap();
        let bounds: Vec<f64> = (1..looks[0]["canary"].as_array().unwrap().len()).map(|i| 0.01 * i as f64).collect();
        let config = AnalysisConfig::with_metrics(vec![MetricConfig {
            name: "latency".into(),
            kind: MetricKind::Latency { quantile: 0.9, threshold_slack: 0.1, threshold_seconds: None },
            tolerance: Tolerance::Absolute(0.0),
            min_samples: Some(2.0),
        }]);
        let mut canary_total = vec![0.0; bounds.len() + 1];
        let mut baseline_total = vec![0.0; bounds.len() + 1];
        let mut state: Option<AnalysisState> = None;
        let mut effect = f64::NAN;
        for look in looks {
            let (canary, baseline) = (floats(look, "canary"), floats(look, "baseline"));
            let (d, variance) = rank_stratum(&canary, &baseline).unwrap();
            close(d, f(look, "difference"), STRATIFIED_REL, &format!("rank difference {look}"));
            close(variance, f(look, "variance"), STRATIFIED_REL, &format!("rank variance {look}"));
            let (n_c, n_b): (f64, f64) = (canary.iter().sum(), baseline.iter().sum());
            let z = n_c * n_b / (n_c + n_b) * d / variance.sqrt();
            close(2.0 * normal_sf(z.abs()), f(look, "mann_whitney_p"), STRATIFIED_REL, &format!("MW p {look}"));
            for (total, add) in canary_total.iter_mut().zip(&canary) {
                *total += add;
            }
            for (total, add) in baseline_total.iter_mut().zip(&baseline) {
                *total += add;
            }
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
            let input = StepInput {
                configured_canary_weight: 0.1,
                requests: None,
                metrics: vec![MetricObservation {
                    name: "latency".into(),
                    canary: ArmCounts::Histogram { buckets: cumulative(&canary_total) },
                    baseline: ArmCounts::Histogram { buckets: cumulative(&baseline_total) },
                }],
                final_look: false,
            };
            let outcome = evaluate_step(&config, &input, state.as_ref()).unwrap();
            effect = outcome.verdict.metrics[0].effect.unwrap();
            state = Some(outcome.state);
        }
        close(effect, f(&case, "effect"), STRATIFIED_REL, &format!("stratified rank effect {case}"));
    }
}
