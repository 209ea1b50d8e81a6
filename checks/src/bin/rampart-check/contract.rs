//! `rampart-check contract`: compare a candidate model's tensor contract with the baseline's and check
//! its shapes at several batch sizes. Exit 0 compatible, 1 incompatible, 2 a file could not be read or is not a
//! valid ONNX model (with `--format json`, that error is JSON on stdout as well).

use std::path::PathBuf;
use std::process::ExitCode;

use rampart_checks::contract::{ContractOptions, DEFAULT_BATCH_SIZES, check_contract};
use rampart_checks::smoke::termination::{TERMINATION_LOG_ENV, TerminationMessage, write_termination_message};

/// Output format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// A report for people.
    Text,
    /// The full report as JSON.
    Json,
}

/// Arguments of `rampart-check contract`.
#[derive(clap::Args)]
pub struct Args {
    /// The candidate model (ONNX or safetensors).
    #[arg(long)]
    candidate: PathBuf,
    /// The model in production now. Without it only the shape checks run.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Batch sizes to run shape inference at.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_BATCH_SIZES, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    batch_sizes: Vec<u64>,
    /// Treat outputs (or safetensors tensors) the baseline does not have as breaking.
    #[arg(long)]
    exact_outputs: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also write the verdict JSON here (default: /dev/termination-log when it exists, as in a Pod).
    #[arg(long, env = TERMINATION_LOG_ENV)]
    termination_log: Option<PathBuf>,
}

/// Runs the check and prints the report.
pub fn run(args: Args) -> ExitCode {
    let options = ContractOptions { batch_sizes: args.batch_sizes, allow_new_outputs: !args.exact_outputs };
    let report = match check_contract(&args.candidate, args.baseline.as_deref(), &options) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("rampart-check contract: {err}");
            if matches!(args.format, Format::Json) {
                // A caller that asked for JSON reads stdout; it gets the error there too.
                println!("{}", serde_json::to_string_pretty(&err.to_json()).unwrap_or_default());
            }
            let message = TerminationMessage {
                curve: Vec::new(),
                files: Vec::new(),
                check: "contract".to_string(),
                passed: false,
                summary: "unreadable model".to_string(),
                reasons: vec![err.to_string()],
            };
            write_message(args.termination_log.as_deref(), &message);
            return ExitCode::from(2);
        }
    };
    match args.format {
        Format::Text => print!("{}", report.to_text()),
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(err) => {
                eprintln!("rampart-check contract: cannot write the report as JSON: {err}");
                return ExitCode::from(2);
            }
        },
    }
    write_message(args.termination_log.as_deref(), &report.termination_message());
    if report.compatible { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn write_message(path: Option<&std::path::Path>, message: &TerminationMessage) {
    if let Err(err) = write_termination_message(path, message) {
        eprintln!("rampart-check contract: cannot write the termination message: {err}");
    }
}
