//! What the user configures for an analysis: alpha, the metrics with their direction and tolerance, the mixing
//! parameter of the confidence sequences, minimum samples and the sample-ratio-mismatch check.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::AnalysisError;
use crate::sequence::{EffectMixture, MixingPrecision};

/// Default family-wise error rate for rollbacks and for passes.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// Default minimum number of samples in *each* arm before a metric may reach any verdict.
pub const DEFAULT_MIN_SAMPLES: f64 = 100.0;
/// Default effective sample size at which the confidence sequence is tuned to be tightest.
pub const DEFAULT_EXPECTED_SAMPLES: f64 = 500.0;
/// Default p-value below which the traffic split is declared broken.
pub const DEFAULT_SRM_ALPHA: f64 = 0.001;

/// The whole analysis configuration of one rollout (the `analysis` block of a ModelRollout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Error rate of the decisions: the chance of rolling back a canary that is within tolerance on every metric
    /// (Holm–Bonferroni across metrics), and of passing one metric that is in fact worse than its tolerance.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Minimum samples per arm (canary and baseline each) before any metric may pass or fail.
    #[serde(default = "default_min_samples")]
    pub min_samples: f64,
    /// How the confidence sequences are tuned.
    #[serde(default)]
    pub tuning: Tuning,
    /// Sample-ratio-mismatch check on the request counts.
    #[serde(default)]
    pub srm: SrmConfig,
    /// The metrics compared between canary and baseline.
    pub metrics: Vec<MetricConfig>,
}

fn default_alpha() -> f64 {
    DEFAULT_ALPHA
}
fn default_min_samples() -> f64 {
    DEFAULT_MIN_SAMPLES
}

/// How the mixture of the anytime-valid tests is chosen. Both forms are fixed before any data is seen, which the
/// validity of the tests requires. Either form stays valid at any number of samples; it decides where the tests are
/// most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Tuning {
    /// The *effective* sample size `n_c·n_b/(n_c+n_b)` a step is expected to reach (about the canary's count when
    /// the baseline is much larger): its horizon. The tests are matched to the smallest effect a fixed test would
    /// detect at that size, so a step that reaches it catches that effect about as often as the fixed test would.
    /// Good values: the samples you expect the canary to get in one analysis step.
    ExpectedSamples(f64),
    /// The square of the smallest standardized effect (effect divided by the per-sample standard deviation) the
    /// tests are matched to; the mixture puts weight on 1, 2, 4 and 8 times that effect.
    MixingVariance(f64),
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning::ExpectedSamples(DEFAULT_EXPECTED_SAMPLES)
    }
}

/// The sample-ratio-mismatch (SRM) check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SrmConfig {
    /// Whether the check runs at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The chi-square p-value below which the step fails.
    #[serde(default = "default_srm_alpha")]
    pub alpha: f64,
}

fn default_true() -> bool {
    true
}
fn default_srm_alpha() -> f64 {
    DEFAULT_SRM_ALPHA
}

impl Default for SrmConfig {
    fn default() -> Self {
        SrmConfig { enabled: true, alpha: DEFAULT_SRM_ALPHA }
    }
}

/// One metric compared between canary and baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricConfig {
    /// The metric's name as users see it (`accuracy`, `error-rate`, `latency`).
    pub name: String,
    /// What the counts are and how they are compared.
    #[serde(flatten)]
    pub kind: MetricKind,
    /// The non-inferiority margin: how much worse the canary may be and still pass. For latency metrics it applies
    /// to the probability that a canary request is slower than a baseline request of the same look, minus ½
    /// (absolute points: 0.05 lets the canary be slower in up to 55% of pairs; relative: a fraction of ½).
    #[serde(default)]
    pub tolerance: Tolerance,
    /// Per-metric override of the minimum samples per arm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<f64>,
}

/// The kinds of metric Rampart compares.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum MetricKind {
    /// Successes out of trials (accuracy from labelled outcomes, error rate).
    Ratio {
        /// Whether a higher share is better (accuracy) or worse (error rate).
        direction: Direction,
    },
    /// A per-request value summarised by sum, sum of squares and count.
    Mean {
        /// Whether a higher mean is better.
        direction: Direction,
    },
    /// A latency histogram (Prometheus cumulative `le` buckets). The verdict compares the whole histograms: within
    /// each look, how often a canary request is slower than a baseline request (ranks over the buckets, ties
    /// counted half); lower is better. The quantile and threshold below set the slow-request share and the
    /// quantiles shown beside the verdict; they do not decide it.
    Latency {
        /// The baseline quantile the reported slow-request threshold starts from (0.95 = p95).
        #[serde(default = "default_quantile")]
        quantile: f64,
        /// Relative slack on that quantile: threshold = baseline quantile × (1 + slack), rounded up to a bucket bound.
        #[serde(default = "default_slack")]
        threshold_slack: f64,
        /// A fixed threshold in seconds instead of one derived from the baseline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threshold_seconds: Option<f64>,
    },
}

fn default_quantile() -> f64 {
    0.95
}
fn default_slack() -> f64 {
    0.1
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// Larger values are better (accuracy).
    HigherIsBetter,
    /// Smaller values are better (error rate, latency).
    LowerIsBetter,
}

impl Direction {
    /// +1 when higher is better, −1 otherwise: multiplying `canary − baseline` by it makes positive mean "better".
    pub fn sign(self) -> f64 {
        match self {
            Direction::HigherIsBetter => 1.0,
            Direction::LowerIsBetter => -1.0,
        }
    }
}

