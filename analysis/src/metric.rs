//! One metric at one look: check the counts, estimate both arms, run the confidence sequence against the
//! tolerance and update the running p-values. The step (see [`crate::step`]) then applies Holm–Bonferroni.

use crate::config::{Direction, MetricConfig, MetricKind};
use crate::format::{p, sig};
use crate::histogram::{Histogram, compare_histograms};
use crate::input::{ArmCounts, MetricObservation};
use crate::sequence::{
    DifferenceEstimate, MixingPrecision, half_width, p_value_above_with, p_value_below_with, score_bounds,
};
use crate::state::MetricState;
use crate::textbook::welch_t_test;
use crate::verdict::{ArmEstimate, LatencyDetail, MetricVerdict, Verdict};

/// Settings shared by all metrics of a step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub alpha: f64,
    pub rho: MixingPrecision,
    pub min_samples: f64,
}

/// A metric's result before Holm–Bonferroni decides which Fail candidates stand.
#[derive(Debug, Clone)]
pub(crate) struct Assessment {
    /// The verdict with every number filled in; `verdict` is Continue, Pass or Inconclusive here.
    pub verdict: MetricVerdict,
    /// The state to carry to the next look.
    pub state: MetricState,
    /// Whether the estimate was usable at this look (so the fail p-value may have moved).
    pub tested: bool,
    /// Words that describe where the confidence sequence lies, for the final reason.
    pub summary: String,
}

/// The estimates of both arms of a metric, in the metric's units.
struct ArmsEstimate {
    canary: ArmEstimate,
    baseline: ArmEstimate,
    canary_var: f64,
    baseline_var: f64,
    direction: Direction,
    latency: Option<LatencyDetail>,
    welch: Option<crate::textbook::TestResult>,
    /// For shares: (canary successes, canary trials, baseline successes, baseline trials), to compute the
    /// variance under a null value of the difference.
    shares: Option<(f64, f64, f64, f64)>,
}

/// The variance of the difference of two shares when the true difference is `null` (canary − baseline): both
/// shares re-estimated from the pooled counts under that constraint, then smoothed as in [`share`].
fn share_null_variance(shares: (f64, f64, f64, f64), null: f64) -> f64 {
    let (cs, cn, bs, bn) = shares;
    let baseline = ((cs + bs - cn * null) / (cn + bn)).clamp((-null).max(0.0), (1.0 - null).min(1.0));
    let canary = (baseline + null).clamp(0.0, 1.0);
    let smooth = |p: f64, n: f64| {
        let q = (p * n + 1.0) / (n + 2.0);
        q * (1.0 - q) / n
    };
    smooth(canary, cn) + smooth(baseline, bn)
}

fn inconclusive(config: &MetricConfig, previous: &MetricState, reason: String) -> Assessment {
    Assessment {
        verdict: MetricVerdict {
            name: config.name.clone(),
            verdict: Verdict::Inconclusive,
            reason,
            canary: None,
            baseline: None,
            effect: None,
            margin: None,
            lower_bound: None,
            upper_bound: None,
            always_valid_p: previous.fail_p,
            pass_p: previous.pass_p,
            fail_threshold: None,
            latency: None,
            welch: None,
        },
        state: previous.clone(),
        tested: false,
        summary: String::new(),
    }
}

