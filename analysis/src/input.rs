//! What the controller passes in at every analysis interval: cumulative counts per version since the analysis
//! step began, as Prometheus reports them (floats, possibly fractional from `increase()`).

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One look: the configured split and the cumulative counts of every metric for both arms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepInput {
    /// The share of traffic configured for the canary, in [0, 1] (a 10% weight is 0.1).
    pub configured_canary_weight: f64,
    /// Cumulative request counts per version, for the sample-ratio-mismatch check. Without them the check is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ArmPair<f64>>,
    /// Cumulative counts per metric.
    pub metrics: Vec<MetricObservation>,
    /// True on the last look of the step: a metric still undecided then becomes `Inconclusive`.
    #[serde(default)]
    pub final_look: bool,
}

/// A value for each arm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ArmPair<T> {
    /// The canary's value.
    pub canary: T,
    /// The baseline's value.
    pub baseline: T,
}

/// The cumulative counts of one metric for both arms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricObservation {
    /// The configured metric's name.
    pub name: String,
    /// The canary's counts.
    pub canary: ArmCounts,
    /// The baseline's counts.
    pub baseline: ArmCounts,
}

/// Cumulative counts of one arm, in the shape of the metric's kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ArmCounts {
    /// Ratio metrics: successes (correct predictions, or errors for an error rate) out of trials.
    Ratio {
        /// Events counted as successes.
        successes: f64,
        /// All events.
        trials: f64,
    },
    /// Mean metrics: the sum of the values, the sum of their squares and how many there were.
    Mean {
        /// Σx.
        sum: f64,
        /// Σx².
        #[serde(rename = "sumSq")]
        sum_sq: f64,
        /// n.
        count: f64,
    },
    /// Latency metrics: cumulative Prometheus histogram buckets, `+Inf` included.
    Histogram {
        /// The buckets in any order; each holds the count of observations ≤ `le`.
        buckets: Vec<Bucket>,
    },
}

/// One cumulative histogram bucket: the number of observations less than or equal to `le`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Bucket {
    /// The upper bound in seconds; `+Inf` for the last bucket. In JSON a number or the string `"+Inf"`.
    #[serde(serialize_with = "serialize_le", deserialize_with = "deserialize_le")]
    #[schemars(schema_with = "le_schema")]
    pub le: f64,
    /// Cumulative count.
    pub count: f64,
}

fn le_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Upper bound in seconds, or \"+Inf\" for the last bucket.",
        "oneOf": [{"type": "number"}, {"type": "string", "enum": ["+Inf"]}]
    })
}

fn serialize_le<S: Serializer>(le: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if le.is_infinite() && *le > 0.0 { serializer.serialize_str("+Inf") } else { serializer.serialize_f64(*le) }
}

fn deserialize_le<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Le {
        Number(f64),
        Text(String),
    }
    match Le::deserialize(deserializer)? {
        Le::Number(n) => Ok(n),
        Le::Text(s) => match s.trim() {
            "+Inf" | "Inf" | "inf" | "+inf" => Ok(f64::INFINITY),
            other => other.parse::<f64>().map_err(|_| {
                serde::de::Error::custom(format!("bucket bound {other:?} is neither a number nor \"+Inf\""))
            }),
        },
    }
}

impl ArmCounts {
    /// The number of samples these counts stand for (trials, count, or the histogram's `+Inf` bucket).
    pub fn samples(&self) -> f64 {
        match self {
            ArmCounts::Ratio { trials, .. } => *trials,
            ArmCounts::Mean { count, .. } => *count,
            ArmCounts::Histogram { buckets } => {
                buckets.iter().filter(|b| b.le.is_infinite() && b.le > 0.0).map(|b| b.count).next().unwrap_or(f64::NAN)
            }
        }
    }
}
