//! The offline `rampart analyze` format: a committed example document goes in, a sequence of verdicts with the
//! first decision comes out, and the JSON shape round-trips.

#![allow(clippy::unwrap_used)]

use rampart_analysis::document::DOCUMENT_VERSION;
use rampart_analysis::{AnalysisDocument, AnalysisError, AnalysisReport, Verdict, analyze_document, analyze_json};

const EXAMPLE: &str = include_str!("data/analyze-input.json");

#[test]
fn example_document_rolls_back_at_the_first_look_with_enough_evidence() {
    let document: AnalysisDocument = serde_json::from_str(EXAMPLE).unwrap();
    let report = analyze_document(&document).unwrap();
    assert_eq!(report.verdicts.len(), document.intervals.len());
    let decision = report.decision.as_ref().unwrap();
    assert_eq!(decision.verdict, Verdict::Fail, "{}", decision.reason);
    // Every look before the decision was undecided, and the decision's look is where it happened.
    let at = usize::try_from(decision.look).unwrap() - 1;
    assert!(report.verdicts[..at].iter().all(|v| v.verdict.verdict == Verdict::Continue));
    assert_eq!(report.verdicts[at].verdict.verdict, Verdict::Fail);
    assert_eq!(decision.time.as_deref(), document.intervals[at].time.as_deref());
    assert_eq!(report.state.looks, document.intervals.len() as u64);
}

#[test]
fn json_in_json_out_round_trips_through_the_report_type() {
    let text = analyze_json(EXAMPLE).unwrap();
    let report: AnalysisReport = serde_json::from_str(&text).unwrap();
    assert_eq!(report.api_version, DOCUMENT_VERSION);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(value["verdicts"][0]["time"].is_string());
    assert!(value["verdicts"][0]["metrics"].is_array());
}

#[test]
fn unsupported_versions_and_malformed_documents_are_clear_errors() {
    let wrong = EXAMPLE.replacen("rampart.dev/analysis/v1", "rampart.dev/analysis/v9", 1);
    let err = analyze_json(&wrong).unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
    let err = analyze_json("{\"analysis\": 3}").unwrap_err();
    assert!(matches!(err, AnalysisError::Document(_)));
}

#[test]
fn the_example_in_docs_statistics_md_is_a_valid_document() {
    let doc = include_str!("../../docs/statistics.md");
    let start = doc.find("```json\n").unwrap() + "```json\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let report: AnalysisReport = serde_json::from_str(&analyze_json(&doc[start..end]).unwrap()).unwrap();
    assert_eq!(report.verdicts.len(), 1);
    assert_eq!(report.verdicts[0].verdict.metrics.len(), 3);
}

#[test]
fn committed_json_schemas_match_the_types() {
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../schema/analysis-document.schema.json")).unwrap();
    assert_eq!(
        committed,
        rampart_analysis::document::document_schema(),
        "regenerate: cargo run -p rampart-analysis --example schema -- document > analysis/schema/analysis-document.schema.json"
    );
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../schema/analysis-report.schema.json")).unwrap();
    assert_eq!(
        committed,
        rampart_analysis::document::report_schema(),
        "regenerate: cargo run -p rampart-analysis --example schema -- report > analysis/schema/analysis-report.schema.json"
    );
}
