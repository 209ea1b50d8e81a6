//! `rampart-check smoke-eval` (not built yet).

use std::process::ExitCode;

/// Arguments of `rampart-check smoke-eval`.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("rampart-check: this subcommand is not built yet");
    ExitCode::from(2)
}
