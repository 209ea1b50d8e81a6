//! Simulation that backs the claims in docs/statistics.md: false rollbacks under continuous monitoring for
//! Rampart, Rampart's previous method (pooled totals, one latency threshold) and two peer methods on A/A rollouts
//! (steady traffic, rare events, base rates that drift while the canary's share changes within the step, latency
//! with Prometheus' default buckets), detection power and samples-to-fail on real regressions, and the share of
//! A/A rollouts that pass early.
//!
//! `cargo run --release -p rampart-analysis --example simulate -- --rollouts 10000 --json`
//! Deterministic for a given `--seed` (default 20261127) and `--rollouts`.

#![allow(clippy::unwrap_used)]

use rampart_analysis::histogram::{Histogram, mann_whitney_binned};
use rampart_analysis::sequence::{DifferenceEstimate, MixingPrecision, p_value_above_with, p_value_below_with};
use rampart_analysis::textbook::{normal_quantile, normal_sf, two_proportion_z_test};
use rampart_analysis::{
    AnalysisConfig, AnalysisState, ArmCounts, ArmPair, Bucket, Direction, MetricConfig, MetricKind, MetricObservation,
    StepInput, Tolerance, Tuning, Verdict, evaluate_step,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};
use serde_json::{Map, Value, json};

const LOOKS: usize = 60;
const ALPHA: f64 = 0.05;
const BASE_ACCURACY: f64 = 0.90;
const CANARY_PER_LOOK: u64 = 50;
const CANARY_WEIGHT: f64 = 0.1;
const KAYENTA_CONFIDENCE: f64 = 0.98;
const POWER: f64 = 0.8;
/// The previous method's tuning: its normal mixture was tightest at 500 effective samples.
const PREVIOUS_EXPECTED_SAMPLES: f64 = 500.0;
const LATENCY_SIGMA: f64 = 0.5;
const LATENCY_SHIFT: f64 = 1.2;

/// Per-look traffic and truth of one scenario.
#[derive(Clone)]
struct Plan {
    /// Canary and baseline requests in each look.
    canary: Vec<u64>,
    baseline: Vec<u64>,
    /// The configured canary weight in each look.
    weight: Vec<f64>,
}

impl Plan {
    fn steady(weight: f64) -> Self {
        let baseline = (CANARY_PER_LOOK as f64 * (1.0 - weight) / weight).round() as u64;
        Plan { canary: vec![CANARY_PER_LOOK; LOOKS], baseline: vec![baseline; LOOKS], weight: vec![weight; LOOKS] }
    }

    /// 1000 requests a look; the canary's share is 5% in the first half of the step and 10% in the second.
    fn split_change() -> Self {
        let weight: Vec<f64> = (0..LOOKS).map(|k| if k < LOOKS / 2 { 0.05 } else { 0.10 }).collect();
        let canary: Vec<u64> = weight.iter().map(|w| (1000.0 * w).round() as u64).collect();
        let baseline = canary.iter().map(|c| 1000 - c).collect();
        Plan { canary, baseline, weight }
    }

    /// Effective samples at the last look: the step's horizon, for the tuning.
    fn horizon(&self) -> f64 {
        self.canary.iter().zip(&self.baseline).map(|(c, b)| (c * b) as f64 / (c + b) as f64).sum()
    }
}

fn ratio_config(tolerance: f64, tuning: Tuning) -> AnalysisConfig {
    let mut config = AnalysisConfig::with_metrics(vec![MetricConfig {
        name: "accuracy".into(),
        kind: MetricKind::Ratio { direction: Direction::HigherIsBetter },
        tolerance: Tolerance::Absolute(tolerance),
        min_samples: None,
    }]);
    config.tuning = tuning;
    config
}

fn latency_config(tuning: Tuning) -> AnalysisConfig {
    let mut config = AnalysisConfig::with_metrics(vec![MetricConfig {
        name: "latency".into(),
        kind: MetricKind::Latency { quantile: 0.95, threshold_slack: 0.1, threshold_seconds: None },
        tolerance: Tolerance::Absolute(0.0),
        min_samples: None,
    }]);
    config.tuning = tuning;
    config
}

/// One Rampart analysis running along a simulated rollout, stopping at its first Pass or Fail.
struct Tracker {
    config: AnalysisConfig,
    state: Option<AnalysisState>,
    decided: Option<(Verdict, f64)>,
}

