//! `rampart-check`: the model checks as a command, for people, CI and the Jobs the controller starts.
//!
//! Exit codes shared by every subcommand: 0 the check passed, 1 it failed (the reason is printed), 2 usage or I/O error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod contract;
#[cfg(feature = "fetch")]
mod fetch;
mod sign;
mod smoke_eval;
#[cfg(feature = "trainer")]
mod train;
mod verify;

/// Model checks run before a candidate gets traffic: signatures, tensor contracts, smoke training.
#[derive(Parser)]
#[command(name = "rampart-check", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign a model file or directory into an OpenSSF model-signing bundle.
    Sign(sign::Args),
    /// Verify a model file or directory against a signature bundle and trusted public keys.
    Verify(verify::Args),
    /// Download a signed model (s3://, gs://, az://, https:// or a path) into a directory, keeping only files whose
    /// digest matches the signed manifest.
    #[cfg(feature = "fetch")]
    Fetch(fetch::Args),
    /// Compare a candidate model's tensor contract with the baseline's.
    Contract(contract::Args),
    /// Evaluate the JSON-lines metrics of a smoke-training run.
    SmokeEval(smoke_eval::Args),
    /// Run the reference smoke trainer (a residual MLP on synthetic data).
    #[cfg(feature = "trainer")]
    Train(train::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 2 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        #[cfg(feature = "fetch")]
        Command::Fetch(args) => fetch::run(args),
        Command::Contract(args) => contract::run(args),
        Command::SmokeEval(args) => smoke_eval::run(args),
        #[cfg(feature = "trainer")]
        Command::Train(args) => train::run(args),
    }
}