/// Assesses one metric at one look.
pub(crate) fn assess(
    config: &MetricConfig,
    observation: Option<&MetricObservation>,
    previous: &MetricState,
    settings: Settings,
) -> Assessment {
    let Some(observation) = observation else {
        return inconclusive(
            config,
            previous,
            "no counts for this metric at this look; check that its Prometheus query returns data for both versions"
                .into(),
        );
    };
    if let Err(problem) = check_counts(config, observation) {
        return inconclusive(config, previous, problem);
    }
    let canary_n = observation.canary.samples();
    let baseline_n = observation.baseline.samples();
    if canary_n < previous.canary_samples || baseline_n < previous.baseline_samples {
        return inconclusive(
            config,
            previous,
            format!(
                "cumulative counts went down (canary {} -> {}, baseline {} -> {}): a counter reset, e.g. a restarted pod; \
                 query increases since the step began",
                sig(previous.canary_samples),
                sig(canary_n),
                sig(previous.baseline_samples),
                sig(baseline_n)
            ),
        );
    }
    let mut state = MetricState { canary_samples: canary_n, baseline_samples: baseline_n, ..previous.clone() };
    let min_samples = config.min_samples_or(settings.min_samples);
    if canary_n < min_samples || baseline_n < min_samples {
        let mut waiting = inconclusive(
            config,
            &state,
            format!(
                "waiting for {} samples per version (canary {}, baseline {})",
                sig(min_samples),
                sig(canary_n),
                sig(baseline_n)
            ),
        );
        waiting.verdict.verdict = Verdict::Continue;
        return waiting;
    }
    let arms = match estimate_arms(config, observation, &mut state) {
        Ok(arms) => arms,
        Err(problem) => return inconclusive(config, previous, problem),
    };
    let estimate = DifferenceEstimate::from_arms(
        arms.canary.estimate,
        arms.canary_var,
        arms.canary.samples,
        arms.baseline.estimate,
        arms.baseline_var,
        arms.baseline.samples,
    );
    if !(estimate.variance > 0.0 && estimate.variance.is_finite() && estimate.difference.is_finite()) {
        return inconclusive(
            config,
            previous,
            "the metric shows no variation in either version, so no comparison is possible; check the query".into(),
        );
    }
    let sign = arms.direction.sign();
    let margin = config.tolerance.margin(arms.baseline.estimate);
    let oriented = DifferenceEstimate { difference: sign * estimate.difference, ..estimate };
    let boundary = -sign * margin;
    // Shares use the variance under the tested null value (score-type); means use each arm's own variance.
    let variance_at = |null: f64| match arms.shares {
        Some(shares) => share_null_variance(shares, null),
        None => estimate.variance,
    };
    let null_variance = variance_at(boundary);
    // Oriented so that positive is better: fail when surely below −margin, pass when surely above it.
    let fail_p = p_value_below_with(&oriented, settings.rho, -margin, null_variance);
    let pass_p = p_value_above_with(&oriented, settings.rho, -margin, null_variance);
    state.fail_p = state.fail_p.min(fail_p);
    state.pass_p = state.pass_p.min(pass_p);
    let (lower, upper) = match arms.shares {
        Some(_) => score_bounds(&estimate, settings.rho, settings.alpha, &variance_at, (-1.0, 1.0)),
        None => {
            let h = half_width(&estimate, settings.rho, settings.alpha);
            (estimate.difference - h, estimate.difference + h)
        }
    };
    let side = match (lower > boundary, upper < boundary) {
        (true, _) => "above",
        (_, true) => "below",
        _ => "around",
    };
    let summary = format!(
        "canary {} vs baseline {} (n {}/{}), effect {}, {}% confidence sequence [{}, {}] {} the tolerance boundary {}",
        sig(arms.canary.estimate),
        sig(arms.baseline.estimate),
        sig(arms.canary.samples),
        sig(arms.baseline.samples),
        sig(estimate.difference),
        sig(100.0 * (1.0 - settings.alpha)),
        sig(lower),
        sig(upper),
        if side == "around" { "still straddles" } else { side },
        sig(boundary),
    );
    let verdict = if state.pass_p <= settings.alpha && state.decided != Some(Verdict::Fail) {
        Verdict::Pass
    } else {
        Verdict::Continue
    };
    let reason = match verdict {
        Verdict::Pass => format!("{summary}: within tolerance (pass p {})", p(state.pass_p)),
        _ => format!("{summary}: need more samples (fail p {}, pass p {})", p(state.fail_p), p(state.pass_p)),
    };
    Assessment {
        verdict: MetricVerdict {
            name: config.name.clone(),
            verdict,
            reason,
            canary: Some(arms.canary),
            baseline: Some(arms.baseline),
            effect: Some(estimate.difference),
            margin: Some(margin),
            lower_bound: Some(lower),
            upper_bound: Some(upper),
            always_valid_p: state.fail_p,
            pass_p: state.pass_p,
            fail_threshold: None,
            latency: arms.latency,
            welch: arms.welch,
        },
        state,
        tested: true,
        summary,
    }
}

/// Checks that the counts have the metric's shape and are finite, non-negative and consistent.
fn check_counts(config: &MetricConfig, observation: &MetricObservation) -> Result<(), String> {
    for (arm, counts) in [("canary", &observation.canary), ("baseline", &observation.baseline)] {
        match (&config.kind, counts) {
            (MetricKind::Ratio { .. }, ArmCounts::Ratio { successes, trials }) => {
                if !(successes.is_finite() && trials.is_finite() && *successes >= 0.0 && *trials >= 0.0) {
                    return Err(format!(
                        "{arm} counts are not finite non-negative numbers (successes {successes}, trials {trials})"
                    ));
                }
                if successes > trials {
                    return Err(format!(
                        "{arm} has more successes ({}) than trials ({}); the two queries must count the same requests",
                        sig(*successes),
                        sig(*trials)
                    ));
                }
            }
            (MetricKind::Mean { .. }, ArmCounts::Mean { sum, sum_sq, count }) => {
                if !(sum.is_finite() && sum_sq.is_finite() && count.is_finite() && *count >= 0.0 && *sum_sq >= 0.0) {
                    return Err(format!(
                        "{arm} sums are not valid (sum {sum}, sum of squares {sum_sq}, count {count})"
                    ));
                }
            }
            (MetricKind::Latency { .. }, ArmCounts::Histogram { buckets }) => {
                Histogram::from_cumulative(buckets).map_err(|e| format!("{arm}: {e}"))?;
            }
            (kind, _) => {
                let wanted = match kind {
                    MetricKind::Ratio { .. } => "successes and trials",
                    MetricKind::Mean { .. } => "sum, sumSq and count",
                    MetricKind::Latency { .. } => "histogram buckets",
                };
                return Err(format!("{arm} counts have the wrong shape for this metric; expected {wanted}"));
            }
        }
    }
    Ok(())
}

