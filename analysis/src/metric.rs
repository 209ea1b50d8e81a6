//! One metric at one look: check the counts, fold this look's increments into the metric's strata (see
//! [`crate::strata`]), test the stratified difference against the tolerance with the effect mixture and update the
//! running p-values. The step (see [`crate::step`]) then applies Holm–Bonferroni and keeps decisions final.

use crate::config::{Direction, MetricConfig, MetricKind};
use crate::format::{p, sig};
use crate::histogram::{Histogram, compare_histograms, rank_stratum};
use crate::input::{ArmCounts, MetricObservation};
use crate::sequence::{EffectMixture, NullTest};
use crate::state::MetricState;
use crate::strata::{MAX_BUCKETS, Shape, Strata, Stratum};
use crate::textbook::{TestResult, chi_square_sf, welch_t_test};
use crate::verdict::{ArmEstimate, LatencyDetail, MetricVerdict, Movement, QuantileShift, Verdict};

/// The quantiles whose movement a latency verdict reports.
const REPORTED_QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// Settings shared by all metrics of a step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub alpha: f64,
    pub mixture: EffectMixture,
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
            mantel_haenszel: None,
            welch: None,
        },
        state: previous.clone(),
        tested: false,
        summary: String::new(),
    }
}

/// This look's cumulative counts of both arms as flat vectors, in the shape the strata keep.
struct Cumulative {
    shape: Shape,
    canary: Vec<f64>,
    baseline: Vec<f64>,
    histograms: Option<(Histogram, Histogram)>,
}

fn cumulative(observation: &MetricObservation) -> Result<Cumulative, String> {
    match (&observation.canary, &observation.baseline) {
        (ArmCounts::Ratio { successes: cs, trials: cn }, ArmCounts::Ratio { successes: bs, trials: bn }) => {
            Ok(Cumulative { shape: Shape::Ratio, canary: vec![*cs, *cn], baseline: vec![*bs, *bn], histograms: None })
        }
        (
            ArmCounts::Mean { sum: csum, sum_sq: csq, count: cn },
            ArmCounts::Mean { sum: bsum, sum_sq: bsq, count: bn },
        ) => Ok(Cumulative {
            shape: Shape::Mean,
            canary: vec![*csum, *csq, *cn],
            baseline: vec![*bsum, *bsq, *bn],
            histograms: None,
        }),
        (ArmCounts::Histogram { buckets: cb }, ArmCounts::Histogram { buckets: bb }) => {
            let canary = Histogram::from_cumulative(cb)?;
            let baseline = Histogram::from_cumulative(bb)?;
            if canary.bounds() != baseline.bounds() {
                return Err("canary and baseline histograms have different bucket bounds; both versions must use the same buckets".into());
            }
            if canary.counts().len() > MAX_BUCKETS {
                return Err(format!(
                    "the histogram has {} buckets; at most {MAX_BUCKETS} are supported, so aggregate buckets in the query",
                    canary.counts().len()
                ));
            }
            Ok(Cumulative {
                shape: Shape::Histogram(canary.counts().len()),
                canary: canary.counts().to_vec(),
                baseline: baseline.counts().to_vec(),
                histograms: Some((canary, baseline)),
            })
        }
        _ => Err("counts have the wrong shape for this metric".into()),
    }
}

