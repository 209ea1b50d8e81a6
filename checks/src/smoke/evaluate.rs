//! Judging a smoke-training run from its metric lines: finite values, falling loss, bounded gradients,
//! step time and memory within budget.

use serde::{Deserialize, Serialize};

use super::protocol::ParsedMetrics;
use super::termination::TerminationMessage;

/// Bounds a smoke-training run must stay within. `None` turns a check off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmokeThresholds {
    /// `k`: how many steps at the start and at the end are averaged for the loss trend (default 10;
    /// shorter runs use half their steps).
    pub window: usize,
    /// Mean of the last `k` losses must be at most this times the mean of the first `k` (default 0.9).
    pub max_loss_ratio: Option<f64>,
    /// Largest gradient norm allowed at any step (default 100).
    pub max_grad_norm: Option<f64>,
    /// The median gradient norm over the last `k` steps must be at least this (vanishing gradients; off by default).
    pub min_grad_norm: Option<f64>,
    /// Median step time bound in seconds (off by default).
    pub max_median_step_time_s: Option<f64>,
    /// Peak GPU memory budget in bytes (off by default).
    pub max_gpu_mem_bytes: Option<u64>,
    /// Fewest metric lines a run must report (default 2).
    pub min_steps: usize,
}

impl Default for SmokeThresholds {
    fn default() -> Self {
        SmokeThresholds {
            window: 10,
            max_loss_ratio: Some(0.9),
            max_grad_norm: Some(100.0),
            min_grad_norm: None,
            max_median_step_time_s: None,
            max_gpu_mem_bytes: None,
            min_steps: 2,
        }
    }
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// Check name, e.g. `loss_trend`.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was measured, in plain words.
    pub detail: String,
}

/// Numbers behind the verdict (`None` where nothing was reported).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SmokeStats {
    /// Metric lines read.
    pub steps: usize,
    /// Window actually used for the loss trend.
    pub window: usize,
    /// Mean loss over the first `window` steps.
    pub first_loss_mean: Option<f64>,
    /// Mean loss over the last `window` steps.
    pub last_loss_mean: Option<f64>,
    /// Largest gradient norm (NaN if one was NaN).
    pub max_grad_norm: Option<f64>,
    /// Median step time in seconds.
    pub median_step_time_s: Option<f64>,
    /// Peak GPU memory in bytes.
    pub peak_gpu_mem_bytes: Option<u64>,
}

/// Pass or fail, with the reasons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmokeVerdict {
    /// True when every check passed.
    pub passed: bool,
    /// Why the run failed, one sentence per failed check (empty when it passed).
    pub reasons: Vec<String>,
    /// Every check that ran, passed or not.
    pub checks: Vec<CheckOutcome>,
    /// The measured numbers.
    pub stats: SmokeStats,
}