/// A share with its per-sample variance, smoothed by one pseudo-success and one pseudo-failure so that 0/n and
/// n/n do not claim zero variance.
fn share(successes: f64, trials: f64) -> (f64, f64) {
    let smoothed = (successes + 1.0) / (trials + 2.0);
    (successes / trials, smoothed * (1.0 - smoothed))
}

fn mean_and_variance(sum: f64, sum_sq: f64, count: f64) -> (f64, f64) {
    let mean = sum / count;
    let variance = ((sum_sq - sum * sum / count) / (count - 1.0)).max(0.0);
    (mean, variance)
}

fn estimate_arms(
    config: &MetricConfig,
    observation: &MetricObservation,
    state: &mut MetricState,
) -> Result<ArmsEstimate, String> {
    match (&config.kind, &observation.canary, &observation.baseline) {
        (
            MetricKind::Ratio { direction },
            ArmCounts::Ratio { successes: cs, trials: cn },
            ArmCounts::Ratio { successes: bs, trials: bn },
        ) => {
            let (c, cv) = share(*cs, *cn);
            let (b, bv) = share(*bs, *bn);
            Ok(ArmsEstimate {
                canary: ArmEstimate { estimate: c, samples: *cn },
                baseline: ArmEstimate { estimate: b, samples: *bn },
                canary_var: cv,
                baseline_var: bv,
                direction: *direction,
                latency: None,
                welch: None,
                shares: Some((*cs, *cn, *bs, *bn)),
            })
        }
        (
            MetricKind::Mean { direction },
            ArmCounts::Mean { sum: csum, sum_sq: csq, count: cn },
            ArmCounts::Mean { sum: bsum, sum_sq: bsq, count: bn },
        ) => {
            let (c, cv) = mean_and_variance(*csum, *csq, *cn);
            let (b, bv) = mean_and_variance(*bsum, *bsq, *bn);
            Ok(ArmsEstimate {
                canary: ArmEstimate { estimate: c, samples: *cn },
                baseline: ArmEstimate { estimate: b, samples: *bn },
                canary_var: cv,
                baseline_var: bv,
                direction: *direction,
                latency: None,
                welch: welch_t_test(c, cv, *cn, b, bv, *bn),
                shares: None,
            })
        }
        (
            MetricKind::Latency { quantile, threshold_slack, threshold_seconds },
            ArmCounts::Histogram { buckets: cb },
            ArmCounts::Histogram { buckets: bb },
        ) => {
            let canary = Histogram::from_cumulative(cb)?;
            let baseline = Histogram::from_cumulative(bb)?;
            if canary.bounds() != baseline.bounds() {
                return Err("canary and baseline histograms have different bucket bounds; both versions must use the same buckets".into());
            }
            let baseline_quantile = baseline.quantile(*quantile);
            let threshold = match (state.latency_threshold, threshold_seconds) {
                (Some(fixed), _) => fixed,
                (None, Some(configured)) => baseline.bound_at_or_above(*configured).ok_or_else(|| {
                    format!(
                        "the threshold {}s is above the largest finite bucket bound; add buckets or lower it",
                        sig(*configured)
                    )
                })?,
                (None, None) => {
                    let base = baseline_quantile.ok_or("the baseline histogram is empty")?;
                    baseline.bound_at_or_above(base * (1.0 + threshold_slack)).ok_or_else(|| {
                        format!(
                            "the baseline p{} x (1 + {}) = {}s is above the largest finite bucket bound; add larger buckets",
                            sig(100.0 * quantile),
                            sig(*threshold_slack),
                            sig(base * (1.0 + threshold_slack))
                        )
                    })?
                }
            };
            state.latency_threshold = Some(threshold);
            let slow = |h: &Histogram| h.total() - h.count_at_most(threshold);
            let (canary_slow, baseline_slow) = (slow(&canary), slow(&baseline));
            let (c, cv) = share(canary_slow, canary.total());
            let (b, bv) = share(baseline_slow, baseline.total());
            Ok(ArmsEstimate {
                canary: ArmEstimate { estimate: c, samples: canary.total() },
                baseline: ArmEstimate { estimate: b, samples: baseline.total() },
                canary_var: cv,
                baseline_var: bv,
                direction: Direction::LowerIsBetter,
                latency: Some(LatencyDetail {
                    threshold_seconds: threshold,
                    quantile: *quantile,
                    canary_quantile_seconds: canary.quantile(*quantile),
                    baseline_quantile_seconds: baseline_quantile,
                    mann_whitney: compare_histograms(&canary, &baseline),
                }),
                welch: None,
                shares: Some((canary_slow, canary.total(), baseline_slow, baseline.total())),
            })
        }
        _ => Err("counts have the wrong shape for this metric".into()),
    }
}
