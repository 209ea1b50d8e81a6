//! Sample ratio mismatch: is traffic reaching the canary in the share the route configures? Each look's requests
//! are compared with the weight configured for that look (so a weight that changes within a step is no mismatch),
//! and the excess of canary requests summed over the looks is tested with an anytime-valid normal mixture (the
//! check runs at every look, so a fixed-horizon p-value would raise false alarms more often than its level says).
//! With one weight for the whole step this is the chi-square goodness-of-fit test of the cumulative counts.

use crate::format::{p, sig};
use crate::input::ArmPair;
use crate::sequence::MixingPrecision;
use crate::state::SrmState;
use crate::textbook::chi_square_goodness_of_fit;
use crate::verdict::{SrmVerdict, Verdict};

/// The fewest expected requests per arm before the chi-square approximation is trusted.
const MIN_EXPECTED_PER_ARM: f64 = 5.0;

/// The mixing precision for the SRM check: tightest when the canary has received `expected_samples` requests,
/// i.e. at `expected_samples / canary_weight` requests in all (intrinsic time is the total request count).
pub fn srm_mixing_precision(expected_samples: f64, canary_weight: f64, alpha: f64) -> MixingPrecision {
    MixingPrecision::tuned_for(expected_samples / canary_weight.clamp(1e-6, 1.0), alpha)
}

/// The always-valid p-value of "traffic follows the weight" given the chi-square statistic (1 degree of freedom)
/// over `total` requests: `sqrt((N+ρ)/ρ) · exp(−χ²·N / (2(N+ρ)))`, capped at 1.
pub fn always_valid_srm_p(chi_square: f64, total: f64, rho: MixingPrecision) -> f64 {
    let r = rho.0;
    (0.5 * ((total + r) / r).ln() - chi_square * total / (2.0 * (total + r))).exp().min(1.0)
}

/// The always-valid p-value from the per-look sums: `sqrt((W+ρw)/ρw) · exp(−E² / (2(W+ρw)))` with `E` the summed
/// excess of canary requests, `W` its variance and `ρw = ρ·w(1 − w)` the mixing precision in variance units.
pub fn always_valid_stratified_srm_p(excess: f64, variance: f64, rho: MixingPrecision, weight: f64) -> f64 {
    let r = rho.0 * weight * (1.0 - weight);
    if r.is_nan() || r <= 0.0 {
        return 1.0;
    }
    (0.5 * ((variance + r) / r).ln() - excess * excess / (2.0 * (variance + r))).exp().min(1.0)
}

/// Checks the observed request split against `canary_weight` at significance `alpha`. `previous_p` is the
/// smallest always-valid p-value of earlier looks of the step (1 on the first) and `previous` the per-look sums
/// carried from the last look. Returns the verdict and the sums to carry on.
pub fn check_sample_ratio(
    requests: ArmPair<f64>,
    canary_weight: f64,
    alpha: f64,
    rho: MixingPrecision,
    previous_p: f64,
    previous: Option<&SrmState>,
) -> (SrmVerdict, Option<SrmState>) {
    let canary = requests.canary;
    let baseline = requests.baseline;
    let total = canary + baseline;
    let observed_share = if total > 0.0 { canary / total } else { 0.0 };
    let mut verdict = SrmVerdict {
        verdict: Verdict::Continue,
        expected_canary_share: canary_weight,
        observed_canary_share: observed_share,
        canary_requests: canary,
        baseline_requests: baseline,
        test: None,
        always_valid_p: previous_p,
        reason: String::new(),
    };
    if !(canary.is_finite() && baseline.is_finite() && canary >= 0.0 && baseline >= 0.0) {
        verdict.verdict = Verdict::Inconclusive;
        verdict.reason =
            format!("request counts are not finite non-negative numbers (canary {canary}, baseline {baseline})");
        return (verdict, previous.copied());
    }
    // Carried sums that this look's counts contradict start over (everything so far becomes one look).
    let carried = previous.copied().filter(|s| s.canary <= canary && s.baseline <= baseline);
    let mut sums = carried.unwrap_or(SrmState { canary: 0.0, baseline: 0.0, excess: 0.0, variance: 0.0 });
    let (canary_k, baseline_k) = (canary - sums.canary, baseline - sums.baseline);
    sums.canary = canary;
    sums.baseline = baseline;
    if !(canary_weight > 0.0 && canary_weight < 1.0) {
        verdict.reason = format!("canary weight {} leaves no split to check", sig(canary_weight));
        return (verdict, Some(sums));
    }
    sums.excess += canary_k - canary_weight * (canary_k + baseline_k);
    sums.variance += (canary_k + baseline_k) * canary_weight * (1.0 - canary_weight);
    if total * canary_weight.min(1.0 - canary_weight) < MIN_EXPECTED_PER_ARM {
        verdict.reason = format!("too few requests ({}) to check the traffic split yet", sig(total));
        return (verdict, Some(sums));
    }
    let Some(test) = chi_square_goodness_of_fit(&[canary, baseline], &[canary_weight, 1.0 - canary_weight]) else {
        verdict.verdict = Verdict::Inconclusive;
        verdict.reason = "the traffic split could not be tested".into();
        return (verdict, Some(sums));
    };
    verdict.test = Some(test);
    verdict.always_valid_p =
        previous_p.min(always_valid_stratified_srm_p(sums.excess, sums.variance, rho, canary_weight));
    if verdict.always_valid_p < alpha {
        verdict.verdict = Verdict::Fail;
        verdict.reason = format!(
            "traffic is not reaching the canary as configured: it got {}% of {} requests, configured {}% \
             (chi-square {}, always-valid p {} < {}); check the route weights and that canary pods are ready",
            sig(100.0 * observed_share),
            sig(total),
            sig(100.0 * canary_weight),
            sig(test.statistic),
            p(verdict.always_valid_p),
            p(alpha)
        );
    } else {
        verdict.verdict = Verdict::Pass;
        verdict.reason = format!(
            "canary got {}% of {} requests, configured {}% (chi-square {}, always-valid p {})",
            sig(100.0 * observed_share),
            sig(total),
            sig(100.0 * canary_weight),
            sig(test.statistic),
            p(verdict.always_valid_p)
        );
    }
    (verdict, Some(sums))
}
