//! What one look hands to the next: the running minimum of each always-valid p-value, the counts seen last
//! (to notice counter resets) and choices fixed at the first usable look (the latency threshold).
//!
//! The controller stores it (e.g. in the ModelRollout status) and passes it back on the next call of
//! [`crate::evaluate_step`]; starting a new analysis step means starting from `None`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::verdict::Verdict;

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
}

fn one() -> f64 {
    1.0
}

impl Default for AnalysisState {
    fn default() -> Self {
        AnalysisState { looks: 0, metrics: BTreeMap::new(), srm_p: 1.0 }
    }
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
        }
    }
}
