//! `rampart analyze --input FILE`: the statistics engine run offline on a document of cumulative counts, printing
//! the verdict of every look (JSON in the engine's report schema, or a summary for people).

use std::io::Read;
use std::process::ExitCode;

use rampart_analysis::{AnalysisDocument, AnalysisReport, Verdict, analyze_document};

use crate::args::{AnalyzeArgs, TextOrJson};
use crate::error::CliError;
use crate::render::table;

/// Largest input read (a document with millions of looks is a mistake, not an analysis).
const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;

pub fn run(args: &AnalyzeArgs) -> Result<ExitCode, CliError> {
    let input = read_input(args)?;
    let document: AnalysisDocument = serde_json::from_str(&input).map_err(|err| {
        CliError::input(
            format!("{} is not an analysis document: {err}", args.input.display()),
            Some("see analysis/schema/analysis-document.schema.json (apiVersion rampart.dev/analysis/v1)".into()),
        )
    })?;
    let report = analyze_document(&document)
        .map_err(|err| CliError::input(format!("cannot analyze {}: {err}", args.input.display()), None))?;
    match args.format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report)
                .map_err(|err| CliError::input(format!("cannot write the report: {err}"), None))?
        ),
        TextOrJson::Text => print!("{}", summary(&report)),
    }
    let failed = report.decision.as_ref().is_some_and(|decision| decision.verdict == Verdict::Fail);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn read_input(args: &AnalyzeArgs) -> Result<String, CliError> {
    let mut text = String::new();
    let result = if args.input.as_os_str() == "-" {
        std::io::stdin().take(MAX_INPUT_BYTES).read_to_string(&mut text)
    } else {
        std::fs::File::open(&args.input).and_then(|file| file.take(MAX_INPUT_BYTES).read_to_string(&mut text))
    };
    result.map_err(|err| CliError::input(format!("cannot read {}: {err}", args.input.display()), None))?;
    Ok(text)
}

fn summary(report: &AnalysisReport) -> String {
    let rows: Vec<Vec<String>> = report
        .verdicts
        .iter()
        .map(|look| {
            vec![
                look.verdict.look.to_string(),
                look.time.clone().unwrap_or_default(),
                format!("{:?}", look.verdict.verdict),
                look.verdict.reason.clone(),
            ]
        })
        .collect();
    let mut out = table(&["LOOK", "TIME", "VERDICT", "REASON"], &rows);
    match &report.decision {
        Some(decision) => {
            out.push_str(&format!("decision: {:?} at look {}: {}\n", decision.verdict, decision.look, decision.reason))
        }
        None => out.push_str("decision: none yet (no look reached Pass or Fail)\n"),
    }
    out
}
