//! `rampart-check smoke-eval`: judge a smoke-training run from its JSON-lines metrics.
//! Prints the verdict JSON; exit 0 pass, 1 fail, 2 the metrics could not be read.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use rampart_checks::smoke::termination::{
    MAX_CURVE_POINTS, TERMINATION_LOG_ENV, sample_curve, write_termination_message,
};
use rampart_checks::smoke::{SmokeThresholds, evaluate, parse_metrics};

/// Arguments of `rampart-check smoke-eval`.
#[derive(clap::Args)]
pub struct Args {
    /// The training run's output (JSON lines; other lines are skipped). `-` reads standard input.
    #[arg(long)]
    metrics: PathBuf,
    /// k: steps averaged at the start and at the end for the loss trend.
    #[arg(long, default_value_t = 10)]
    window: usize,
    /// Mean of the last k losses must be at most this times the mean of the first k.
    #[arg(long, default_value_t = 0.9)]
    max_loss_ratio: f64,
    /// Largest gradient norm allowed at any step.
    #[arg(long, default_value_t = 100.0)]
    max_grad_norm: f64,
    /// Median gradient norm of the last k steps must be at least this (catches vanishing gradients).
    #[arg(long)]
    min_grad_norm: Option<f64>,
    /// Median step time bound in seconds.
    #[arg(long)]
    max_step_time: Option<f64>,
    /// Peak GPU memory budget: bytes, or with a suffix K, M, G, Ki, Mi, Gi (e.g. 16Gi).
    #[arg(long, value_parser = parse_bytes)]
    max_gpu_mem: Option<u64>,
    /// Fewest metric lines the run must report.
    #[arg(long, default_value_t = 2)]
    min_steps: usize,
    /// Also write the verdict JSON here (default: /dev/termination-log when it exists, as in a Pod).
    #[arg(long, env = TERMINATION_LOG_ENV)]
    termination_log: Option<PathBuf>,
}

/// Parses `16Gi`, `512M`, `1000` into bytes.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("\"{text}\" is not a byte count"))?;
    let unit: u64 = match suffix {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        other => return Err(format!("unknown unit \"{other}\" (use K, M, G, Ki, Mi, Gi or Ti)")),
    };
    number.checked_mul(unit).ok_or_else(|| format!("\"{text}\" is too large"))
}

/// Evaluates the metrics and prints the verdict.
pub fn run(args: Args) -> ExitCode {
    let mut bytes = Vec::new();
    let read = if args.metrics.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(&args.metrics).and_then(|mut file| file.read_to_end(&mut bytes)).map(|_| ())
    };
    if let Err(err) = read {
        eprintln!("rampart-check smoke-eval: cannot read metrics {}: {err}", args.metrics.display());
        return ExitCode::from(2);
    }
    let bounds_ok = [args.max_loss_ratio, args.max_grad_norm]
        .iter()
        .chain(args.min_grad_norm.iter())
        .chain(args.max_step_time.iter())
        .all(|v| v.is_finite() && *v >= 0.0);
    if !bounds_ok {
        eprintln!("rampart-check smoke-eval: thresholds must be finite and not negative");
        return ExitCode::from(2);
    }
    let thresholds = SmokeThresholds {
        window: args.window,
        max_loss_ratio: Some(args.max_loss_ratio),
        max_grad_norm: Some(args.max_grad_norm),
        min_grad_norm: args.min_grad_norm,
        max_median_step_time_s: args.max_step_time,
        max_gpu_mem_bytes: args.max_gpu_mem,
        min_steps: args.min_steps,
    };
    let metrics = parse_metrics(&String::from_utf8_lossy(&bytes));
    let verdict = evaluate(&metrics, &thresholds);
    match serde_json::to_string_pretty(&verdict) {
        Ok(json) => println!("{json}"),
        Err(err) => {
            eprintln!("rampart-check smoke-eval: cannot write the verdict as JSON: {err}");
            return ExitCode::from(2);
        }
    }
    let mut message = verdict.termination_message();
    let points: Vec<(u64, f64)> = metrics.lines.iter().map(|line| (line.step, line.loss)).collect();
    message.curve = sample_curve(&points, MAX_CURVE_POINTS);
    if let Err(err) = write_termination_message(args.termination_log.as_deref(), &message) {
        eprintln!("rampart-check smoke-eval: cannot write the termination message: {err}");
    }
    if verdict.passed { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
