//! Prometheus latency histograms: validation of cumulative `le` buckets, quantiles the way `histogram_quantile`
//! computes them, the share of requests slower than a threshold, and the Mann-Whitney / Hodges-Lehmann comparison
//! on binned data (every observation in one bucket is a tie).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::input::Bucket;
use crate::textbook::normal_sf;

/// A checked histogram: finite upper bounds in increasing order and the count in each bucket (not cumulative),
/// with one more count than bounds for the `+Inf` bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<f64>,
    total: f64,
}

impl Histogram {
    /// Checks and converts cumulative buckets. Cumulative counts that dip slightly (a scrape that raced a
    /// request) are lifted to the running maximum, as Prometheus' `histogram_quantile` does.
    pub fn from_cumulative(buckets: &[Bucket]) -> Result<Self, String> {
        if buckets.is_empty() {
            return Err("the histogram has no buckets; check the query returns `_bucket` series".into());
        }
        if let Some(bad) = buckets.iter().find(|b| b.le.is_nan() || !b.count.is_finite() || b.count < 0.0) {
            return Err(format!("a bucket has an invalid bound or count (le {}, count {})", bad.le, bad.count));
        }
        let mut sorted: Vec<Bucket> = buckets.to_vec();
        sorted.sort_by(|a, b| a.le.total_cmp(&b.le));
        if sorted.windows(2).any(|w| w[0].le == w[1].le) {
            return Err("two buckets share one `le` bound; sum series per bound before passing them".into());
        }
        match sorted.last() {
            Some(last) if last.le == f64::INFINITY => {}
            _ => return Err("the histogram has no `+Inf` bucket, so its total is unknown".into()),
        }
        let mut bounds = Vec::with_capacity(sorted.len() - 1);
        let mut counts = Vec::with_capacity(sorted.len());
        let mut previous = 0.0_f64;
        for bucket in &sorted {
            let cumulative = bucket.count.max(previous);
            counts.push(cumulative - previous);
            previous = cumulative;
            if bucket.le.is_finite() {
                bounds.push(bucket.le);
            }
        }
        Ok(Histogram { bounds, counts, total: previous })
    }

    /// The finite bucket bounds.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// The count in each bucket (not cumulative), the `+Inf` bucket last.
    pub fn counts(&self) -> &[f64] {
        &self.counts
    }

    /// The number of observations (the `+Inf` bucket).
    pub fn total(&self) -> f64 {
        self.total
    }

    /// Observations at most `bound`; `bound` must be one of the bucket bounds.
    pub fn count_at_most(&self, bound: f64) -> f64 {
        self.bounds.iter().zip(&self.counts).take_while(|(b, _)| **b <= bound).map(|(_, c)| c).sum()
    }

    /// The `q`-quantile estimated like Prometheus' `histogram_quantile`: linear interpolation inside the bucket
    /// that holds rank `q·total` (the first bucket starts at 0 when its bound is positive); in the `+Inf` bucket the
    /// largest finite bound is returned. `None` for an empty histogram.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.total.is_nan() || self.total <= 0.0 {
            return None;
        }
        let rank = q * self.total;
        let mut below = 0.0;
        for (i, count) in self.counts.iter().enumerate() {
            if below + count >= rank && *count > 0.0 {
                let Some(&upper) = self.bounds.get(i) else {
                    return self.bounds.last().copied();
                };
                let lower = if i == 0 { upper.min(0.0) } else { self.bounds[i - 1] };
                return Some(lower + (upper - lower) * (rank - below) / count);
            }
            below += count;
        }
        self.bounds.last().copied()
    }

    /// The smallest bucket bound at or above `value`, if there is a finite one.
    pub fn bound_at_or_above(&self, value: f64) -> Option<f64> {
        self.bounds.iter().copied().find(|b| *b >= value)
    }

    /// A representative value per bucket for rank statistics: the bucket's midpoint, 0..bound for the first
    /// bucket, and the largest finite bound for the `+Inf` bucket.
    fn representatives(&self) -> Vec<f64> {
        let mut reps = Vec::with_capacity(self.counts.len());
        for i in 0..self.counts.len() {
            let rep = match (i.checked_sub(1).and_then(|j| self.bounds.get(j)), self.bounds.get(i)) {
                (Some(lo), Some(hi)) => 0.5 * (lo + hi),
                (None, Some(hi)) => 0.5 * hi.min(0.0) + 0.5 * hi,
                (Some(lo), None) => *lo,
                (None, None) => 0.0,
            };
            reps.push(rep);
        }
        reps
    }
}

