//! Comparisons within the same time intervals: every look's increments (what arrived since the previous look) are
//! one stratum, and canary and baseline are compared inside each stratum before the strata are summed. A drift
//! common to both arms (a diurnal cycle, a shift in the kind of requests) or a change of the split within a step
//! then cannot look like a difference between the versions, which pooled totals cannot promise.
//!
//! The controller keeps passing cumulative counts; the running sums below, and the cumulative counts of the last
//! look (to take increments), travel in the carried state. Their size does not grow with the number of looks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most histogram buckets a latency metric may have (the state keeps one count per bucket and arm).
pub const MAX_BUCKETS: usize = 200;

/// Running sums over the strata (looks) of one metric in one step. With `t_k = n_ck·n_bk/(n_ck + n_bk)` the
/// effective samples of look k and `d_k` its within-look difference canary − baseline:
/// `time = Σ t_k`, `sum = Σ t_k·d_k`, `canaryWeight = Σ t_k²/n_ck`, `baselineWeight = Σ t_k²/n_bk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Strata {
    /// The canary's cumulative counts at the last look, in the metric's shape (ratio: successes, trials; mean: sum,
    /// sum of squares, count; latency: the count in each bucket, `+Inf` last).
    pub canary: Vec<f64>,
    /// The baseline's cumulative counts at the last look.
    pub baseline: Vec<f64>,
    /// Σ t_k: the intrinsic time of the comparison.
    pub time: f64,
    /// Σ t_k·d_k.
    pub sum: f64,
    /// Σ t_k²/n_ck: how the canary's per-sample variance enters the variance of the sum.
    pub canary_weight: f64,
    /// Σ t_k²/n_bk.
    pub baseline_weight: f64,
    /// Kind-specific sums: ratio `[Σ exact (hypergeometric) variance of t_k·d_k, then the coefficients q0, q1, q2 of
    /// the variance of Σ t_k·d_k as a function of the null difference δ, q0 + q1·δ − q2·δ², each look's shares
    /// re-estimated under δ]`; mean `[canary within-look sum of
    /// squares, its degrees of freedom, baseline sum of squares, degrees of freedom]`; latency `[Σ permutation
    /// variance of t_k·d_k, then for every finite bucket bound Σ t_k·(canary share − baseline share at or below it)]`.
    #[serde(default)]
    pub spread: Vec<f64>,
}

/// The shape of a metric's counts, for checking a carried [`Strata`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Ratio,
    Mean,
    Histogram(usize),
}

impl Shape {
    fn counts_len(self) -> usize {
        match self {
            Shape::Ratio => 2,
            Shape::Mean => 3,
            Shape::Histogram(buckets) => buckets,
        }
    }

    fn spread_len(self) -> usize {
        match self {
            Shape::Ratio => 4,
            Shape::Mean => 4,
            Shape::Histogram(buckets) => buckets,
        }
    }

    /// Which count components only ever grow (the mean's Σx may fall with negative values).
    fn monotone(self, index: usize) -> bool {
        !matches!((self, index), (Shape::Mean, 0))
    }

    /// Which component is the number of samples.
    fn samples(self, counts: &[f64]) -> f64 {
        match self {
            Shape::Ratio => counts.get(1).copied().unwrap_or(0.0),
            Shape::Mean => counts.get(2).copied().unwrap_or(0.0),
            Shape::Histogram(_) => counts.iter().sum(),
        }
    }
}

/// What one look contributes: its per-arm samples, the within-look difference and the kind-specific sums.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stratum {
    pub canary_n: f64,
    pub baseline_n: f64,
    pub difference: f64,
    pub spread: Vec<f64>,
}

impl Stratum {
    /// The effective samples of this look.
    pub fn time(&self) -> f64 {
        self.canary_n * self.baseline_n / (self.canary_n + self.baseline_n)
    }
}

impl Strata {
    /// Nothing seen yet: the next look's increments are its cumulative counts.
    pub(crate) fn empty(shape: Shape) -> Self {
        Strata {
            canary: vec![0.0; shape.counts_len()],
            baseline: vec![0.0; shape.counts_len()],
            time: 0.0,
            sum: 0.0,
            canary_weight: 0.0,
            baseline_weight: 0.0,
            spread: vec![0.0; shape.spread_len()],
        }
    }