impl Tracker {
    fn new(config: AnalysisConfig) -> Self {
        Tracker { config, state: None, decided: None }
    }

    fn look(&mut self, observation: MetricObservation, requests: ArmPair<f64>, weight: f64) {
        if self.decided.is_some() {
            return;
        }
        let input = StepInput {
            configured_canary_weight: weight,
            requests: Some(requests),
            metrics: vec![observation],
            final_look: false,
        };
        let outcome = evaluate_step(&self.config, &input, self.state.as_ref()).unwrap();
        if matches!(outcome.verdict.verdict, Verdict::Pass | Verdict::Fail) {
            self.decided = Some((outcome.verdict.verdict, requests.canary));
        }
        self.state = Some(outcome.state);
    }
}

/// Rampart's previous method, reimplemented here for comparison on the same data: pooled cumulative counts, the
/// two-sided normal mixture tuned for 500 effective samples, score-type variance, running-minimum p-values.
struct Previous {
    rho: MixingPrecision,
    tolerance: f64,
    fail_p: f64,
    pass_p: f64,
    threshold: Option<f64>,
    decided: Option<(Verdict, f64)>,
}

impl Previous {
    fn new(tolerance: f64) -> Self {
        Previous {
            rho: MixingPrecision::tuned_for(PREVIOUS_EXPECTED_SAMPLES, ALPHA),
            tolerance,
            fail_p: 1.0,
            pass_p: 1.0,
            threshold: None,
            decided: None,
        }
    }

    /// One look at shares `cs/cn` (canary) and `bs/bn`, `sign` +1 when higher is better.
    fn look_shares(&mut self, (cs, cn, bs, bn): (f64, f64, f64, f64), sign: f64) {
        if self.decided.is_some() || cn < 100.0 || bn < 100.0 {
            return;
        }
        let smooth = |s: f64, n: f64| {
            let q = (s + 1.0) / (n + 2.0);
            q * (1.0 - q)
        };
        let estimate = DifferenceEstimate::from_arms(cs / cn, smooth(cs, cn), cn, bs / bn, smooth(bs, bn), bn);
        // Tested at the tolerance boundary (oriented: canary − baseline = −tolerance), with both shares
        // re-estimated under that null.
        let null = -sign * self.tolerance;
        let baseline = ((cs + bs - cn * null) / (cn + bn)).clamp((-null).max(0.0), (1.0 - null).min(1.0));
        let canary = (baseline + null).clamp(0.0, 1.0);
        let null_variance = smooth(canary * cn, cn) / cn + smooth(baseline * bn, bn) / bn;
        let oriented = DifferenceEstimate { difference: sign * estimate.difference, ..estimate };
        self.fail_p = self.fail_p.min(p_value_below_with(&oriented, self.rho, -self.tolerance, null_variance));
        self.pass_p = self.pass_p.min(p_value_above_with(&oriented, self.rho, -self.tolerance, null_variance));
        if self.fail_p <= ALPHA {
            self.decided = Some((Verdict::Fail, cn));
        } else if self.pass_p <= ALPHA {
            self.decided = Some((Verdict::Pass, cn));
        }
    }

    /// One look at latency histograms: the share slower than baseline p95 × 1.1 rounded up to a bucket bound,
    /// the bound fixed at the first look with enough samples.
    fn look_latency(&mut self, canary: &Histogram, baseline: &Histogram) {
        if self.decided.is_some() || canary.total() < 100.0 || baseline.total() < 100.0 {
            return;
        }
        if self.threshold.is_none() {
            self.threshold = baseline.quantile(0.95).and_then(|q| baseline.bound_at_or_above(q * 1.1));
        }
        let Some(threshold) = self.threshold else { return };
        let slow = |h: &Histogram| h.total() - h.count_at_most(threshold);
        self.look_shares((slow(canary), canary.total(), slow(baseline), baseline.total()), -1.0);
    }
}

/// Counts of rollouts that reached a verdict and the canary samples they took.
#[derive(Default, Clone, Copy)]
struct Tally {
    hits: u64,
    samples: f64,
}

