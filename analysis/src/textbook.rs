//! Classical fixed-horizon statistics with textbook answers: normal and chi-square tails and quantiles, the
//! chi-square goodness-of-fit test, the pooled two-proportion z-test and Welch's t-test.
//!
//! These are checked against scipy/statsmodels by the oracle tests. They are *not* valid under repeated looks; the
//! verdicts use the confidence sequences in [`crate::sequence`], and these serve SRM, reporting and the simulation's
//! peer methods.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

/// The standard normal distribution. Building it cannot fail for mean 0 and standard deviation 1, but statrs
/// returns a `Result`, so the fallback keeps the crate free of panics.
fn standard_normal() -> Option<Normal> {
    Normal::new(0.0, 1.0).ok()
}

/// The quantile `z` with `P(Z ≤ z) = p` of the standard normal; NaN outside (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    match standard_normal() {
        Some(n) if p > 0.0 && p < 1.0 => n.inverse_cdf(p),
        _ => f64::NAN,
    }
}

/// The upper tail `P(Z > z)` of the standard normal.
pub fn normal_sf(z: f64) -> f64 {
    standard_normal().map_or(f64::NAN, |n| n.sf(z))
}

/// The upper tail `P(X > x)` of a chi-square with `df` degrees of freedom.
pub fn chi_square_sf(x: f64, df: f64) -> f64 {
    match ChiSquared::new(df) {
        Ok(c) if x > 0.0 => c.sf(x),
        Ok(_) => 1.0,
        Err(_) => f64::NAN,
    }
}

/// The quantile of a chi-square with `df` degrees of freedom.
pub fn chi_square_quantile(p: f64, df: f64) -> f64 {
    match ChiSquared::new(df) {
        Ok(c) if p > 0.0 && p < 1.0 => c.inverse_cdf(p),
        _ => f64::NAN,
    }
}

/// Result of a classical test: the statistic and its p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// The test statistic (chi-square, z or t).
    pub statistic: f64,
    /// The p-value (two-sided where the test has sides).
    pub p_value: f64,
    /// Degrees of freedom, where the reference distribution has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degrees_of_freedom: Option<f64>,
}

/// Pearson's chi-square goodness of fit of `observed` counts against expected shares `weights` (normalised here).
/// Returns `None` when the inputs cannot be tested (fewer than two cells, a zero weight, no observations).
pub fn chi_square_goodness_of_fit(observed: &[f64], weights: &[f64]) -> Option<TestResult> {
    if observed.len() != weights.len() || observed.len() < 2 {
        return None;
    }
    let total: f64 = observed.iter().sum();
    let weight_sum: f64 = weights.iter().sum();
    if !(total > 0.0 && weight_sum > 0.0) || weights.iter().any(|w| w.is_nan() || *w <= 0.0) {
        return None;
    }
    let statistic: f64 = observed
        .iter()
        .zip(weights)
        .map(|(o, w)| {
            let expected = total * w / weight_sum;
            (o - expected) * (o - expected) / expected
        })
        .sum();
    let df = (observed.len() - 1) as f64;
    Some(TestResult { statistic, p_value: chi_square_sf(statistic, df), degrees_of_freedom: Some(df) })
}

/// The pooled two-proportion z-test of `x1/n1` against `x2/n2`, two-sided (statsmodels' `proportions_ztest`).
/// `z` is positive when the first proportion is larger. `None` when a count is zero or the pooled share is 0 or 1.
pub fn two_proportion_z_test(x1: f64, n1: f64, x2: f64, n2: f64) -> Option<TestResult> {
    if !(n1 > 0.0 && n2 > 0.0) {
        return None;
    }
    let pooled = (x1 + x2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se.is_nan() || se <= 0.0 {
        return None;
    }
    let z = (x1 / n1 - x2 / n2) / se;
    Some(TestResult { statistic: z, p_value: (2.0 * normal_sf(z.abs())).min(1.0), degrees_of_freedom: None })
}

/// Welch's unequal-variance t-test of two means given per-sample variances, two-sided
/// (scipy's `ttest_ind(equal_var=False)`). `None` when a sample has fewer than two values or both variances are 0.
pub fn welch_t_test(mean1: f64, var1: f64, n1: f64, mean2: f64, var2: f64, n2: f64) -> Option<TestResult> {
    if !(n1 >= 2.0 && n2 >= 2.0) {
        return None;
    }
    let a = var1 / n1;
    let b = var2 / n2;
    let se2 = a + b;
    if se2.is_nan() || se2 <= 0.0 {
        return None;
    }
    let t = (mean1 - mean2) / se2.sqrt();
    let df = se2 * se2 / (a * a / (n1 - 1.0) + b * b / (n2 - 1.0));
    let p = StudentsT::new(0.0, 1.0, df).ok().map(|dist| (2.0 * dist.sf(t.abs())).min(1.0))?;
    Some(TestResult { statistic: t, p_value: p, degrees_of_freedom: Some(df) })
}