    /// Checks a carried value against the metric's shape and the counts of this look. Anything a correct earlier
    /// look could not have produced is refused: the caller then starts over from [`Strata::empty`].
    pub(crate) fn check(&self, shape: Shape, canary_now: &[f64], baseline_now: &[f64]) -> Result<(), String> {
        let n = shape.counts_len();
        if self.canary.len() != n || self.baseline.len() != n || self.spread.len() != shape.spread_len() {
            return Err("its counts do not have this metric's shape".into());
        }
        let numbers = self.canary.iter().chain(&self.baseline).chain(&self.spread);
        if !numbers.chain([&self.time, &self.sum, &self.canary_weight, &self.baseline_weight]).all(|x| x.is_finite()) {
            return Err("it holds a number that is not finite".into());
        }
        for (last, now) in [(&self.canary, canary_now), (&self.baseline, baseline_now)] {
            for (i, (l, c)) in last.iter().zip(now).enumerate() {
                if shape.monotone(i) && (*l < 0.0 || *l > *c) {
                    return Err("its last counts are negative or above this look's counts".into());
                }
            }
        }
        let slack = |x: f64| x * (1.0 + 1e-9) + 1e-9;
        let fewest = shape.samples(&self.canary).min(shape.samples(&self.baseline));
        if self.time < 0.0 || self.time > slack(fewest) {
            return Err("its effective samples exceed the samples counted".into());
        }
        if self.canary_weight < 0.0
            || self.baseline_weight < 0.0
            || self.canary_weight > slack(self.time)
            || self.baseline_weight > slack(self.time)
        {
            return Err("its variance weights exceed its effective samples".into());
        }
        match shape {
            Shape::Ratio | Shape::Histogram(_) => {
                let rest = self.spread.iter().skip(1);
                let ratio_ok = shape != Shape::Ratio || (self.spread[1] >= 0.0 && self.spread[3] >= 0.0);
                if self.sum.abs() > slack(self.time)
                    || !ratio_ok
                    || self.spread[0] < 0.0
                    || self.spread[0] > slack(self.time)
                    || rest.clone().any(|x| x.abs() > slack(self.time))
                {
                    return Err("its sums exceed what its effective samples allow".into());
                }
            }
            Shape::Mean => {
                if self.spread.iter().any(|x| *x < 0.0) {
                    return Err("it holds a negative variance".into());
                }
                if self.spread[1] > slack(shape.samples(&self.canary))
                    || self.spread[3] > slack(shape.samples(&self.baseline))
                {
                    return Err("its degrees of freedom exceed the samples counted".into());
                }
            }
        }
        Ok(())
    }

    /// Adds one look: `stratum` (None when one arm got nothing since the last look) and this look's cumulative
    /// counts, from which the next look takes its increments.
    pub(crate) fn absorb(&mut self, canary_now: Vec<f64>, baseline_now: Vec<f64>, stratum: Option<Stratum>) {
        if let Some(s) = stratum
            && s.canary_n > 0.0
            && s.baseline_n > 0.0
            && s.difference.is_finite()
        {
            let t = s.time();
            self.time += t;
            self.sum += t * s.difference;
            self.canary_weight += t * t / s.canary_n;
            self.baseline_weight += t * t / s.baseline_n;
            for (total, add) in self.spread.iter_mut().zip(&s.spread) {
                *total += add;
            }
        }
        self.canary = canary_now;
        self.baseline = baseline_now;
    }

    /// The stratified estimate of the difference: Σ t_k·d_k / Σ t_k.
    pub fn difference(&self) -> f64 {
        self.sum / self.time
    }

    /// The increments of this look over the last one.
    pub(crate) fn increments(&self, canary_now: &[f64], baseline_now: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let minus = |now: &[f64], last: &[f64]| now.iter().zip(last).map(|(a, b)| a - b).collect::<Vec<f64>>();
        (minus(canary_now, &self.canary), minus(baseline_now, &self.baseline))
    }
}