impl Tally {
    fn add(&mut self, samples: f64) {
        self.hits += 1;
        self.samples += samples;
    }
    fn rate(&self, n: u64) -> f64 {
        self.hits as f64 / n as f64
    }
    fn mean_samples(&self) -> Value {
        if self.hits == 0 { Value::Null } else { json!(self.samples / self.hits as f64) }
    }
    fn record(&mut self, decided: Option<(Verdict, f64)>, verdict: Verdict) {
        if let Some((v, n)) = decided
            && v == verdict
        {
            self.add(n);
        }
    }
}

/// Fail and Pass tallies of each method in one scenario.
#[derive(Default)]
struct Outcome {
    rampart: Vec<(Tally, Tally)>,
    previous: (Tally, Tally),
    kayenta: Tally,
    repeated_z: Tally,
}

impl Outcome {
    fn summary(&self, rollouts: u64, names: &[&str]) -> Value {
        let fail = |t: &Tally| json!({"rate": t.rate(rollouts), "mean_canary_samples": t.mean_samples()});
        let mut out = Map::new();
        for (name, (f, p)) in names.iter().zip(&self.rampart) {
            out.insert((*name).into(), json!({"fail": fail(f), "pass": fail(p)}));
        }
        out.insert("previous_method".into(), json!({"fail": fail(&self.previous.0), "pass": fail(&self.previous.1)}));
        out.insert("kayenta_style".into(), json!({"fail": fail(&self.kayenta)}));
        out.insert("repeated_z".into(), json!({"fail": fail(&self.repeated_z)}));
        Value::Object(out)
    }
}

fn rollout_rng(seed: u64, rollout: u64, salt: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ rollout.wrapping_mul(salt))
}

/// Accuracy rollouts: per look the baseline's accuracy is `base[k]` and the canary's `base[k] − drop`.
fn run_ratio(rollouts: u64, seed: u64, plan: &Plan, base: &[f64], drop: f64, configs: &[AnalysisConfig]) -> Outcome {
    let mut outcome = Outcome { rampart: vec![Default::default(); configs.len()], ..Default::default() };
    for rollout in 0..rollouts {
        let mut rng = rollout_rng(seed, rollout, 0x9E37_79B9_7F4A_7C15);
        let mut trackers: Vec<Tracker> = configs.iter().cloned().map(Tracker::new).collect();
        let mut previous = Previous::new(configs[0].metrics[0].tolerance.margin(0.0));
        let (mut cs, mut cn, mut bs, mut bn) = (0.0, 0.0, 0.0, 0.0);
        let (mut kayenta_failed, mut z_failed) = (false, false);
        for (k, rate) in base.iter().enumerate().take(LOOKS) {
            cs += Binomial::new(plan.canary[k], (rate - drop).clamp(0.0, 1.0)).unwrap().sample(&mut rng) as f64;
            bs += Binomial::new(plan.baseline[k], *rate).unwrap().sample(&mut rng) as f64;
            cn += plan.canary[k] as f64;
            bn += plan.baseline[k] as f64;
            for tracker in &mut trackers {
                let observation = MetricObservation {
                    name: "accuracy".into(),
                    canary: ArmCounts::Ratio { successes: cs, trials: cn },
                    baseline: ArmCounts::Ratio { successes: bs, trials: bn },
                };
                tracker.look(observation, ArmPair { canary: cn, baseline: bn }, plan.weight[k]);
            }
            previous.look_shares((cs, cn, bs, bn), 1.0);
            // Kayenta: Mann-Whitney on the 0/1 outcomes (two tied groups), 98% two-sided, fails on a worse canary.
            if !kayenta_failed
                && let Some(mw) = mann_whitney_binned(&[cn - cs, cs], &[bn - bs, bs])
                && mw.p_value < 1.0 - KAYENTA_CONFIDENCE
                && mw.z < 0.0
            {
                kayenta_failed = true;
                outcome.kayenta.add(cn);
            }
            // Repeated two-proportion z-test at alpha, two-sided, fails on a worse canary.
            if !z_failed
                && let Some(z) = two_proportion_z_test(cs, cn, bs, bn)
                && z.p_value < ALPHA
                && z.statistic < 0.0
            {
                z_failed = true;
                outcome.repeated_z.add(cn);
            }
        }
        for (tracker, tallies) in trackers.iter().zip(outcome.rampart.iter_mut()) {
            tallies.0.record(tracker.decided, Verdict::Fail);
            tallies.1.record(tracker.decided, Verdict::Pass);
        }
        outcome.previous.0.record(previous.decided, Verdict::Fail);
        outcome.previous.1.record(previous.decided, Verdict::Pass);
    }
    outcome
}

