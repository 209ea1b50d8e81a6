//! The anytime-valid tests. Metric verdicts use [`EffectMixture`]: one-sided likelihood-ratio martingales on the
//! standardized difference, mixed over a few effect sizes from the smallest effect worth catching upwards (see
//! docs/statistics.md, section 3). The sample-ratio-mismatch check and the comparison runs in the simulation use
//! Robbins' two-sided normal mixture (Howard et al. 2021), kept below as [`MixingPrecision`] and friends.
//!
//! Notation (see docs/statistics.md): `d` is the observed difference canary − baseline, `V` its estimated variance
//! `s_c²/n_c + s_b²/n_b`, `t = n_c·n_b/(n_c+n_b)` the effective sample size (intrinsic time) and `ρ` the mixing
//! precision. The sequence is `d ± sqrt(V) · z(t)` with `z(t)² = (1 + ρ/t)·(ln((t+ρ)/ρ) + 2 ln(1/α))`.

use serde::{Deserialize, Serialize};

use crate::textbook::normal_quantile;

/// Power at which the smallest effect is matched: the mixture's first component sits at the standardized effect a
/// one-sided fixed-horizon test at level alpha would detect with this power at the expected sample size.
pub const MATCHED_POWER: f64 = 0.8;

/// Relative weights of the mixture components at θ*, 2θ*, 4θ*, 8θ* (halving: most weight on the smallest effect).
const COMPONENT_WEIGHTS: [f64; 4] = [8.0 / 15.0, 4.0 / 15.0, 2.0 / 15.0, 1.0 / 15.0];

/// A one-sided mixture of likelihood ratios `exp(θ·y − θ²·t/2)` over standardized effects θ = θ*, 2θ*, 4θ*, 8θ*
/// with weights 8:4:2:1. For evidence `y` (a standardized sum that drifts like a Brownian motion in the intrinsic
/// time `t`, with drift 0 under the null) it is a non-negative martingale with mean 1 under the null, so by
/// Ville's inequality it ever reaches 1/α with probability at most α, whatever the looks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EffectMixture {
    /// θ*: the smallest standardized effect (effect divided by the per-sample standard deviation) the mixture is
    /// matched to.
    pub smallest_effect: f64,
}

impl EffectMixture {
    /// The mixture matched to the effect a one-sided fixed-horizon test at `alpha` detects with 80% power at
    /// `expected_samples` effective samples: θ* = (z(1 − α) + z(0.8)) / sqrt(m).
    pub fn for_expected_samples(expected_samples: f64, alpha: f64) -> Self {
        let z = normal_quantile(1.0 - alpha) + normal_quantile(MATCHED_POWER);
        EffectMixture { smallest_effect: z / expected_samples.sqrt() }
    }

    /// Natural log of the mixture's likelihood ratio for standardized evidence `y` at intrinsic time `t`.
    pub fn log_ratio(&self, y: f64, t: f64) -> f64 {
        let mut terms = [0.0; COMPONENT_WEIGHTS.len()];
        let mut theta = self.smallest_effect;
        for (term, weight) in terms.iter_mut().zip(COMPONENT_WEIGHTS) {
            *term = weight.ln() + theta * y - 0.5 * theta * theta * t;
            theta *= 2.0;
        }
        let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !top.is_finite() {
            return top;
        }
        top + terms.iter().map(|x| (x - top).exp()).sum::<f64>().ln()
    }

    /// The always-valid p-value at this look for standardized evidence `y` at intrinsic time `t`: min(1, 1/Λ).
    pub fn p_value(&self, y: f64, t: f64) -> f64 {
        let log_ratio = self.log_ratio(y, t);
        if log_ratio.is_nan() { 1.0 } else { (-log_ratio).exp().min(1.0) }
    }
}

/// A difference estimated from the looks of a step, with a variance that may depend on the null value tested
/// (score-type for shares).
pub struct NullTest<'a> {
    /// The estimate of the difference canary − baseline.
    pub difference: f64,
    /// Intrinsic time: effective samples `Σ n_c·n_b/(n_c+n_b)` over the looks.
    pub time: f64,
    /// The variance of the estimate when the true difference is the argument.
    pub variance_at: &'a dyn Fn(f64) -> f64,
}

