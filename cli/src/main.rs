//! `rampart`: the command line for teams applying rollouts, CI pipelines validating models, and operators reviewing
//! what Rampart decided. Installed under the name `kubectl-rampart` it also works as the kubectl plugin.
//!
//! Exit codes shared by every command: 0 success, 1 a check or rollout did not pass (the reason is printed), 2 the
//! command could not do its job (bad input, unreachable cluster or database, unknown rollout).
#![forbid(unsafe_code)]

mod analyze;
mod args;
mod cluster;
mod completions;
mod dashboard;
mod database;
mod error;
mod history;
mod intent;
mod junit;
mod render;
mod signing;
mod status;
mod validate;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::args::{Cli, Command};
use crate::error::CliError;

fn main() -> ExitCode {
    let invoked_as = invoked_name();
    let mut command = Cli::command();
    if invoked_as == "kubectl-rampart" {
        // Help and usage lines then read the way kubectl users type the command.
        command = command.bin_name("kubectl rampart").name("kubectl rampart");
    }
    let cli = match command.try_get_matches().and_then(|matches| Cli::from_arg_matches(&matches)) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match run(cli, &invoked_as) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{}: {err}", program_label(&invoked_as));
            if let Some(hint) = err.hint() {
                eprintln!("  hint: {hint}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}

/// The program name the user typed: `kubectl-rampart` when installed as the kubectl plugin, else `rampart`.
fn invoked_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| std::path::Path::new(&arg0).file_stem().map(|stem| stem.to_string_lossy().into_owned()))
        .filter(|name| name == "kubectl-rampart")
        .unwrap_or_else(|| "rampart".to_string())
}

fn program_label(invoked_as: &str) -> &'static str {
    if invoked_as == "kubectl-rampart" { "kubectl rampart" } else { "rampart" }
}

fn run(cli: Cli, invoked_as: &str) -> Result<ExitCode, CliError> {
    // A single-threaded runtime: the commands make one request at a time, and starting it costs next to nothing
    // for the commands that stay offline.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| CliError::input(format!("cannot start the async runtime: {err}"), None))?;
    let global = cli.global;
    runtime.block_on(async move {
        match cli.command {
            Command::Validate(args) => validate::run(&args, &global).await,
            Command::Sign(args) => signing::sign(&args),
            Command::Verify(args) => signing::verify(&args),
            Command::Register(args) => signing::register(&args, &global).await,
            Command::Status(args) => status::run(&args, &global).await,
            Command::Promote(args) => intent::run(intent::Intent::Promote, &args, &global).await,
            Command::Abort(args) => intent::run(intent::Intent::Abort, &args, &global).await,
            Command::Retry(args) => intent::run(intent::Intent::Retry, &args, &global).await,
            Command::History(args) => history::run(&args, &global).await,
            Command::Analyze(args) => analyze::run(&args),
            Command::Dashboard(args) => dashboard::run(&args, &global).await,
            Command::Completions(args) => completions::run(&args, invoked_as),
        }
    })
}