/// Probability that a log-normal(ln(median), σ) value falls in each bucket (the last is +Inf).
fn bucket_probabilities(bounds: &[f64], median: f64) -> Vec<f64> {
    let mu = median.ln();
    let cdf = |x: f64| 1.0 - normal_sf((x.ln() - mu) / LATENCY_SIGMA);
    let mut probs = Vec::with_capacity(bounds.len() + 1);
    let mut previous = 0.0;
    for b in bounds {
        let c = cdf(*b);
        probs.push((c - previous).max(0.0));
        previous = c;
    }
    probs.push((1.0 - previous).max(0.0));
    probs
}

/// Adds a multinomial draw of `n` requests over the buckets (sequential conditional binomials) to `counts`.
fn add_multinomial(rng: &mut ChaCha8Rng, n: u64, probs: &[f64], counts: &mut [f64]) {
    let mut left = n;
    let mut mass = 1.0;
    for (i, p) in probs.iter().enumerate() {
        if left == 0 {
            break;
        }
        let k = if i + 1 == probs.len() || mass <= *p {
            left
        } else {
            Binomial::new(left, (p / mass).clamp(0.0, 1.0)).unwrap().sample(rng)
        };
        counts[i] += k as f64;
        left -= k;
        mass -= p;
    }
}

fn cumulative_buckets(bounds: &[f64], counts: &[f64]) -> Vec<Bucket> {
    let mut acc = 0.0;
    let mut buckets = Vec::with_capacity(counts.len());
    for (i, c) in counts.iter().enumerate() {
        acc += c;
        let le = bounds.get(i).copied().unwrap_or(f64::INFINITY);
        buckets.push(Bucket { le, count: acc });
    }
    buckets
}

/// Prometheus client libraries' default histogram buckets (seconds).
fn default_buckets() -> Vec<f64> {
    vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
}

/// 30 exponential buckets from 5 ms by factor 1.3 (to about 10 s).
fn fine_buckets() -> Vec<f64> {
    (0..30).map(|i| 0.005 * 1.3_f64.powi(i)).collect()
}

/// Latency rollouts: log-normal latencies with the baseline's median `median[k]` per look, the canary's scaled by
/// `scale`.
fn run_latency(
    rollouts: u64,
    seed: u64,
    plan: &Plan,
    bounds: &[f64],
    median: &[f64],
    scale: f64,
    configs: &[AnalysisConfig],
) -> Outcome {
    let mut outcome = Outcome { rampart: vec![Default::default(); configs.len()], ..Default::default() };
    let baseline_probs: Vec<Vec<f64>> = median.iter().map(|m| bucket_probabilities(bounds, *m)).collect();
    let canary_probs: Vec<Vec<f64>> = median.iter().map(|m| bucket_probabilities(bounds, m * scale)).collect();
    for rollout in 0..rollouts {
        let mut rng = rollout_rng(seed, rollout, 0xD1B5_4A32_D192_ED03);
        let mut trackers: Vec<Tracker> = configs.iter().cloned().map(Tracker::new).collect();
        let mut previous = Previous::new(0.0);
        let mut kayenta_failed = false;
        let mut canary = vec![0.0; bounds.len() + 1];
        let mut baseline = vec![0.0; bounds.len() + 1];
        let (mut cn, mut bn) = (0.0, 0.0);
        for k in 0..LOOKS {
            add_multinomial(&mut rng, plan.canary[k], &canary_probs[k], &mut canary);
            add_multinomial(&mut rng, plan.baseline[k], &baseline_probs[k], &mut baseline);
            cn += plan.canary[k] as f64;
            bn += plan.baseline[k] as f64;
            let canary_buckets = cumulative_buckets(bounds, &canary);
            let baseline_buckets = cumulative_buckets(bounds, &baseline);
            for tracker in &mut trackers {
                let observation = MetricObservation {
                    name: "latency".into(),
                    canary: ArmCounts::Histogram { buckets: canary_buckets.clone() },
                    baseline: ArmCounts::Histogram { buckets: baseline_buckets.clone() },
                };
                tracker.look(observation, ArmPair { canary: cn, baseline: bn }, plan.weight[k]);
            }
            let canary_h = Histogram::from_cumulative(&canary_buckets).unwrap();
            let baseline_h = Histogram::from_cumulative(&baseline_buckets).unwrap();
            previous.look_latency(&canary_h, &baseline_h);
            if !kayenta_failed
                && let Some(mw) = mann_whitney_binned(&canary, &baseline)
                && mw.p_value < 1.0 - KAYENTA_CONFIDENCE
                && mw.z > 0.0
            {
                kayenta_failed = true;
                outcome.kayenta.add(cn);
            }
        }
        for (tracker, tallies) in trackers.iter().zip(outcome.rampart.iter_mut()) {
            tallies.0.record(tracker.decided, Verdict::Fail);
            tallies.1.record(tracker.decided, Verdict::Pass);
        }
        outcome.previous.0.record(previous.decided, Verdict::Fail);
        outcome.previous.1.record(previous.decided, Verdict::Pass);
    }
    outcome
}

