//! The offline format of `rampart analyze --input FILE`: a document with the analysis configuration and the
//! cumulative counts of every interval in, the sequence of verdicts out. The CLI reads and writes the files;
//! this module only maps one value to the other.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::AnalysisConfig;
use crate::error::AnalysisError;
use crate::input::StepInput;
use crate::state::AnalysisState;
use crate::step::evaluate_step;
use crate::verdict::{StepVerdict, Verdict};

/// Version tag of the document format.
pub const DOCUMENT_VERSION: &str = "rampart.dev/analysis/v1";

/// Input of an offline analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisDocument {
    /// Must be `rampart.dev/analysis/v1` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The analysis configuration, as in a ModelRollout's `analysis` block.
    pub analysis: AnalysisConfig,
    /// One entry per look, in time order, each with cumulative counts since the step began.
    pub intervals: Vec<Interval>,
}

/// One look of an offline analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    /// A free label, e.g. an RFC 3339 timestamp; copied to the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The counts of this look.
    #[serde(flatten)]
    pub input: StepInput,
}

/// Output of an offline analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisReport {
    /// `rampart.dev/analysis/v1`.
    pub api_version: String,
    /// The first Pass or Fail, which is where the controller would have stopped; `None` if there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The verdict of every look, in input order.
    pub verdicts: Vec<IntervalVerdict>,
    /// The state after the last look (what the controller would carry on).
    pub state: AnalysisState,
}

/// Where the analysis decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Pass or Fail.
    pub verdict: Verdict,
    /// The look (1-based) at which it was reached.
    pub look: u64,
    /// The interval's label, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Why.
    pub reason: String,
}

/// The verdict of one look with its label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntervalVerdict {
    /// The interval's label, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The step verdict at this look.
    #[serde(flatten)]
    pub verdict: StepVerdict,
}

/// Runs every interval of the document through [`evaluate_step`], carrying the state from look to look.
pub fn analyze_document(document: &AnalysisDocument) -> Result<AnalysisReport, AnalysisError> {
    if let Some(version) = &document.api_version
        && version != DOCUMENT_VERSION
    {
        return Err(AnalysisError::Document(format!(
            "apiVersion {version:?} is not supported; use {DOCUMENT_VERSION:?}"
        )));
    }
    let mut state: Option<AnalysisState> = None;
    let mut verdicts = Vec::with_capacity(document.intervals.len());
    let mut decision = None;
    for interval in &document.intervals {
        let outcome = evaluate_step(&document.analysis, &interval.input, state.as_ref())?;
        let verdict = outcome.verdict;
        if decision.is_none() && matches!(verdict.verdict, Verdict::Pass | Verdict::Fail) {
            decision = Some(Decision {
                verdict: verdict.verdict,
                look: verdict.look,
                time: interval.time.clone(),
                reason: verdict.reason.clone(),
            });
        }
        verdicts.push(IntervalVerdict { time: interval.time.clone(), verdict });
        state = Some(outcome.state);
    }
    Ok(AnalysisReport {
        api_version: DOCUMENT_VERSION.to_string(),
        decision,
        verdicts,
        state: state.unwrap_or_default(),
    })
}

/// The JSON Schema of the offline input document ([`AnalysisDocument`]).
pub fn document_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(AnalysisDocument)).unwrap_or_default()
}

/// The JSON Schema of the offline output ([`AnalysisReport`]).
pub fn report_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(AnalysisReport)).unwrap_or_default()
}

/// [`analyze_document`] on JSON text, returning pretty JSON text.
pub fn analyze_json(input: &str) -> Result<String, AnalysisError> {
    let document: AnalysisDocument = serde_json::from_str(input).map_err(|e| AnalysisError::Document(e.to_string()))?;
    let report = analyze_document(&document)?;
    serde_json::to_string_pretty(&report).map_err(|e| AnalysisError::Document(e.to_string()))
}
