//! Sample ratio mismatch: is traffic reaching the canary in the share the route configures? A chi-square
//! goodness-of-fit test of the request counts per version against the configured weights, with its p-value made
//! anytime-valid by the same normal mixture as the metrics (the check runs at every look, so a fixed-horizon
//! p-value would raise false alarms more often than its level says).

use crate::format::{p, sig};
use crate::input::ArmPair;
use crate::sequence::MixingPrecision;
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

/// Checks the observed request split against `canary_weight` at significance `alpha`. `previous_p` is the
/// smallest always-valid p-value of earlier looks of the step (1 on the first).
pub fn check_sample_ratio(
    requests: ArmPair<f64>,
    canary_weight: f64,
    alpha: f64,
    rho: MixingPrecision,
    previous_p: f64,
) -> SrmVerdict {
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
        return verdict;
    }
    if !(canary_weight > 0.0 && canary_weight < 1.0) {
        verdict.reason = format!("canary weight {} leaves no split to check", sig(canary_weight));
        return verdict;
    }
    if total * canary_weight.min(1.0 - canary_weight) < MIN_EXPECTED_PER_ARM {
        verdict.reason = format!("too few requests ({}) to check the traffic split yet", sig(total));
        return verdict;
    }
    let Some(test) = chi_square_goodness_of_fit(&[canary, baseline], &[canary_weight, 1.0 - canary_weight]) else {
        verdict.verdict = Verdict::Inconclusive;
        verdict.reason = "the traffic split could not be tested".into();
        return verdict;
    };
    verdict.test = Some(test);
    verdict.always_valid_p = previous_p.min(always_valid_srm_p(test.statistic, total, rho));
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
    verdict
}