/// Canary samples of a fixed-horizon two-sided two-proportion test at `ALPHA` with `POWER` against `drop`, with
/// the baseline getting (1 − w)/w times the canary's samples.
fn fixed_n(drop: f64) -> f64 {
    let z = normal_quantile(1.0 - ALPHA / 2.0) + normal_quantile(POWER);
    let canary = BASE_ACCURACY - drop;
    let ratio = CANARY_WEIGHT / (1.0 - CANARY_WEIGHT);
    let variance = canary * (1.0 - canary) + BASE_ACCURACY * (1.0 - BASE_ACCURACY) * ratio;
    (z * z * variance / (drop * drop)).ceil()
}

/// Power of the fixed-horizon test at `n` canary samples against `drop`, by simulation (checks `fixed_n`).
fn fixed_test_power(rollouts: u64, seed: u64, n: f64, drop: f64) -> f64 {
    let canary_n = n as u64;
    let baseline_n = (n * (1.0 - CANARY_WEIGHT) / CANARY_WEIGHT).round() as u64;
    let canary_draw = Binomial::new(canary_n, BASE_ACCURACY - drop).unwrap();
    let baseline_draw = Binomial::new(baseline_n, BASE_ACCURACY).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rejections = 0u64;
    for _ in 0..rollouts {
        let (cs, bs) = (canary_draw.sample(&mut rng) as f64, baseline_draw.sample(&mut rng) as f64);
        if let Some(z) = two_proportion_z_test(cs, canary_n as f64, bs, baseline_n as f64)
            && z.p_value < ALPHA
            && z.statistic < 0.0
        {
            rejections += 1;
        }
    }
    rejections as f64 / rollouts as f64
}

