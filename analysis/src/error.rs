//! The one error type of the crate: configuration and input-shape mistakes that a caller must fix.
//!
//! Problems with the *data* (a counter reset, NaN from Prometheus, an empty histogram) are not errors: they
//! become an `Inconclusive` metric verdict with a reason, so one bad scrape never breaks the whole analysis.

use thiserror::Error;

/// Why an analysis could not run at all.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum AnalysisError {
    /// A configuration value is out of its allowed range.
    #[error("invalid analysis configuration: {field} {problem}")]
    InvalidConfig {
        /// The offending field, in the user's words (e.g. `alpha`, `metrics[accuracy].tolerance`).
        field: String,
        /// What is wrong and what the allowed range is.
        problem: String,
    },
    /// Two metrics share one name, so their verdicts could not be told apart.
    #[error("metric {0:?} is configured twice; metric names must be unique")]
    DuplicateMetric(String),
    /// The step input carries counts for a metric that the configuration does not define.
    #[error(
        "step input has counts for metric {0:?}, which is not configured; add it to the analysis metrics or stop querying it"
    )]
    UnknownMetric(String),
    /// The offline document could not be parsed.
    #[error("analysis document is not valid JSON for the rampart analyze format: {0}")]
    Document(String),
}

impl AnalysisError {
    /// A short, stable label for counting failures in Prometheus (`rampart_analysis_errors_total{reason=...}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            AnalysisError::InvalidConfig { .. } => "invalid_config",
            AnalysisError::DuplicateMetric(_) => "duplicate_metric",
            AnalysisError::UnknownMetric(_) => "unknown_metric",
            AnalysisError::Document(_) => "document",
        }
    }

    pub(crate) fn config(field: impl Into<String>, problem: impl Into<String>) -> Self {
        AnalysisError::InvalidConfig { field: field.into(), problem: problem.into() }
    }
}