impl SmokeVerdict {
    /// The short form for a Pod's termination message.
    pub fn termination_message(&self) -> TerminationMessage {
        let passed = self.checks.iter().filter(|c| c.passed).count();
        TerminationMessage {
            curve: Vec::new(),
            files: Vec::new(),
            check: "smoke-eval".to_string(),
            passed: self.passed,
            summary: format!(
                "{}: {passed} of {} checks passed over {} steps",
                if self.passed { "pass" } else { "fail" },
                self.checks.len(),
                self.stats.steps
            ),
            reasons: self.reasons.clone(),
        }
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Median of the finite values (NaN-safe; `None` when there are none).
fn median(values: &[f64]) -> Option<f64> {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    finite.sort_by(f64::total_cmp);
    let mid = finite.len() / 2;
    Some(if finite.len().is_multiple_of(2) { (finite[mid - 1] + finite[mid]) / 2.0 } else { finite[mid] })
}

fn describe(value: f64) -> String {
    if value.is_nan() { "NaN".to_string() } else { format!("{value:.6}") }
}

/// Evaluates a run against the thresholds.
pub fn evaluate(metrics: &ParsedMetrics, thresholds: &SmokeThresholds) -> SmokeVerdict {
    let mut checks = Vec::new();
    let mut check = |name: &str, passed: bool, detail: String| {
        checks.push(CheckOutcome { name: name.to_string(), passed, detail });
    };
    let lines = &metrics.lines;
    let steps = lines.len();
    let mut stats = SmokeStats { steps, ..SmokeStats::default() };

    if let Some(first) = metrics.malformed.first() {
        check(
            "readable",
            false,
            format!(
                "{} metric line(s) could not be read; first at line {}: {}",
                metrics.malformed.len(),
                first.line,
                first.error
            ),
        );
    }
    check(
        "steps",
        steps >= thresholds.min_steps.max(1),
        format!("{steps} metric line(s) reported, at least {} required", thresholds.min_steps.max(1)),
    );

    // Every loss and gradient norm finite.
    let non_finite: Vec<(u64, &str, f64)> = lines
        .iter()
        .flat_map(|l| {
            let loss = (!l.loss.is_finite()).then_some((l.step, "loss", l.loss));
            let grad = l.grad_norm.filter(|g| !g.is_finite()).map(|g| (l.step, "grad norm", g));
            loss.into_iter().chain(grad)
        })
        .collect();
    match non_finite.first() {
        Some((step, what, value)) => check(
            "finite",
            false,
            format!("{what} is {} at step {step} ({} non-finite value(s) in all)", describe(*value), non_finite.len()),
        ),
        None => check("finite", true, "every loss and gradient norm is finite".to_string()),
    }

    // Loss trend over the first and last k steps.
    let window = thresholds.window.max(1).min(steps / 2);
    stats.window = window;
    if let Some(ratio) = thresholds.max_loss_ratio {
        if window == 0 {
            check("loss_trend", false, format!("need at least 2 steps to compare losses, got {steps}"));
        } else {
            let losses: Vec<f64> = lines.iter().map(|l| l.loss).collect();
            let first = mean(&losses[..window]);
            let last = mean(&losses[steps - window..]);
            stats.first_loss_mean = Some(first);
            stats.last_loss_mean = Some(last);
            let limit = ratio * first;
            let passed = last <= limit;
            let detail = if passed {
                format!(
                    "mean loss of the last {window} steps {} <= {ratio} x first {window} {} = {}",
                    describe(last),
                    describe(first),
                    describe(limit)
                )
            } else if !(last.is_finite() && first.is_finite()) {
                format!(
                    "mean loss is not finite (first {window} steps {}, last {window} {})",
                    describe(first),
                    describe(last)
                )
            } else {
                format!(
                    "loss did not fall enough: mean of the last {window} steps {} > {ratio} x mean of the first {window} {} = {}",
                    describe(last),
                    describe(first),
                    describe(limit)
                )
            };
            check("loss_trend", passed, detail);
        }
    }

    // Gradient norms.
    let grads: Vec<f64> = lines.iter().filter_map(|l| l.grad_norm).collect();
    if !grads.is_empty() {
        let max = grads
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, |acc, g| if g.is_nan() || acc.is_nan() { f64::NAN } else { acc.max(g) });
        stats.max_grad_norm = Some(max);
    }
    if let Some(bound) = thresholds.max_grad_norm {
        match lines.iter().find(|l| l.grad_norm.is_some_and(|g| g.is_nan() || g > bound)) {
            _ if grads.is_empty() => {
                check("max_grad_norm", false, format!("no gradient norms reported, but a bound of {bound} is set"))
            }
            Some(line) => check(
                "max_grad_norm",
                false,
                format!(
                    "gradient norm blew up: {} at step {} exceeds the bound {bound} (largest {})",
                    describe(line.grad_norm.unwrap_or(f64::NAN)),
                    line.step,
                    describe(stats.max_grad_norm.unwrap_or(f64::NAN))
                ),
            ),
            None => check(
                "max_grad_norm",
                true,
                format!("largest gradient norm {} <= {bound}", describe(stats.max_grad_norm.unwrap_or(f64::NAN))),
            ),
        }
    }
    if let Some(bound) = thresholds.min_grad_norm {
        let tail: Vec<f64> = lines[steps.saturating_sub(window.max(1))..].iter().filter_map(|l| l.grad_norm).collect();
        match median(&tail) {
            None => {
                check("min_grad_norm", false, "no finite gradient norms reported at the end of the run".to_string())
            }
            Some(median) => check(
                "min_grad_norm",
                median >= bound,
                if median >= bound {
                    format!("median gradient norm of the last steps {} >= {bound}", describe(median))
                } else {
                    format!("gradients vanished: median gradient norm of the last steps {} < {bound}", describe(median))
                },
            ),
        }
    }

    // Step time.
    let times: Vec<f64> = lines.iter().filter_map(|l| l.step_time_s).collect();
    stats.median_step_time_s = median(&times);
    if let Some(bound) = thresholds.max_median_step_time_s {
        match stats.median_step_time_s {
            None => check("median_step_time", false, format!("no step times reported, but a bound of {bound}s is set")),
            Some(median) => check(
                "median_step_time",
                median <= bound,
                format!(
                    "median step time {median:.6}s {} the bound {bound}s",
                    if median <= bound { "is within" } else { "exceeds" }
                ),
            ),
        }
    }

    // Peak memory.
    stats.peak_gpu_mem_bytes = lines.iter().filter_map(|l| l.gpu_mem_bytes).max();
    if let Some(budget) = thresholds.max_gpu_mem_bytes {
        match stats.peak_gpu_mem_bytes {
            None => check(
                "peak_gpu_memory",
                false,
                format!("no GPU memory reported, but a budget of {budget} bytes is set"),
            ),
            Some(peak) => check(
                "peak_gpu_memory",
                peak <= budget,
                format!(
                    "peak GPU memory {peak} bytes {} the budget {budget}",
                    if peak <= budget { "is within" } else { "exceeds" }
                ),
            ),
        }
    }

    let reasons: Vec<String> = checks.iter().filter(|c| !c.passed).map(|c| c.detail.clone()).collect();
    SmokeVerdict { passed: reasons.is_empty(), reasons, checks, stats }
}