/// One look of the stratified rank comparison: the difference of the arms' mean mid-rank scores within the look
/// (each bucket scores `F(below) + f(bucket)/2` of the look's pooled histogram, so higher means slower), which
/// equals P(canary slower than baseline) + ½·P(tie) − ½; and the permutation variance of `t·d` under "both arms
/// draw from the same distribution in this look". `None` when an arm got nothing in the look.
pub fn rank_stratum(canary: &[f64], baseline: &[f64]) -> Option<(f64, f64)> {
    let n_c: f64 = canary.iter().sum();
    let n_b: f64 = baseline.iter().sum();
    let n = n_c + n_b;
    if !(n_c > 0.0 && n_b > 0.0) || canary.len() != baseline.len() {
        return None;
    }
    let (mut below, mut mean_c, mut mean_b, mut first, mut second) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (c, b) in canary.iter().zip(baseline) {
        let share = (c + b) / n;
        let score = below + 0.5 * share;
        mean_c += c * score;
        mean_b += b * score;
        first += share * score;
        second += share * score * score;
        below += share;
    }
    let difference = mean_c / n_c - mean_b / n_b;
    let t = n_c * n_b / n;
    let variance = if n > 1.0 { t * (second - first * first).max(0.0) * n / (n - 1.0) } else { 0.0 };
    Some((difference, variance))
}

/// Mann-Whitney U on two binned samples, with the tie correction for observations sharing a bucket, and the
/// Hodges-Lehmann shift estimate. Fixed-horizon: shown for parity with Kayenta, not used for verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MannWhitney {
    /// U of the first sample (pairs where it is larger, ties counted half).
    pub u: f64,
    /// Normal approximation with tie and continuity correction, signed: positive when the first sample tends larger.
    pub z: f64,
    /// Two-sided p-value (scipy's `mannwhitneyu(method="asymptotic")`).
    pub p_value: f64,
    /// Hodges-Lehmann estimate of the shift first − second: the weighted median of pairwise differences of the
    /// bucket representatives. `None` when not computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hodges_lehmann: Option<f64>,
}

/// Mann-Whitney U of `first` against `second` given per-bin counts over the same ordered bins.
/// `None` when a sample is empty, the bins differ in number, or all observations tie.
pub fn mann_whitney_binned(first: &[f64], second: &[f64]) -> Option<MannWhitney> {
    if first.len() != second.len() {
        return None;
    }
    let n1: f64 = first.iter().sum();
    let n2: f64 = second.iter().sum();
    if !(n1 > 0.0 && n2 > 0.0) {
        return None;
    }
    let n = n1 + n2;
    let mut u = 0.0;
    let mut second_below = 0.0;
    let mut tie_term = 0.0;
    for (a, b) in first.iter().zip(second) {
        u += a * (second_below + 0.5 * b);
        second_below += b;
        let t = a + b;
        tie_term += t * t * t - t;
    }
    let mean = 0.5 * n1 * n2;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance.is_nan() || variance <= 0.0 {
        return None;
    }
    let sd = variance.sqrt();
    // scipy: two-sided p from the larger of U1, U2 with a continuity correction of 0.5.
    let larger = u.max(n1 * n2 - u);
    let z_abs = (larger - mean - 0.5) / sd;
    let p_value = (2.0 * normal_sf(z_abs)).clamp(0.0, 1.0);
    let z = if u >= mean { z_abs } else { -z_abs };
    Some(MannWhitney { u, z, p_value, hodges_lehmann: None })
}

/// Mann-Whitney of histogram `first` against `second` (same bucket bounds) with the Hodges-Lehmann shift.
pub fn compare_histograms(first: &Histogram, second: &Histogram) -> Option<MannWhitney> {
    if first.bounds != second.bounds {
        return None;
    }
    let mut result = mann_whitney_binned(&first.counts, &second.counts)?;
    result.hodges_lehmann = hodges_lehmann_binned(&first.representatives(), &first.counts, &second.counts);
    Some(result)
}

/// Weighted median of `reps[i] − reps[j]` with weights `first[i]·second[j]`.
fn hodges_lehmann_binned(reps: &[f64], first: &[f64], second: &[f64]) -> Option<f64> {
    let mut pairs: Vec<(f64, f64)> = Vec::with_capacity(reps.len() * reps.len());
    for (ri, wi) in reps.iter().zip(first) {
        if *wi <= 0.0 {
            continue;
        }
        for (rj, wj) in reps.iter().zip(second) {
            if *wj > 0.0 {
                pairs.push((ri - rj, wi * wj));
            }
        }
    }
    let total: f64 = pairs.iter().map(|p| p.1).sum();
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let half = 0.5 * total;
    let mut acc = 0.0;
    for (k, (diff, w)) in pairs.iter().enumerate() {
        acc += w;
        if acc > half {
            return Some(*diff);
        }
        if acc == half {
            // An even split: average with the next distinct difference, as the median of an even count does.
            return Some(pairs.get(k + 1).map_or(*diff, |next| 0.5 * (diff + next.0)));
        }
    }
    pairs.last().map(|p| p.0)
}
