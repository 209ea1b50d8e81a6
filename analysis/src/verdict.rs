//! The verdicts Rampart reports per metric and per step, with the numbers behind them. This JSON shape goes into
//! the ModelRollout status, events, the registry and the CLI, so field names are stable and readable.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::histogram::MannWhitney;
use crate::textbook::TestResult;

/// The outcome of a metric or a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Verdict {
    /// The canary is, with the configured confidence, no worse than the tolerance.
    Pass,
    /// The canary is, with the configured confidence, worse than the tolerance (or traffic is misrouted).
    Fail,
    /// Not enough evidence yet; look again later.
    Continue,
    /// The data cannot support a verdict (bad or missing counts, or the step ended undecided).
    Inconclusive,
}

impl Verdict {
    /// The verdict's name as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Fail => "Fail",
            Verdict::Continue => "Continue",
            Verdict::Inconclusive => "Inconclusive",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict of one analysis look over all metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepVerdict {
    /// Fail if traffic is misrouted or any metric fails (after Holm–Bonferroni); else Inconclusive if any metric
    /// is; else Pass if every metric passes; else Continue.
    pub verdict: Verdict,
    /// One line for people: why.
    pub reason: String,
    /// How many looks this analysis has taken, this one included.
    pub look: u64,
    /// The sample-ratio-mismatch check, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srm: Option<SrmVerdict>,
    /// One verdict per configured metric, in configuration order.
    pub metrics: Vec<MetricVerdict>,
}

/// The sample-ratio-mismatch check of one look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SrmVerdict {
    /// Fail on a mismatch, Pass otherwise, Continue when too few requests to test.
    pub verdict: Verdict,
    /// The configured canary weight.
    pub expected_canary_share: f64,
    /// The canary's observed share of requests.
    pub observed_canary_share: f64,
    /// Requests counted per arm.
    pub canary_requests: f64,
    /// Requests counted per arm.
    pub baseline_requests: f64,
    /// The chi-square test (1 degree of freedom) with its fixed-horizon p-value, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestResult>,
    /// The anytime-valid p-value of "traffic follows the weight", smallest over the step's looks; the step fails
    /// when it is below the SRM alpha.
    pub always_valid_p: f64,
    /// One line for people.
    pub reason: String,
}

/// The verdict of one metric at one look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricVerdict {
    /// The metric's configured name.
    pub name: String,
    /// This metric's outcome.
    pub verdict: Verdict,
    /// One line for people: why.
    pub reason: String,
    /// The canary's estimate and samples (for latency: the probability that a canary request is slower than a
    /// baseline request of the same look, ties counted half).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<ArmEstimate>,
    /// The baseline's estimate and samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<ArmEstimate>,
    /// canary − baseline, estimated within each look and summed over the looks (for latency: that probability
    /// minus ½).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<f64>,
    /// The tolerance in the metric's units (always ≥ 0; worse means lower for higher-is-better metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// Lower end of the anytime-valid (1 − alpha) confidence sequence for canary − baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_bound: Option<f64>,
    /// Upper end of the confidence sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_bound: Option<f64>,
    /// Always-valid p-value of "the canary is within tolerance" (small = surely worse); the smallest over all looks
    /// so far. This is the p-value Holm–Bonferroni uses for Fail decisions.
    pub always_valid_p: f64,
    /// Always-valid p-value of "the canary is worse than the tolerance" (small = surely fine); smallest so far.
    pub pass_p: f64,
    /// The level the fail p-value had to reach at this look under Holm–Bonferroni.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_threshold: Option<f64>,
    /// Latency details: the threshold and the Kayenta-style rank comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyDetail>,
    /// The Cochran-Mantel-Haenszel test of ratio metrics over the looks as strata (fixed-horizon, for reference
    /// only): chi-square with one degree of freedom and its p-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mantel_haenszel: Option<TestResult>,
    /// Welch's t-test for mean metrics (fixed-horizon, for reference only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welch: Option<TestResult>,
}

/// One arm's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArmEstimate {
    /// The share, mean, or share of slow requests.
    pub estimate: f64,
    /// Samples behind it.
    pub samples: f64,
}

/// Latency-specific numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencyDetail {
    /// Requests slower than this many seconds count as slow (the baseline's quantile × (1 + slack), rounded up to a
    /// bucket bound, fixed at the first usable look; or the configured threshold). Absent when the histogram has no
    /// finite bound that high.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_seconds: Option<f64>,
    /// The configured quantile.
    pub quantile: f64,
    /// The canary's quantile estimate in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_quantile_seconds: Option<f64>,
    /// The baseline's quantile estimate in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_quantile_seconds: Option<f64>,
    /// Mann-Whitney of canary against baseline on the buckets, with the Hodges-Lehmann shift in seconds
    /// (fixed-horizon, for parity with Kayenta; not used for the verdict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mann_whitney: Option<MannWhitney>,
    /// The canary's share of requests slower than `thresholdSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_slow_share: Option<f64>,
    /// The baseline's share of requests slower than `thresholdSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_slow_share: Option<f64>,
    /// Which quantiles moved: p50, p90, p95 and p99 of both versions, and whether the canary is surely slower or
    /// faster there (anytime-valid, Bonferroni over the bucket bounds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantiles: Vec<QuantileShift>,
}

/// One quantile of both versions and whether it surely moved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuantileShift {
    /// The quantile (0.95 = p95).
    pub quantile: f64,
    /// The canary's estimate in seconds (interpolated within the bucket, as `histogram_quantile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_seconds: Option<f64>,
    /// The baseline's estimate in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_seconds: Option<f64>,
    /// The bucket bound the comparison is made at: the first bound at or above the baseline's quantile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_seconds: Option<f64>,
    /// `Slower` when fewer canary requests than baseline requests finish within that bound (surely, at level
    /// alpha over all bounds), `Faster` when surely more, `Unchanged` otherwise.
    pub moved: Movement,
}

/// Whether a quantile surely moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Movement {
    /// The canary is surely slower at this quantile.
    Slower,
    /// The canary is surely faster at this quantile.
    Faster,
    /// No sure difference yet.
    Unchanged,
}