impl NullTest<'_> {
    /// The always-valid p-value of "the difference is at least `null`" (small when the estimate is surely below).
    pub fn p_below(&self, mixture: EffectMixture, null: f64) -> f64 {
        self.p(mixture, null, null - self.difference)
    }

    /// The always-valid p-value of "the difference is at most `null`" (small when the estimate is surely above).
    pub fn p_above(&self, mixture: EffectMixture, null: f64) -> f64 {
        self.p(mixture, null, self.difference - null)
    }

    fn p(&self, mixture: EffectMixture, null: f64, gap: f64) -> f64 {
        let variance = (self.variance_at)(null);
        if !(variance > 0.0 && variance.is_finite() && self.time > 0.0) {
            return 1.0;
        }
        // Standardized evidence: the gap in units of its standard deviation, scaled to intrinsic time.
        let y = gap / variance.sqrt() * self.time.sqrt();
        mixture.p_value(y, self.time)
    }

    /// The confidence sequence: each end is a one-sided (1 − α) bound, the set of null values the one-sided test
    /// on that side does not reject, found by bisection within `limits`.
    pub fn bounds(&self, mixture: EffectMixture, alpha: f64, limits: (f64, f64)) -> (f64, f64) {
        let d = self.difference;
        let search = |mut inside: f64, mut outside: f64, rejected: &dyn Fn(f64) -> bool| {
            if !rejected(outside) {
                return outside;
            }
            for _ in 0..100 {
                let middle = 0.5 * (inside + outside);
                if rejected(middle) {
                    outside = middle;
                } else {
                    inside = middle;
                }
                if (outside - inside).abs() <= 1e-12 * (1.0 + d.abs()) {
                    break;
                }
            }
            0.5 * (inside + outside)
        };
        let lower = search(d, limits.0.min(d), &|null| self.p_above(mixture, null) <= alpha);
        let upper = search(d, limits.1.max(d), &|null| self.p_below(mixture, null) <= alpha);
        (lower, upper)
    }
}

/// The precision ρ of the normal mixture, in units of effective samples. Fixed before the data is seen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MixingPrecision(pub f64);

impl MixingPrecision {
    /// The ρ that makes the two-sided boundary at level `alpha` tightest at `expected_samples` effective samples.
    ///
    /// Minimising `(t+ρ)·(ln((t+ρ)/ρ) + 2 ln(1/α))` over ρ at `t = m` gives `x − ln(1+x) = 2 ln(1/α)` with `x = m/ρ`,
    /// solved here by Newton's method (the left side is increasing and convex for x > 0).
    pub fn tuned_for(expected_samples: f64, alpha: f64) -> Self {
        let target = 2.0 * (1.0 / alpha).ln();
        // x − ln(1+x) ≈ x for large x; start above the root so Newton decreases monotonically onto it.
        let mut x = target + (1.0 + target).ln() + 1.0;
        for _ in 0..60 {
            let f = x - (1.0 + x).ln() - target;
            let slope = x / (1.0 + x);
            let step = f / slope;
            x -= step;
            if step.abs() < 1e-14 * x {
                break;
            }
        }
        MixingPrecision(expected_samples / x)
    }

    /// ρ from the variance τ² of the mixture over the standardized effect: ρ = 1/τ².
    pub fn from_mixing_variance(variance: f64) -> Self {
        MixingPrecision(1.0 / variance)
    }
}

/// An estimated difference between two arms, the input of the sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DifferenceEstimate {
    /// Observed difference canary − baseline.
    pub difference: f64,
    /// Estimated variance of the difference, `s_c²/n_c + s_b²/n_b`.
    pub variance: f64,
    /// Effective sample size `n_c·n_b/(n_c+n_b)`.
    pub effective_samples: f64,
}

impl DifferenceEstimate {
    /// Builds the estimate from per-arm means, per-sample variances and sample counts.
    pub fn from_arms(
        canary_mean: f64,
        canary_var: f64,
        canary_n: f64,
        baseline_mean: f64,
        baseline_var: f64,
        baseline_n: f64,
    ) -> Self {
        DifferenceEstimate {
            difference: canary_mean - baseline_mean,
            variance: canary_var / canary_n + baseline_var / baseline_n,
            effective_samples: canary_n * baseline_n / (canary_n + baseline_n),
        }
    }

    /// The same estimate with the arms swapped.
    pub fn swapped(self) -> Self {
        DifferenceEstimate { difference: -self.difference, ..self }
    }
}

/// The multiplier `z(t)` of `sqrt(V)` in the two-sided boundary at level `alpha`.
pub fn boundary_multiplier(effective_samples: f64, rho: MixingPrecision, alpha: f64) -> f64 {
    let t = effective_samples;
    let r = rho.0;
    ((1.0 + r / t) * (((t + r) / r).ln() + 2.0 * (1.0 / alpha).ln())).sqrt()
}

/// The half-width of the two-sided confidence sequence at level `alpha`.
pub fn half_width(estimate: &DifferenceEstimate, rho: MixingPrecision, alpha: f64) -> f64 {
    estimate.variance.sqrt() * boundary_multiplier(estimate.effective_samples, rho, alpha)
}

/// Natural log of the mixture likelihood ratio Λ for the null value `null_difference` of the difference:
/// `ln Λ = (d − δ₀)²/(2V) · t/(t+ρ) − ½ ln((t+ρ)/ρ)`.
pub fn log_mixture_ratio(estimate: &DifferenceEstimate, rho: MixingPrecision, null_difference: f64) -> f64 {
    let t = estimate.effective_samples;
    let r = rho.0;
    let gap = estimate.difference - null_difference;
    gap * gap / (2.0 * estimate.variance) * (t / (t + r)) - 0.5 * ((t + r) / r).ln()
}