/// The non-inferiority margin of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Tolerance {
    /// In the metric's own units (0.01 = one accuracy point).
    Absolute(f64),
    /// A fraction of the baseline's current estimate (0.05 = 5% of the baseline value).
    Relative(f64),
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance::Absolute(0.0)
    }
}

impl Tolerance {
    /// The margin in the metric's units, given the baseline's estimate.
    pub fn margin(self, baseline_estimate: f64) -> f64 {
        match self {
            Tolerance::Absolute(m) => m,
            Tolerance::Relative(r) => r * baseline_estimate.abs(),
        }
    }
}

impl AnalysisConfig {
    /// A configuration with default alpha, minimum samples, tuning and SRM check.
    pub fn with_metrics(metrics: Vec<MetricConfig>) -> Self {
        AnalysisConfig {
            alpha: DEFAULT_ALPHA,
            min_samples: DEFAULT_MIN_SAMPLES,
            tuning: Tuning::default(),
            srm: SrmConfig::default(),
            metrics,
        }
    }

    /// Checks every range; the error names the field and the allowed values.
    pub fn validate(&self) -> Result<(), AnalysisError> {
        if !(self.alpha > 0.0 && self.alpha <= 0.5) {
            return Err(AnalysisError::config(
                "alpha",
                format!("is {}; use a value in (0, 0.5], e.g. 0.05", self.alpha),
            ));
        }
        if !(self.min_samples.is_finite() && self.min_samples >= 2.0) {
            return Err(AnalysisError::config(
                "minSamples",
                format!("is {}; use at least 2 (100 or more is recommended)", self.min_samples),
            ));
        }
        self.mixing_precision()?;
        if !(self.srm.alpha > 0.0 && self.srm.alpha < 1.0) {
            return Err(AnalysisError::config(
                "srm.alpha",
                format!("is {}; use a value in (0, 1), e.g. 0.001", self.srm.alpha),
            ));
        }
        if self.metrics.is_empty() {
            return Err(AnalysisError::config("metrics", "is empty; configure at least one metric"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for metric in &self.metrics {
            if !seen.insert(metric.name.as_str()) {
                return Err(AnalysisError::DuplicateMetric(metric.name.clone()));
            }
            metric.validate()?;
        }
        Ok(())
    }

    /// The effective sample size the sequences are tuned for (converted from a mixing variance when that is given).
    pub fn expected_samples(&self) -> f64 {
        match self.tuning {
            Tuning::ExpectedSamples(n) => n,
            Tuning::MixingVariance(_) => DEFAULT_EXPECTED_SAMPLES,
        }
    }

    /// The mixture of the metric tests, from the tuning.
    pub fn effect_mixture(&self) -> Result<EffectMixture, AnalysisError> {
        self.mixing_precision()?;
        Ok(match self.tuning {
            Tuning::ExpectedSamples(n) => EffectMixture::for_expected_samples(n, self.alpha),
            Tuning::MixingVariance(v) => EffectMixture { smallest_effect: v.sqrt() },
        })
    }

    /// The mixing precision ρ of the two-sided normal mixture (the sample-ratio-mismatch check), from the tuning.
    pub fn mixing_precision(&self) -> Result<MixingPrecision, AnalysisError> {
        match self.tuning {
            Tuning::ExpectedSamples(n) if n.is_finite() && n > 0.0 => Ok(MixingPrecision::tuned_for(n, self.alpha)),
            Tuning::MixingVariance(v) if v.is_finite() && v > 0.0 => Ok(MixingPrecision::from_mixing_variance(v)),
            Tuning::ExpectedSamples(n) => Err(AnalysisError::config(
                "tuning.expectedSamples",
                format!("is {n}; use a positive number of samples, e.g. 500"),
            )),
            Tuning::MixingVariance(v) => Err(AnalysisError::config(
                "tuning.mixingVariance",
                format!("is {v}; use a positive variance, e.g. 0.01"),
            )),
        }
    }
}

impl MetricConfig {
    /// The minimum samples per arm for this metric.
    pub fn min_samples_or(&self, default: f64) -> f64 {
        self.min_samples.unwrap_or(default)
    }

    fn validate(&self) -> Result<(), AnalysisError> {
        let field = |f: &str| format!("metrics[{}].{f}", self.name);
        if self.name.trim().is_empty() {
            return Err(AnalysisError::config("metrics[].name", "is empty; give every metric a name"));
        }
        match self.tolerance {
            Tolerance::Absolute(m) | Tolerance::Relative(m) if !(m.is_finite() && m >= 0.0) => {
                return Err(AnalysisError::config(field("tolerance"), format!("is {m}; use a finite value >= 0")));
            }
            _ => {}
        }
        if let Some(n) = self.min_samples
            && !(n.is_finite() && n >= 2.0)
        {
            return Err(AnalysisError::config(field("minSamples"), format!("is {n}; use at least 2")));
        }
        if let MetricKind::Latency { quantile, threshold_slack, threshold_seconds } = self.kind {
            if !(quantile > 0.0 && quantile < 1.0) {
                return Err(AnalysisError::config(
                    field("quantile"),
                    format!("is {quantile}; use a value in (0, 1), e.g. 0.95"),
                ));
            }
            if !(threshold_slack.is_finite() && threshold_slack >= 0.0) {
                return Err(AnalysisError::config(
                    field("thresholdSlack"),
                    format!("is {threshold_slack}; use a finite value >= 0, e.g. 0.1"),
                ));
            }
            if let Some(t) = threshold_seconds
                && !(t.is_finite() && t > 0.0)
            {
                return Err(AnalysisError::config(
                    field("thresholdSeconds"),
                    format!("is {t}; use a positive number of seconds"),
                ));
            }
        }
        Ok(())
    }
}