/// Share of A/A rollouts in which the sample-ratio-mismatch check, re-run at every look on requests routed to
/// the canary with probability `CANARY_WEIGHT`, raises a false alarm at its default level: Rampart's
/// always-valid check, and the plain chi-square p-value re-run at every look.
fn srm_false_alarm_rate(rollouts: u64, seed: u64) -> (f64, f64) {
    let per_look = CANARY_PER_LOOK + (CANARY_PER_LOOK as f64 * (1.0 - CANARY_WEIGHT) / CANARY_WEIGHT) as u64;
    let routing = Binomial::new(per_look, CANARY_WEIGHT).unwrap();
    let srm_alpha = rampart_analysis::config::DEFAULT_SRM_ALPHA;
    let rho = rampart_analysis::srm::srm_mixing_precision(
        rampart_analysis::config::DEFAULT_EXPECTED_SAMPLES,
        CANARY_WEIGHT,
        srm_alpha,
    );
    let (mut alarms, mut fixed_alarms) = (0u64, 0u64);
    for rollout in 0..rollouts {
        let mut rng = rollout_rng(seed, rollout, 0xA076_1D64_78BD_642F);
        let (mut canary, mut total) = (0.0, 0.0);
        let mut smallest_p = 1.0;
        let mut sums = None;
        let (mut alarm, mut fixed_alarm) = (false, false);
        for _ in 0..LOOKS {
            canary += routing.sample(&mut rng) as f64;
            total += per_look as f64;
            let requests = ArmPair { canary, baseline: total - canary };
            let (check, next) = rampart_analysis::srm::check_sample_ratio(
                requests,
                CANARY_WEIGHT,
                srm_alpha,
                rho,
                smallest_p,
                sums.as_ref(),
            );
            sums = next;
            smallest_p = check.always_valid_p;
            if let Some(test) = check.test
                && test.p_value < srm_alpha
                && !fixed_alarm
            {
                fixed_alarm = true;
                fixed_alarms += 1;
            }
            if check.verdict == Verdict::Fail && !alarm {
                alarm = true;
                alarms += 1;
            }
        }
    }
    (alarms as f64 / rollouts as f64, fixed_alarms as f64 / rollouts as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let rollouts: u64 = value_of("--rollouts").map_or(1000, |v| v.parse().expect("--rollouts takes a number"));
    let seed: u64 = value_of("--seed").map_or(20261127, |v| v.parse().expect("--seed takes a number"));
    let as_json = args.iter().any(|a| a == "--json");

    let steady = Plan::steady(CANARY_WEIGHT);
    let horizon = Tuning::ExpectedSamples(steady.horizon());
    let default_tuning = Tuning::default();
    let names = ["rampart", "rampart_default_tuning"];
    let both = |tolerance: f64, horizon: Tuning| {
        vec![ratio_config(tolerance, horizon), ratio_config(tolerance, default_tuning)]
    };
    let flat = vec![BASE_ACCURACY; LOOKS];

    // A/A: no true difference.
    let mut aa = Map::new();
    let aa_steady = run_ratio(rollouts, seed, &steady, &flat, 0.0, &both(0.0, horizon));
    aa.insert("accuracy_0.90_weight_10pct".into(), aa_steady.summary(rollouts, &names));
    for (k, base) in [0.99, 0.999].into_iter().enumerate() {
        let plan = Plan::steady(0.05);
        let tuning = Tuning::ExpectedSamples(plan.horizon());
        let run =
            run_ratio(rollouts, seed.wrapping_add(40 + k as u64), &plan, &vec![base; LOOKS], 0.0, &both(0.0, tuning));
        aa.insert(format!("accuracy_{base}_weight_5pct"), run.summary(rollouts, &names));
    }
    let split = Plan::split_change();
    let split_tuning = Tuning::ExpectedSamples(split.horizon());
    let along = |from: f64, to: f64| -> Vec<f64> {
        (0..LOOKS).map(|k| from + (to - from) * k as f64 / (LOOKS - 1) as f64).collect()
    };
    let diurnal: Vec<f64> =
        (0..LOOKS).map(|k| 0.9 + 0.05 * (2.0 * std::f64::consts::PI * k as f64 / LOOKS as f64).sin()).collect();
    let drifts = [
        ("strong_drift_0.95_to_0.70_split_5_to_10pct", along(0.95, 0.70)),
        ("mild_drift_0.90_to_0.85_split_5_to_10pct", along(0.90, 0.85)),
        ("diurnal_0.85_to_0.95_split_5_to_10pct", diurnal.clone()),
    ];
    for (k, (name, base)) in drifts.iter().enumerate() {
        let run = run_ratio(rollouts, seed.wrapping_add(50 + k as u64), &split, base, 0.0, &both(0.0, split_tuning));
        aa.insert((*name).into(), run.summary(rollouts, &names));
    }
    let run = run_ratio(rollouts, seed.wrapping_add(55), &steady, &diurnal, 0.0, &both(0.0, horizon));
    aa.insert("diurnal_0.85_to_0.95_weight_10pct".into(), run.summary(rollouts, &names));

    // Latency A/A and +20%: the fine layout at 100 ms, Prometheus' default buckets at 80 ms and 8 ms, and a latency
    // drift (80 -> 120 ms) while the split changes.
    let latency_names = ["rampart", "rampart_default_tuning"];
    let latency_configs = |tuning: Tuning| vec![latency_config(tuning), latency_config(default_tuning)];
    let latency_cases: Vec<(&str, Vec<f64>, Vec<f64>, &Plan)> = vec![
        ("fine_buckets_median_100ms", fine_buckets(), vec![0.1; LOOKS], &steady),
        ("default_buckets_median_80ms", default_buckets(), vec![0.08; LOOKS], &steady),
        ("default_buckets_median_8ms", default_buckets(), vec![0.008; LOOKS], &steady),
        ("default_buckets_drift_80_to_120ms_split_5_to_10pct", default_buckets(), along(0.08, 0.12), &split),
    ];
    let mut latency_detection = Map::new();
    for (k, (name, bounds, median, plan)) in latency_cases.iter().enumerate() {
        let tuning = Tuning::ExpectedSamples(plan.horizon());
        let run = run_latency(
            rollouts,
            seed.wrapping_add(60 + k as u64),
            plan,
            bounds,
            median,
            1.0,
            &latency_configs(tuning),
        );
        aa.insert(format!("latency_{name}"), run.summary(rollouts, &latency_names));
        let run = run_latency(
            rollouts,
            seed.wrapping_add(70 + k as u64),
            plan,
            bounds,
            median,
            LATENCY_SHIFT,
            &latency_configs(tuning),
        );
        latency_detection.insert(format!("latency_plus_20pct_{name}"), run.summary(rollouts, &latency_names));
    }

    // Detection: accuracy drops at steady traffic, and a 2-point drop under strong drift with a split change.
    let mut detection = Map::new();
    for (k, drop) in [0.01, 0.02, 0.05].into_iter().enumerate() {
        let run = run_ratio(rollouts, seed.wrapping_add(1 + k as u64), &steady, &flat, drop, &both(0.0, horizon));
        detection.insert(format!("accuracy_drop_{}pt", (drop * 100.0).round()), run.summary(rollouts, &names));
    }
    let run = run_ratio(rollouts, seed.wrapping_add(5), &split, &drifts[0].1, 0.02, &both(0.0, split_tuning));
    detection.insert("accuracy_drop_2pt_strong_drift_split_5_to_10pct".into(), run.summary(rollouts, &names));
    detection.extend(latency_detection);

    // A/A passes at positive tolerances.
    let mut aa_pass = Map::new();
    for (k, tolerance) in [0.01, 0.02].into_iter().enumerate() {
        let run = run_ratio(rollouts, seed.wrapping_add(80 + k as u64), &steady, &flat, 0.0, &both(tolerance, horizon));
        aa_pass.insert(format!("tolerance_{}pt", (tolerance * 100.0).round()), run.summary(rollouts, &names));
    }

    let srm = srm_false_alarm_rate(rollouts, seed.wrapping_add(30));
    let fixed_2 = fixed_n(0.02);
    let output = json!({
        "seed": seed,
        "rollouts": rollouts,
        "looks": LOOKS,
        "alpha": ALPHA,
        "steady_traffic": {"canary_requests_per_look": CANARY_PER_LOOK, "canary_weight": CANARY_WEIGHT,
                           "base_accuracy": BASE_ACCURACY, "horizon_effective_samples": steady.horizon()},
        "split_change_traffic": {"requests_per_look": 1000, "canary_weight": "5% for looks 1-30, 10% for looks 31-60",
                                 "horizon_effective_samples": split.horizon()},
        "methods": {
            "rampart": "evaluate_step, tolerance 0, tuning.expectedSamples = the step's horizon (effective samples at look 60)",
            "rampart_default_tuning": "evaluate_step, tolerance 0, default tuning (expectedSamples 500)",
            "previous_method": "pooled cumulative counts, two-sided normal mixture tuned for 500, latency as the share above baseline p95 x 1.1",
            "kayenta_style": "Mann-Whitney on cumulative counts re-run every look at 98% two-sided, fails on a worse canary",
            "repeated_z": "pooled two-proportion z re-run every look at alpha two-sided, fails on a worse canary",
        },
        "aa": Value::Object(aa),
        "detection": Value::Object(detection),
        "aa_pass": Value::Object(aa_pass),
        "fixed_n": {
            "two_points": fixed_2,
            "five_points": fixed_n(0.05),
            "two_points_simulated_power": fixed_test_power(rollouts, seed.wrapping_add(20), fixed_2, 0.02),
            "test": format!("two-sided two-proportion z at alpha {ALPHA}, power {POWER}, from {BASE_ACCURACY}, canary weight {CANARY_WEIGHT}"),
        },
        "srm_false_alarm_rate": {"rampart": srm.0, "repeated_chi_square": srm.1},
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&output).unwrap());
    } else {
        println!("{output:#}");
    }
}
