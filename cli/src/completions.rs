//! `rampart completions SHELL`: completion scripts generated from the command grammar by clap_complete.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::args::{Cli, CompletionsArgs};
use crate::error::CliError;

/// Prints the script for the shell on stdout.
pub fn run(args: &CompletionsArgs, invoked_as: &str) -> Result<ExitCode, CliError> {
    let mut command = Cli::command();
    let name = if invoked_as == "kubectl-rampart" { "kubectl-rampart" } else { "rampart" };
    clap_complete::generate(args.shell, &mut command, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
