//! `rampart-check train`: the reference smoke trainer (a residual MLP on synthetic data) writing the
//! smoke-training protocol, one JSON line per step. Exit 0 when the run finished (however badly it
//! trained: `smoke-eval` judges that), 2 when it could not run.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use rampart_checks::smoke::{TrainConfig, TrainDevice, train};

/// Device to train on.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The CPU.
    Cpu,
    /// GPU 0 (the binary must be built with `--features cuda`).
    Cuda,
}

/// Arguments of `rampart-check train`.
#[derive(clap::Args)]
pub struct Args {
    /// Optimizer steps.
    #[arg(long, default_value_t = 100)]
    steps: u64,
    /// SGD learning rate.
    #[arg(long, alias = "lr", default_value_t = 0.05)]
    learning_rate: f64,
    /// Remove the residual connections (a plain deep tanh MLP, whose gradients vanish).
    #[arg(long)]
    no_residual: bool,
    /// Hidden blocks.
    #[arg(long, default_value_t = 8)]
    depth: usize,
    /// Hidden width.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seed for data and initial weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    /// Write the metric lines to this file instead of standard output.
    #[arg(long)]
    metrics_out: Option<PathBuf>,
    /// Start from the weights in this safetensors file (the candidate model; in a smoke Job, the verified copy:
    /// `--init-from $(RAMPART_MODEL_URI)`). Its tensors must match the model's names and shapes.
    #[arg(long, value_name = "SAFETENSORS")]
    init_from: Option<PathBuf>,
    /// Write the seeded initial weights to this safetensors file and exit without training (makes a model to sign
    /// and smoke-train).
    #[arg(long, value_name = "SAFETENSORS", conflicts_with = "init_from")]
    save_initial: Option<PathBuf>,
}

/// Trains and writes one protocol line per step.
pub fn run(args: Args) -> ExitCode {
    let config = TrainConfig {
        steps: args.steps,
        learning_rate: args.learning_rate,
        residual: !args.no_residual,
        depth: args.depth,
        hidden: args.hidden,
        batch_size: args.batch_size,
        seed: args.seed,
        device: match args.device {
            DeviceChoice::Cpu => TrainDevice::Cpu,
            DeviceChoice::Cuda => TrainDevice::Cuda(0),
        },
        init_from: args.init_from.clone(),
        ..TrainConfig::default()
    };
    if let Some(path) = &args.save_initial {
        return match rampart_checks::smoke::save_initial_weights(&config, path) {
            Ok(()) => {
                println!("wrote the initial weights to {}", path.display());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("rampart-check train: {err}");
                ExitCode::from(2)
            }
        };
    }
    let mut out: Box<dyn Write> = match &args.metrics_out {
        Some(path) => match File::create(path) {
            Ok(file) => Box::new(BufWriter::new(file)),
            Err(err) => {
                eprintln!("rampart-check train: cannot create {}: {err}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let result = train(&config, |line| {
        writeln!(out, "{}", line.to_json_line())?;
        out.flush()
    });
    match result {
        Ok(summary) => {
            eprintln!(
                "rampart-check train: {} steps in {:.3}s ({:.1} steps/s), final loss {}",
                summary.steps, summary.seconds, summary.steps_per_second, summary.final_loss
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("rampart-check train: {err}");
            ExitCode::from(2)
        }
    }
}
