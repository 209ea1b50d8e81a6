//! What one look hands to the next: the running minimum of each always-valid p-value, each metric's per-look sums
//! (the strata, see [`crate::strata`]) with the counts seen last, the sample-ratio-mismatch sums, choices fixed at the
//! first usable look (the latency threshold) and the decisions already reached, which are final for the step.
//!
//! The controller stores it (e.g. in the ModelRollout status) and passes it back on the next call of
//! [`crate::evaluate_step`]; starting a new analysis step means starting from `None`. Its size depends on the
//! number of metrics and histogram buckets, never on the number of looks. Because whoever can write the status can
//! write it, it is checked on load ([`AnalysisState::checked`]): a value no correct look could have produced is
//! discarded (that part starts over), and a state sealed with a key (see [`crate::seal`]) whose seal does not match
//! is discarded whole.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::AnalysisConfig;
use crate::strata::Strata;
use crate::verdict::Verdict;

/// The most looks a carried state may claim (a look a second for eleven days).
pub const MAX_LOOKS: u64 = 1_000_000;

/// The carried state of one analysis step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisState {
    /// Looks taken so far.
    pub looks: u64,
    /// Per metric, by name.
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricState>,
    /// Smallest always-valid p-value of the sample-ratio-mismatch check so far.
    #[serde(default = "one")]
    pub srm_p: f64,
    /// The per-look sums of the sample-ratio-mismatch check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srm: Option<SrmState>,
    /// The step's Pass or Fail once reached, and the look it was reached at: final for the rest of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<Decided>,
    /// A keyed digest of everything above, when the caller seals states (see [`crate::seal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

fn one() -> f64 {
    1.0
}

impl Default for AnalysisState {
    fn default() -> Self {
        AnalysisState { looks: 0, metrics: BTreeMap::new(), srm_p: 1.0, srm: None, decided: None, seal: None }
    }
}

/// A verdict reached at a look.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decided {
    /// Pass or Fail.
    pub verdict: Verdict,
    /// The look it was reached at.
    pub look: u64,
}

/// The per-look sums of the sample-ratio-mismatch check: with `c_k` the canary's requests in look k, `N_k` all
/// requests in it and `w_k` the configured canary weight, `excess = Σ (c_k − w_k·N_k)` and
/// `variance = Σ N_k·w_k·(1 − w_k)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SrmState {
    /// The canary's cumulative requests at the last look.
    pub canary: f64,
    /// The baseline's cumulative requests at the last look.
    pub baseline: f64,
    /// Σ (c_k − w_k·N_k).
    pub excess: f64,
    /// Σ N_k·w_k·(1 − w_k).
    pub variance: f64,
}

/// The carried state of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricState {
    /// Smallest fail p-value seen.
    pub fail_p: f64,
    /// Smallest pass p-value seen.
    pub pass_p: f64,
    /// Canary samples at the last valid look.
    pub canary_samples: f64,
    /// Baseline samples at the last valid look.
    pub baseline_samples: f64,
    /// The latency threshold in seconds, fixed at the first look with enough baseline samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_threshold: Option<f64>,
    /// A Pass or Fail once reached; verdicts are final within a step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<Verdict>,
    /// The per-look sums; absent before the first look with counts (or in a state from an older Rampart, which
    /// then starts them over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strata: Option<Strata>,
}

impl Default for MetricState {
    fn default() -> Self {
        MetricState {
            fail_p: 1.0,
            pass_p: 1.0,
            canary_samples: 0.0,
            baseline_samples: 0.0,
            latency_threshold: None,
            decided: None,
            strata: None,
        }
    }
}

fn probability(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

fn count(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

impl MetricState {
    /// Whether every number could have come from a correct look (the strata are checked against the counts
    /// later, when the counts are known).
    fn plausible(&self, alpha: f64) -> bool {
        probability(self.fail_p)
            && probability(self.pass_p)
            && count(self.canary_samples)
            && count(self.baseline_samples)
            && self.latency_threshold.is_none_or(|t| t.is_finite() && t > 0.0)
            && !matches!(self.decided, Some(Verdict::Continue | Verdict::Inconclusive))
            && (self.decided != Some(Verdict::Pass) || self.pass_p <= alpha)
            && (self.decided != Some(Verdict::Fail) || self.fail_p <= alpha)
    }
}

impl AnalysisState {
    /// The state with everything implausible dropped: metrics that are not configured go, a metric whose numbers
    /// no correct look could produce starts over, an implausible SRM part starts over, and a decision is kept
    /// only if the metric states agree with it. Returns the notes saying what was dropped.
    pub fn checked(&self, config: &AnalysisConfig) -> (AnalysisState, Vec<String>) {
        let mut notes = Vec::new();
        if self.looks > MAX_LOOKS {
            notes.push(format!("the carried state claims {} looks; it was discarded", self.looks));
            return (AnalysisState::default(), notes);
        }
        let mut metrics = BTreeMap::new();
        for metric in &config.metrics {
            if let Some(state) = self.metrics.get(&metric.name) {
                if state.plausible(config.alpha) {
                    metrics.insert(metric.name.clone(), state.clone());
                } else {
                    notes.push(format!("the carried state of {} was implausible and was discarded", metric.name));
                }
            }
        }
        let srm = self.srm.filter(|s| {
            let fine = count(s.canary) && count(s.baseline) && s.excess.is_finite() && count(s.variance);
            // Σ N_k·w_k(1 − w_k) ≤ N/4, and |excess| ≤ N.
            let total = s.canary + s.baseline;
            fine && s.variance <= total / 4.0 + 1e-9 && s.excess.abs() <= total + 1e-9
        });
        if self.srm.is_some() && srm.is_none() {
            notes.push("the carried traffic-split sums were implausible and were discarded".into());
        }
        let srm_p = if probability(self.srm_p) { self.srm_p } else { 1.0 };
        // A step decision must agree with the metric decisions it came from (an SRM Fail excepted).
        let decided = self.decided.filter(|d| {
            let look_ok = d.look >= 1 && d.look <= self.looks;
            let agrees = match d.verdict {
                Verdict::Pass => {
                    !config.metrics.is_empty()
                        && config.metrics.iter().all(|m| {
                            metrics.get(&m.name).is_some_and(|s: &MetricState| s.decided == Some(Verdict::Pass))
                        })
                }
                Verdict::Fail => true,
                _ => false,
            };
            look_ok && agrees
        });
        if self.decided.is_some() && decided.is_none() {
            notes.push("the carried step decision did not agree with the metric states and was discarded".into());
        }
        (AnalysisState { looks: self.looks, metrics, srm_p, srm, decided, seal: None }, notes)
    }
}
