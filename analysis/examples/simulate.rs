//! Simulation that backs the claims in docs/statistics.md: false rollbacks under continuous monitoring for
//! Rampart and two peer methods on A/A rollouts, detection power and samples-to-fail on real regressions, and
//! the share of A/A rollouts that pass early.
//!
//! `cargo run --release -p rampart-analysis --example simulate -- --rollouts 10000 --json`
//! Deterministic for a given `--seed` (default 20261127) and `--rollouts`.

#![allow(clippy::unwrap_used)]

use rampart_analysis::histogram::mann_whitney_binned;
use rampart_analysis::textbook::{normal_quantile, two_proportion_z_test};
use rampart_analysis::{
    AnalysisConfig, AnalysisState, ArmCounts, ArmPair, Bucket, Direction, MetricConfig, MetricKind, MetricObservation,
    StepInput, Tolerance, Verdict, evaluate_step,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution};
use serde_json::{Value, json};

const LOOKS: usize = 60;
const CANARY_PER_LOOK: u64 = 50;
const CANARY_WEIGHT: f64 = 0.1;
const ALPHA: f64 = 0.05;
const BASE_ACCURACY: f64 = 0.90;
const KAYENTA_CONFIDENCE: f64 = 0.98;
const POWER: f64 = 0.8;
const SMALLEST_DROP: f64 = 0.02;
/// Latency model: log-normal with this median (seconds) and log-scale standard deviation.
const LATENCY_MEDIAN: f64 = 0.1;
const LATENCY_SIGMA: f64 = 0.5;
const LATENCY_SHIFT: f64 = 1.2;

fn baseline_per_look() -> u64 {
    baseline_per_look_at(CANARY_WEIGHT)
}

fn baseline_per_look_at(weight: f64) -> u64 {
    (CANARY_PER_LOOK as f64 * (1.0 - weight) / weight).round() as u64
}

/// Prometheus-style exponential buckets: 30 finite bounds from 5 ms by factor 1.3 (to about 10 s).
fn bucket_bounds() -> Vec<f64> {
    (0..30).map(|i| 0.005 * 1.3_f64.powi(i)).collect()
}

fn accuracy_config(tolerance: f64) -> AnalysisConfig {
    AnalysisConfig::with_metrics(vec![MetricConfig {
        name: "accuracy".into(),
        kind: MetricKind::Ratio { direction: Direction::HigherIsBetter },
        tolerance: Tolerance::Absolute(tolerance),
        min_samples: None,
    }])
}

fn latency_config() -> AnalysisConfig {
    AnalysisConfig::with_metrics(vec![MetricConfig {
        name: "latency".into(),
        kind: MetricKind::Latency { quantile: 0.95, threshold_slack: 0.1, threshold_seconds: None },
        tolerance: Tolerance::Absolute(0.0),
        min_samples: None,
    }])
}

/// One Rampart analysis running along a simulated rollout, stopping at its first Pass or Fail.
struct Tracker {
    config: AnalysisConfig,
    weight: f64,
    state: Option<AnalysisState>,
    decided: Option<(Verdict, f64)>,
}

impl Tracker {
    fn new(config: AnalysisConfig, weight: f64) -> Self {
        Tracker { config, weight, state: None, decided: None }
    }