/// One look's contribution, from the increments of both arms.
fn stratum(shape: Shape, canary: &[f64], baseline: &[f64]) -> Option<Stratum> {
    match shape {
        Shape::Ratio => {
            let (cs, cn, bs, bn) = (canary[0], canary[1], baseline[0], baseline[1]);
            if !(cn > 0.0 && bn > 0.0) {
                return None;
            }
            let (pc, pb) = ((cs / cn).clamp(0.0, 1.0), (bs / bn).clamp(0.0, 1.0));
            let n = cn + bn;
            let pooled = (pc * cn + pb * bn) / n;
            let t = cn * bn / n;
            // The exact variance of t·d given the look's margins (Cochran-Mantel-Haenszel), for the reference test.
            let exact = if n > 1.0 { t * pooled * (1.0 - pooled) * n / (n - 1.0) } else { 0.0 };
            // t²·(p_c(1−p_c)/n_c + p_b(1−p_b)/n_b) with p_c = a + e·δ, p_b = a − c·δ (a the pooled share, c and e
            // the arms' shares of the look's samples) is q0 + q1·δ − q2·δ².
            let (c, e) = (cn / n, bn / n);
            let quadratic =
                [t * pooled * (1.0 - pooled), t * (1.0 - 2.0 * pooled) * (e - c), t * (e * e * e + c * c * c)];
            Some(Stratum {
                canary_n: cn,
                baseline_n: bn,
                difference: pc - pb,
                spread: vec![exact, quadratic[0], quadratic[1], quadratic[2]],
            })
        }
        Shape::Mean => {
            let (csum, csq, cn, bsum, bsq, bn) =
                (canary[0], canary[1], canary[2], baseline[0], baseline[1], baseline[2]);
            if !(cn > 0.0 && bn > 0.0) {
                return None;
            }
            let within = |sum: f64, sq: f64, n: f64| (sq - sum * sum / n).max(0.0);
            Some(Stratum {
                canary_n: cn,
                baseline_n: bn,
                difference: csum / cn - bsum / bn,
                spread: vec![within(csum, csq, cn), (cn - 1.0).max(0.0), within(bsum, bsq, bn), (bn - 1.0).max(0.0)],
            })
        }
        Shape::Histogram(buckets) => {
            let (difference, variance) = rank_stratum(canary, baseline)?;
            let (cn, bn): (f64, f64) = (canary.iter().sum(), baseline.iter().sum());
            let t = cn * bn / (cn + bn);
            let mut spread = Vec::with_capacity(buckets);
            spread.push(variance);
            let (mut c_below, mut b_below) = (0.0, 0.0);
            for (c, b) in canary.iter().zip(baseline).take(buckets.saturating_sub(1)) {
                c_below += c;
                b_below += b;
                spread.push(t * (c_below / cn - b_below / bn));
            }
            Some(Stratum { canary_n: cn, baseline_n: bn, difference, spread })
        }
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
    let now = match cumulative(observation) {
        Ok(now) => now,
        Err(problem) => return inconclusive(config, previous, problem),
    };
    // The strata carried from earlier looks, if they are consistent with this look's counts; else start over
    // with everything since the step began as one stratum (what the first look does).
    let mut note = String::new();
    let mut strata = match &previous.strata {
        Some(carried) => match carried.check(now.shape, &now.canary, &now.baseline) {
            Ok(()) => carried.clone(),
            Err(problem) => {
                note = format!(" (the carried per-look sums were discarded: {problem})");
                Strata::empty(now.shape)
            }
        },
        None => Strata::empty(now.shape),
    };
    let (canary_increment, baseline_increment) = strata.increments(&now.canary, &now.baseline);
    let decreasing = |increment: &[f64]| {
        increment.iter().enumerate().any(|(i, x)| *x < 0.0 && !(now.shape == Shape::Mean && i == 0))
    };
    if decreasing(&canary_increment) || decreasing(&baseline_increment) {
        return inconclusive(
            config,
            previous,
            "a cumulative count went down since the last look (a counter reset or a racing scrape); query increases \
             since the step began"
                .into(),
        );
    }
    let look = stratum(now.shape, &canary_increment, &baseline_increment);
    strata.absorb(now.canary.clone(), now.baseline.clone(), look);
    let mut state = MetricState {
        canary_samples: canary_n,
        baseline_samples: baseline_n,
        strata: Some(strata),
        ..previous.clone()
    };
    let min_samples = config.min_samples_or(settings.min_samples);
    if canary_n < min_samples || baseline_n < min_samples {
        let mut waiting = inconclusive(
            config,
            &state,
            format!(
                "waiting for {} samples per version (canary {}, baseline {}){note}",
                sig(min_samples),
                sig(canary_n),
                sig(baseline_n)
            ),
        );
        waiting.verdict.verdict = Verdict::Continue;
        return waiting;
    }
    match judge(config, observation, &now, &mut state, settings) {
        Ok(mut assessment) => {
            assessment.verdict.reason.push_str(&note);
            assessment
        }
        Err(problem) => {
            // Keep the strata (this look's counts are folded in) so the next look takes the right increments.
            inconclusive(config, &state, problem)
        }
    }
}

/// The estimate of both arms and the test of the stratified difference against the tolerance.
fn judge(
    config: &MetricConfig,
    observation: &MetricObservation,
    now: &Cumulative,
    state: &mut MetricState,
    settings: Settings,
) -> Result<Assessment, String> {
    let strata = state.strata.clone().ok_or("no strata")?;
    if strata.time.is_nan() || strata.time <= 0.0 {
        return Err("no look yet had samples from both versions in the same interval".into());
    }
    let time = strata.time;
    let difference = strata.difference();
    let (cw, bw) = (strata.canary_weight, strata.baseline_weight);
    let mut latency = None;
    let mut mantel_haenszel = None;
    let mut welch = None;
    let (direction, canary, baseline, limits): (Direction, ArmEstimate, ArmEstimate, (f64, f64));
    let variance_at: Box<dyn Fn(f64) -> f64>;
    match (&config.kind, &observation.canary, &observation.baseline) {
        (
            MetricKind::Ratio { direction: d },
            ArmCounts::Ratio { successes: cs, trials: cn },
            ArmCounts::Ratio { successes: bs, trials: bn },
        ) => {
            direction = *d;
            canary = ArmEstimate { estimate: cs / cn, samples: *cn };
            baseline = ArmEstimate { estimate: bs / bn, samples: *bn };
            limits = (-1.0, 1.0);
            let (cs, cn, bs, bn) = (*cs, *cn, *bs, *bn);
            let (q0, q1, q2) = (strata.spread[1], strata.spread[2], strata.spread[3]);
            // The larger of two estimates of the variance under the null: look by look (right when the base rate
            // drifts while the split changes) and from the smoothed totals (right when events are rare and a few
            // looks hold them all). Both agree when neither happens.
            variance_at = Box::new(move |null| {
                let (vc, vb) = share_null_variances((cs, cn, bs, bn), null);
                let per_look = (q0 + q1 * null - q2 * null * null).max(0.0);
                (vc * cw + vb * bw).max(per_look) / (time * time)
            });
            let exact = strata.spread[0];
            if exact > 0.0 {
                let statistic = strata.sum * strata.sum / exact;
                mantel_haenszel = Some(TestResult {
                    statistic,
                    p_value: chi_square_sf(statistic, 1.0),
                    degrees_of_freedom: Some(1.0),
                });
            }
        }
        (
            MetricKind::Mean { direction: d },
            ArmCounts::Mean { sum: csum, sum_sq: csq, count: cn },
            ArmCounts::Mean { sum: bsum, sum_sq: bsq, count: bn },
        ) => {
            direction = *d;
            let (c, cv) = mean_and_variance(*csum, *csq, *cn);
            let (b, bv) = mean_and_variance(*bsum, *bsq, *bn);
            canary = ArmEstimate { estimate: c, samples: *cn };
            baseline = ArmEstimate { estimate: b, samples: *bn };
            welch = welch_t_test(c, cv, *cn, b, bv, *bn);
            // Per-arm variance within looks (a drift of the mean over time is not noise); the whole-step variance
            // when too few looks had two samples of an arm.
            let within = |ss: f64, df: f64, fallback: f64| if df >= 1.0 { ss / df } else { fallback };
            let sc = within(strata.spread[0], strata.spread[1], cv);
            let sb = within(strata.spread[2], strata.spread[3], bv);
            let variance = (sc * cw + sb * bw) / (time * time);
            // Far beyond any bound the mixture can give (its largest component needs under 100 standard errors).
            let reach = 1e3 * variance.sqrt();
            limits = (difference - reach, difference + reach);
            variance_at = Box::new(move |_| variance);
        }
        (
            MetricKind::Latency { quantile, threshold_slack, threshold_seconds },
            ArmCounts::Histogram { .. },
            ArmCounts::Histogram { .. },
        ) => {
            let (canary_h, baseline_h) = now.histograms.as_ref().ok_or("no histograms")?;
            direction = Direction::LowerIsBetter;
            canary = ArmEstimate { estimate: 0.5 + difference, samples: canary_h.total() };
            baseline = ArmEstimate { estimate: 0.5, samples: baseline_h.total() };
            limits = (-0.5, 0.5);
            let variance = strata.spread[0] / (time * time);
            variance_at = Box::new(move |_| variance);
            latency = Some(latency_detail(
                canary_h,
                baseline_h,
                (*quantile, *threshold_slack, *threshold_seconds),
                &strata,
                state,
                settings,
            )?);
        }
        _ => return Err("counts have the wrong shape for this metric".into()),
    }
    let test = NullTest { difference, time, variance_at: variance_at.as_ref() };
    if !((test.variance_at)(difference) > 0.0 && difference.is_finite()) {
        return Err(
            "the metric shows no variation in either version, so no comparison is possible; check the query".into()
        );
    }
    let sign = direction.sign();
    let margin = config.tolerance.margin(baseline.estimate);
    let boundary = -sign * margin;
    // Fail: surely worse than the tolerance allows; Pass: surely not.
    let (fail_now, pass_now) = if sign > 0.0 {
        (test.p_below(settings.mixture, boundary), test.p_above(settings.mixture, boundary))
    } else {
        (test.p_above(settings.mixture, boundary), test.p_below(settings.mixture, boundary))
    };
    state.fail_p = state.fail_p.min(fail_now);
    state.pass_p = state.pass_p.min(pass_now);
    let (lower, upper) = test.bounds(settings.mixture, settings.alpha, limits);
    let oriented_worse = if sign > 0.0 { upper < boundary } else { lower > boundary };
    let oriented_better = if sign > 0.0 { lower > boundary } else { upper < boundary };
    let side = match (oriented_better, oriented_worse) {
        (true, _) => "on the better side of",
        (_, true) => "on the worse side of",
        _ => "still straddles",
    };
    let summary = format!(
        "canary {} vs baseline {} (n {}/{}), within-look effect {}, confidence sequence [{}, {}] {} the tolerance \
         boundary {}",
        sig(canary.estimate),
        sig(baseline.estimate),
        sig(canary.samples),
        sig(baseline.samples),
        sig(difference),
        sig(lower),
        sig(upper),
        side,
        sig(boundary),
    );
    let verdict = if state.pass_p <= settings.alpha { Verdict::Pass } else { Verdict::Continue };
    let reason = match verdict {
        Verdict::Pass => format!("{summary}: within tolerance (pass p {})", p(state.pass_p)),
        _ => format!("{summary}: need more samples (fail p {}, pass p {})", p(state.fail_p), p(state.pass_p)),
    };
    Ok(Assessment {
        verdict: MetricVerdict {
            name: config.name.clone(),
            verdict,
            reason,
            canary: Some(canary),
            baseline: Some(baseline),
            effect: Some(difference),
            margin: Some(margin),
            lower_bound: Some(lower),
            upper_bound: Some(upper),
            always_valid_p: state.fail_p,
            pass_p: state.pass_p,
            fail_threshold: None,
            latency,
            mantel_haenszel,
            welch,
        },
        state: state.clone(),
        tested: true,
        summary,
    })
}

/// The per-arm variances of a share when the true difference canary − baseline is `null`: both shares
/// re-estimated from the pooled counts under that constraint, then smoothed by one pseudo-success and one
/// pseudo-failure so that 0/n and n/n do not claim zero variance.
fn share_null_variances(shares: (f64, f64, f64, f64), null: f64) -> (f64, f64) {
    let (cs, cn, bs, bn) = shares;
    let baseline = ((cs + bs - cn * null) / (cn + bn)).clamp((-null).max(0.0), (1.0 - null).min(1.0));
    let canary = (baseline + null).clamp(0.0, 1.0);
    let smooth = |p: f64, n: f64| {
        let q = (p * n + 1.0) / (n + 2.0);
        q * (1.0 - q)
    };
    (smooth(canary, cn), smooth(baseline, bn))
}

/// The latency details: the slow-request threshold (fixed at the first usable look), quantiles and which of them
/// surely moved, and the fixed-horizon Mann-Whitney for parity with Kayenta.
fn latency_detail(
    canary: &Histogram,
    baseline: &Histogram,
    (quantile, threshold_slack, threshold_seconds): (f64, f64, Option<f64>),
    strata: &Strata,
    state: &mut MetricState,
    settings: Settings,
) -> Result<LatencyDetail, String> {
    let baseline_quantile = baseline.quantile(quantile);
    let threshold = match (state.latency_threshold, threshold_seconds) {
        (Some(fixed), _) => Some(fixed),
        (None, Some(configured)) => baseline.bound_at_or_above(configured),
        (None, None) => baseline_quantile.and_then(|q| baseline.bound_at_or_above(q * (1.0 + threshold_slack))),
    };
    state.latency_threshold = threshold;
    let slow_share = |h: &Histogram, t: f64| (h.total() - h.count_at_most(t)) / h.total();
    // Per bucket bound: the stratified difference of the shares at or below it, tested both ways at alpha over
    // the number of bounds; a quantile moved when the bound just above the baseline's quantile moved.
    let bounds = baseline.bounds();
    let time = strata.time;
    let edge_test = |index: usize| -> Movement {
        let (Some(sum), Some(bound)) = (strata.spread.get(index + 1), bounds.get(index)) else {
            return Movement::Unchanged;
        };
        let share = |h: &Histogram| h.count_at_most(*bound) / h.total();
        let (fc, fb) = (share(canary), share(baseline));
        let smooth = |f: f64, n: f64| {
            let q = (f * n + 1.0) / (n + 2.0);
            q * (1.0 - q)
        };
        let variance = (smooth(fc, canary.total()) * strata.canary_weight
            + smooth(fb, baseline.total()) * strata.baseline_weight)
            / (time * time);
        let test = NullTest { difference: sum / time, time, variance_at: &|_| variance };
        let level = settings.alpha / bounds.len().max(1) as f64;
        if test.p_below(settings.mixture, 0.0) <= level {
            Movement::Slower
        } else if test.p_above(settings.mixture, 0.0) <= level {
            Movement::Faster
        } else {
            Movement::Unchanged
        }
    };
    let quantiles = REPORTED_QUANTILES
        .iter()
        .map(|q| {
            let baseline_seconds = baseline.quantile(*q);
            let index = baseline_seconds.and_then(|s| bounds.iter().position(|b| *b >= s));
            QuantileShift {
                quantile: *q,
                canary_seconds: canary.quantile(*q),
                baseline_seconds,
                bound_seconds: index.and_then(|i| bounds.get(i).copied()),
                moved: index.map_or(Movement::Unchanged, edge_test),
            }
        })
        .collect();
    Ok(LatencyDetail {
        threshold_seconds: threshold,
        quantile,
        canary_quantile_seconds: canary.quantile(quantile),
        baseline_quantile_seconds: baseline_quantile,
        mann_whitney: compare_histograms(canary, baseline),
        canary_slow_share: threshold.map(|t| slow_share(canary, t)),
        baseline_slow_share: threshold.map(|t| slow_share(baseline, t)),
        quantiles,
    })
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

fn mean_and_variance(sum: f64, sum_sq: f64, count: f64) -> (f64, f64) {
    let mean = sum / count;
    let variance = ((sum_sq - sum * sum / count) / (count - 1.0)).max(0.0);
    (mean, variance)
}
