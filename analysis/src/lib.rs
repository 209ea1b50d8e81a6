//! Rampart's statistics engine: canary-versus-baseline verdicts that stay valid under continuous monitoring.
//! Pure functions over counts and histograms; no I/O, no async.
//!
//! The controller calls [`evaluate_step`] at every analysis interval with cumulative counts per version and the
//! [`AnalysisState`] of the previous look; the CLI's `rampart analyze` calls [`analyze_document`] (or
//! [`analyze_json`]) on an offline [`AnalysisDocument`]. The method is described in `docs/statistics.md`.

#![forbid(unsafe_code)]

pub mod config;
pub mod document;
pub mod error;
mod format;
pub mod histogram;
pub mod holm;
pub mod input;
mod metric;
pub mod seal;
pub mod sequence;
pub mod srm;
pub mod state;
pub mod step;
pub mod strata;
pub mod textbook;
pub mod verdict;

pub use config::{AnalysisConfig, Direction, MetricConfig, MetricKind, SrmConfig, Tolerance, Tuning};
pub use document::{AnalysisDocument, AnalysisReport, Interval, analyze_document, analyze_json};
pub use error::AnalysisError;
pub use input::{ArmCounts, ArmPair, Bucket, MetricObservation, StepInput};
pub use seal::{StateKey, StateSeal};
pub use state::{AnalysisState, Decided, MetricState, SrmState};
pub use step::{StepOutcome, evaluate_step, evaluate_step_sealed};
pub use verdict::{
    ArmEstimate, LatencyDetail, MetricVerdict, Movement, QuantileShift, SrmVerdict, StepVerdict, Verdict,
};