    fn look(&mut self, observation: MetricObservation, requests: ArmPair<f64>, canary_samples: f64) {
        if self.decided.is_some() {
            return;
        }
        let input = StepInput {
            configured_canary_weight: self.weight,
            requests: Some(requests),
            metrics: vec![observation],
            final_look: false,
        };
        let outcome = evaluate_step(&self.config, &input, self.state.as_ref()).unwrap();
        if matches!(outcome.verdict.verdict, Verdict::Pass | Verdict::Fail) {
            self.decided = Some((outcome.verdict.verdict, canary_samples));
        }
        self.state = Some(outcome.state);
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
}

struct RatioRun {
    rampart: Vec<Tally>,
    rampart_pass: Vec<Tally>,
    kayenta: Tally,
    repeated_z: Tally,
}

/// Runs `rollouts` accuracy rollouts with the canary's accuracy `BASE_ACCURACY − drop`, for each tolerance.
fn run_ratio(rollouts: u64, seed: u64, drop: f64, tolerances: &[f64]) -> RatioRun {
    run_ratio_at(rollouts, seed, BASE_ACCURACY, CANARY_WEIGHT, drop, tolerances)
}

/// Runs accuracy rollouts with baseline accuracy `base`, canary weight `weight` and the canary `drop` lower.
fn run_ratio_at(rollouts: u64, seed: u64, base: f64, weight: f64, drop: f64, tolerances: &[f64]) -> RatioRun {
    let mut run = RatioRun {
        rampart: vec![Tally::default(); tolerances.len()],
        rampart_pass: vec![Tally::default(); tolerances.len()],
        kayenta: Tally::default(),
        repeated_z: Tally::default(),
    };
    let canary_draw = Binomial::new(CANARY_PER_LOOK, base - drop).unwrap();
    let baseline_draw = Binomial::new(baseline_per_look_at(weight), base).unwrap();
    for rollout in 0..rollouts {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ rollout.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut trackers: Vec<Tracker> = tolerances.iter().map(|t| Tracker::new(accuracy_config(*t), weight)).collect();
        let (mut cs, mut cn, mut bs, mut bn) = (0.0, 0.0, 0.0, 0.0);
        let (mut kayenta_failed, mut z_failed) = (false, false);
        for _ in 0..LOOKS {
            cs += canary_draw.sample(&mut rng) as f64;
            bs += baseline_draw.sample(&mut rng) as f64;
            cn += CANARY_PER_LOOK as f64;
            bn += baseline_per_look_at(weight) as f64;
            for tracker in &mut trackers {
                let observation = MetricObservation {
                    name: "accuracy".into(),
                    canary: ArmCounts::Ratio { successes: cs, trials: cn },
                    baseline: ArmCounts::Ratio { successes: bs, trials: bn },
                };
                tracker.look(observation, ArmPair { canary: cn, baseline: bn }, cn);
            }
            // Kayenta: Mann-Whitney on the 0/1 outcomes (two tied groups), 98% two-sided, fails on a worse canary.
            if !kayenta_failed
                && let Some(mw) = mann_whitney_binned(&[cn - cs, cs], &[bn - bs, bs])
                && mw.p_value < 1.0 - KAYENTA_CONFIDENCE
                && mw.z < 0.0
            {
                kayenta_failed = true;
                run.kayenta.add(cn);
            }
            // Repeated two-proportion z-test at alpha, two-sided, fails on a worse canary.
            if !z_failed
                && let Some(z) = two_proportion_z_test(cs, cn, bs, bn)
                && z.p_value < ALPHA
                && z.statistic < 0.0
            {
                z_failed = true;
                run.repeated_z.add(cn);
            }
        }
        for (i, tracker) in trackers.iter().enumerate() {
            match tracker.decided {
                Some((Verdict::Fail, n)) => run.rampart[i].add(n),
                Some((Verdict::Pass, n)) => run.rampart_pass[i].add(n),
                _ => {}
            }
        }
    }
    run
}

/// Probability that a log-normal(ln(median·scale), σ) value falls in each bucket (the last is +Inf).
fn bucket_probabilities(bounds: &[f64], scale: f64) -> Vec<f64> {
    let mu = (LATENCY_MEDIAN * scale).ln();
    let cdf = |x: f64| 1.0 - rampart_analysis::textbook::normal_sf((x.ln() - mu) / LATENCY_SIGMA);
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

/// Runs latency rollouts with the canary's latencies scaled by `scale`; returns Rampart's Fail and Pass tallies.
fn run_latency(rollouts: u64, seed: u64, scale: f64) -> (Tally, Tally) {
    let bounds = bucket_bounds();
    let baseline_probs = bucket_probabilities(&bounds, 1.0);
    let canary_probs = bucket_probabilities(&bounds, scale);
    let (mut fail, mut pass) = (Tally::default(), Tally::default());
    for rollout in 0..rollouts {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ rollout.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mut tracker = Tracker::new(latency_config(), CANARY_WEIGHT);
        let mut canary = vec![0.0; bounds.len() + 1];
        let mut baseline = vec![0.0; bounds.len() + 1];
        let (mut cn, mut bn) = (0.0, 0.0);
        for _ in 0..LOOKS {
            add_multinomial(&mut rng, CANARY_PER_LOOK, &canary_probs, &mut canary);
            add_multinomial(&mut rng, baseline_per_look(), &baseline_probs, &mut baseline);
            cn += CANARY_PER_LOOK as f64;
            bn += baseline_per_look() as f64;
            let observation = MetricObservation {
                name: "latency".into(),
                canary: ArmCounts::Histogram { buckets: cumulative_buckets(&bounds, &canary) },
                baseline: ArmCounts::Histogram { buckets: cumulative_buckets(&bounds, &baseline) },
            };
            tracker.look(observation, ArmPair { canary: cn, baseline: bn }, cn);
            if tracker.decided.is_some() {
                break;
            }
        }
        match tracker.decided {
            Some((Verdict::Fail, n)) => fail.add(n),
            Some((Verdict::Pass, n)) => pass.add(n),
            _ => {}
        }
    }
    (fail, pass)
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

/// Share of A/A rollouts in which the sample-ratio-mismatch check, re-run at every look on requests routed to
/// the canary with probability `CANARY_WEIGHT`, raises a false alarm at its default level: Rampart's
/// always-valid check, and the plain chi-square p-value re-run at every look.
fn srm_false_alarm_rate(rollouts: u64, seed: u64) -> (f64, f64) {
    let per_look = CANARY_PER_LOOK + baseline_per_look();
    let routing = Binomial::new(per_look, CANARY_WEIGHT).unwrap();
    let srm_alpha = rampart_analysis::config::DEFAULT_SRM_ALPHA;
    let (mut alarms, mut fixed_alarms) = (0u64, 0u64);
    for rollout in 0..rollouts {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ rollout.wrapping_mul(0xA076_1D64_78BD_642F));
        let (mut canary, mut total) = (0.0, 0.0);
        let mut smallest_p = 1.0;
        let (mut alarm, mut fixed_alarm) = (false, false);
        for _ in 0..LOOKS {
            canary += routing.sample(&mut rng) as f64;
            total += per_look as f64;
            let requests = ArmPair { canary, baseline: total - canary };
            let rho = rampart_analysis::srm::srm_mixing_precision(
                rampart_analysis::config::DEFAULT_EXPECTED_SAMPLES,
                CANARY_WEIGHT,
                srm_alpha,
            );
            let check = rampart_analysis::srm::check_sample_ratio(requests, CANARY_WEIGHT, srm_alpha, rho, smallest_p);
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

fn standard_error(rate: f64, n: u64) -> f64 {
    (rate * (1.0 - rate) / n as f64).sqrt()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value_of = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let rollouts: u64 = value_of("--rollouts").map_or(1000, |v| v.parse().expect("--rollouts takes a number"));
    let seed: u64 = value_of("--seed").map_or(20261127, |v| v.parse().expect("--seed takes a number"));
    let as_json = args.iter().any(|a| a == "--json");

    let tolerances = [0.0, 0.01, 0.02];
    let aa = run_ratio(rollouts, seed, 0.0, &tolerances);
    let fixed = fixed_n(SMALLEST_DROP);
    let mut detection = serde_json::Map::new();
    for (k, drop) in [0.01, 0.02, 0.05].into_iter().enumerate() {
        let run = run_ratio(rollouts, seed.wrapping_add(1 + k as u64), drop, &[0.0]);
        detection.insert(
            format!("accuracy_drop_{}pt", (drop * 100.0).round()),
            json!({
                "power": run.rampart[0].rate(rollouts),
                "mean_canary_samples_to_fail": run.rampart[0].mean_samples(),
                "mean_samples_share_of_fixed_n": run.rampart[0].mean_samples().as_f64().map(|m| m / fixed),
                "peers_power": {"kayenta_style": run.kayenta.rate(rollouts), "repeated_z": run.repeated_z.rate(rollouts)},
                "peers_mean_canary_samples_to_fail": {
                    "kayenta_style": run.kayenta.mean_samples(),
                    "repeated_z": run.repeated_z.mean_samples()
                },
            }),
        );
    }
    let (latency_fail, _) = run_latency(rollouts, seed.wrapping_add(10), LATENCY_SHIFT);
    detection.insert(
        "latency_p95_plus_20pct".into(),
        json!({
            "power": latency_fail.rate(rollouts),
            "mean_canary_samples_to_fail": latency_fail.mean_samples(),
            "mean_samples_share_of_fixed_n": latency_fail.mean_samples().as_f64().map(|m| m / fixed),
        }),
    );
    let (latency_aa_fail, latency_aa_pass) = run_latency(rollouts, seed.wrapping_add(11), 1.0);

    let rampart_rate = aa.rampart[0].rate(rollouts);
    // Harder A/A cases for the normal approximation: rare failures and a 5% canary.
    let mut aa_rare = Vec::new();
    for (k, base) in [0.99, 0.999].into_iter().enumerate() {
        let run = run_ratio_at(rollouts, seed.wrapping_add(40 + k as u64), base, 0.05, 0.0, &[0.0]);
        aa_rare.push(json!({
            "base_accuracy": base,
            "canary_weight": 0.05,
            "rampart": run.rampart[0].rate(rollouts),
            "kayenta_style": run.kayenta.rate(rollouts),
            "repeated_z": run.repeated_z.rate(rollouts),
        }));
    }
    let srm = srm_false_alarm_rate(rollouts, seed.wrapping_add(30));
    let mut aa_pass = serde_json::Map::new();
    for (i, t) in tolerances.iter().enumerate() {
        aa_pass.insert(
            format!("tolerance_{}pt", (t * 100.0).round()),
            json!({
                "rate": aa.rampart_pass[i].rate(rollouts),
                "mean_canary_samples": aa.rampart_pass[i].mean_samples(),
                "false_rollback_rate": aa.rampart[i].rate(rollouts),
            }),
        );
    }
    let output = json!({
        "seed": seed,
        "rollouts": rollouts,
        "looks": LOOKS,
        "canary_requests_per_look": CANARY_PER_LOOK,
        "baseline_requests_per_look": baseline_per_look(),
        "canary_weight": CANARY_WEIGHT,
        "alpha": ALPHA,
        "base_accuracy": BASE_ACCURACY,
        "rampart": {
            "tolerance": 0.0,
            "expected_samples": rampart_analysis::config::DEFAULT_EXPECTED_SAMPLES,
            "min_samples": rampart_analysis::config::DEFAULT_MIN_SAMPLES,
        },
        "aa_false_rollback_rate": {
            "rampart": rampart_rate,
            "kayenta_style": aa.kayenta.rate(rollouts),
            "repeated_z": aa.repeated_z.rate(rollouts),
            "rampart_standard_error": standard_error(rampart_rate, rollouts),
            "rampart_latency": latency_aa_fail.rate(rollouts),
        },
        "detection": Value::Object(detection),
        "fixed_n": fixed,
        "fixed_n_simulated_power": fixed_test_power(rollouts, seed.wrapping_add(20), fixed, SMALLEST_DROP),
        "srm_false_alarm_rate": {"rampart": srm.0, "repeated_chi_square": srm.1},
        "fixed_n_test": format!("two-sided two-proportion z at alpha {ALPHA}, power {POWER}, drop {SMALLEST_DROP} from {BASE_ACCURACY}"),
        "aa_pass": Value::Object(aa_pass),
        "aa_false_rollback_rate_rare_events": aa_rare,
        "aa_pass_latency": {"rate": latency_aa_pass.rate(rollouts), "mean_canary_samples": latency_aa_pass.mean_samples()},
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&output).unwrap());
    } else {
        println!("{output:#}");
    }
}