/// The always-valid p-value of the one-sided null "difference ≥ `null_difference`" at this look, with the
/// variance of the difference evaluated *under that null* (`null_variance`), as score tests do. Not yet made
/// monotone across looks. 1 when the estimate is not below the null value.
pub fn p_value_below_with(
    estimate: &DifferenceEstimate,
    rho: MixingPrecision,
    null_difference: f64,
    null_variance: f64,
) -> f64 {
    p_value_below(&DifferenceEstimate { variance: null_variance, ..*estimate }, rho, null_difference)
}

/// The always-valid p-value of the one-sided null "difference ≤ `null_difference`", with the variance under that
/// null (see [`p_value_below_with`]).
pub fn p_value_above_with(
    estimate: &DifferenceEstimate,
    rho: MixingPrecision,
    null_difference: f64,
    null_variance: f64,
) -> f64 {
    p_value_above(&DifferenceEstimate { variance: null_variance, ..*estimate }, rho, null_difference)
}

/// The two-sided confidence sequence at level `alpha` as the set of null values not rejected, when the variance
/// depends on the null value (`variance_at`, score-type). Each end is found by bisection between the estimate and
/// `limits`; with a constant variance this equals `d ± half_width`.
pub fn score_bounds(
    estimate: &DifferenceEstimate,
    rho: MixingPrecision,
    alpha: f64,
    variance_at: &dyn Fn(f64) -> f64,
    limits: (f64, f64),
) -> (f64, f64) {
    let d = estimate.difference;
    let rejected = |null: f64| {
        let variance = variance_at(null);
        let at_null = DifferenceEstimate { variance, ..*estimate };
        variance > 0.0 && -log_mixture_ratio(&at_null, rho, null) < alpha.ln()
    };
    let search = |mut inside: f64, mut outside: f64| {
        if !rejected(outside) {
            return outside;
        }
        for _ in 0..80 {
            let middle = 0.5 * (inside + outside);
            if rejected(middle) {
                outside = middle;
            } else {
                inside = middle;
            }
            if (outside - inside).abs() <= 1e-12 * (1.0 + d.abs()) {
                break;
            }
        }
        0.5 * (inside + outside)
    };
    (search(d, limits.0.min(d)), search(d, limits.1.max(d)))
}

/// The always-valid p-value of the one-sided null "difference ≥ `null_difference`" at this look (not yet made
/// monotone across looks): the smallest α at which the upper end of the sequence lies below `null_difference`.
/// It is 1 when the estimate is not below the null value.
pub fn p_value_below(estimate: &DifferenceEstimate, rho: MixingPrecision, null_difference: f64) -> f64 {
    if estimate.difference >= null_difference {
        return 1.0;
    }
    (-log_mixture_ratio(estimate, rho, null_difference)).exp().min(1.0)
}

/// The always-valid p-value of the one-sided null "difference ≤ `null_difference`" at this look: the smallest α at
/// which the lower end of the sequence lies above `null_difference`.
pub fn p_value_above(estimate: &DifferenceEstimate, rho: MixingPrecision, null_difference: f64) -> f64 {
    p_value_below(&estimate.swapped(), rho, -null_difference)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate() -> DifferenceEstimate {
        DifferenceEstimate::from_arms(0.86, 0.12, 800.0, 0.9, 0.09, 7200.0)
    }

    #[test]
    fn score_bounds_with_a_constant_variance_equal_the_closed_form() {
        let e = estimate();
        let rho = MixingPrecision::tuned_for(500.0, 0.05);
        let (lo, hi) = score_bounds(&e, rho, 0.05, &|_| e.variance, (-1.0, 1.0));
        let h = half_width(&e, rho, 0.05);
        assert!((lo - (e.difference - h)).abs() < 1e-10, "{lo} vs {}", e.difference - h);
        assert!((hi - (e.difference + h)).abs() < 1e-10, "{hi} vs {}", e.difference + h);
    }

    #[test]
    fn p_value_at_the_interval_end_equals_alpha() {
        let e = estimate();
        let rho = MixingPrecision::tuned_for(500.0, 0.05);
        let upper = e.difference + half_width(&e, rho, 0.05);
        let p = p_value_above(&e, rho, upper - 2.0 * half_width(&e, rho, 0.05));
        assert!((p - 0.05).abs() < 1e-9, "p {p}");
        assert!((p_value_below(&e, rho, upper) - 0.05).abs() < 1e-9);
    }

    #[test]
    fn boundary_is_tightest_near_the_tuned_sample_size() {
        let rho = MixingPrecision::tuned_for(500.0, 0.05);
        let at = |t: f64| boundary_multiplier(t, rho, 0.05);
        assert!(at(500.0) < at(400.0) && at(500.0) < at(600.0));
        // Wider than a fixed-horizon 95% interval, by the price of looking at any time.
        assert!(at(500.0) > 1.96 * 1.5);
    }
}
