//! Oracle tests: the textbook pieces agree with scipy/statsmodels values committed in `oracle/oracle.json`
//! (regenerate with `python3 analysis/oracle/oracle.py > analysis/oracle/oracle.json`).

#![allow(clippy::unwrap_used)]

use rampart_analysis::Bucket;
use rampart_analysis::histogram::{Histogram, compare_histograms, mann_whitney_binned};
use rampart_analysis::sequence::MixingPrecision;
use rampart_analysis::textbook::{
    chi_square_goodness_of_fit, chi_square_quantile, chi_square_sf, normal_quantile, normal_sf, two_proportion_z_test,
    welch_t_test,
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
