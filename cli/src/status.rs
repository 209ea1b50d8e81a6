//! `rampart status NAME [--watch]`: a rollout's phase, step, canary weight and per-metric verdicts, read from the
//! ModelRollout's status. `--watch` redraws until the rollout ends (in place on a terminal, appended otherwise).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use kube::ResourceExt;
use rampart_api::v1alpha1::{HeaderMatchType, MetricStatus, Step};
use rampart_api::{ModelRollout, Phase};

use crate::args::{GlobalArgs, StatusArgs, TextOrJson};
use crate::cluster::Cluster;
use crate::error::CliError;
use crate::render::{table, weight_bar};

pub async fn run(args: &StatusArgs, global: &GlobalArgs) -> Result<ExitCode, CliError> {
    if !(args.interval.is_finite() && args.interval >= 0.1) {
        return Err(CliError::input(
            format!("--interval must be at least 0.1 seconds, got {}", args.interval),
            Some("for example --interval 2".into()),
        ));
    }
    let cluster = Cluster::connect(global).await?;
    let terminal = std::io::stdout().is_terminal();
    if !args.watch {
        let rollout = cluster.get_rollout(&args.name).await?;
        print!("{}", render_any(&rollout, args.format, terminal)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut last_drawn = String::new();
    loop {
        let rollout = cluster.get_rollout(&args.name).await?;
        let text = render_any(&rollout, args.format, terminal)?;
        if text != last_drawn {
            let mut stdout = std::io::stdout().lock();
            let drawn = if terminal && args.format == TextOrJson::Text {
                // Clear the screen and draw from the top left.
                write!(stdout, "\x1b[2J\x1b[H{text}")
            } else if args.format == TextOrJson::Text && !last_drawn.is_empty() {
                write!(stdout, "---\n{text}")
            } else {
                write!(stdout, "{text}")
            };
            drawn
                .and_then(|()| stdout.flush())
                .map_err(|err| CliError::input(format!("cannot write to stdout: {err}"), None))?;
            last_drawn = text;
        }
        if let Some(phase) = rollout.status.as_ref().and_then(|status| status.phase)
            && phase.is_terminal()
        {
            return Ok(if phase == Phase::Succeeded { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        tokio::time::sleep(Duration::from_secs_f64(args.interval)).await;
    }
}

fn render_any(rollout: &ModelRollout, format: TextOrJson, terminal: bool) -> Result<String, CliError> {
    match format {
        TextOrJson::Text => Ok(render(rollout, terminal)),
        TextOrJson::Json => {
            let value = serde_json::json!({
                "namespace": rollout.namespace(),
                "name": rollout.name_any(),
                "model": rollout.spec.model,
                "candidate": rollout.spec.candidate.version,
                "status": rollout.status,
            });
            serde_json::to_string(&value)
                .map(|text| format!("{text}\n"))
                .map_err(|err| CliError::input(format!("cannot write the status as JSON: {err}"), None))
        }
    }
}

/// The status for people.
pub fn render(rollout: &ModelRollout, fancy: bool) -> String {
    let status = rollout.status.clone().unwrap_or_default();
    let spec = &rollout.spec;
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let baseline = status.baseline_version.as_deref().unwrap_or("production");
    line(format!(
        "Rollout:  {}/{}   model {}: {baseline} -> {}",
        rollout.namespace().unwrap_or_default(),
        rollout.name_any(),
        spec.model,
        spec.candidate.version
    ));
    let phase = status.phase.map(|phase| format!("{phase:?}")).unwrap_or_else(|| "Pending (not picked up yet)".into());
    line(format!("Phase:    {phase}"));
    let total = spec.steps.len();
    let step_text = match status.current_step {
        Some(index) => {
            let described = usize::try_from(index)
                .ok()
                .and_then(|i| spec.steps.get(i))
                .map(describe_step)
                .unwrap_or_else(|| "all steps done".into());
            format!("{} of {total}: {described}", index.saturating_add(1).min(i32::try_from(total).unwrap_or(i32::MAX)))
        }
        None => format!("not started ({total} step(s) planned)"),
    };
    line(format!("Step:     {step_text}"));
    line(format!("Weight:   {} to the canary", weight_bar(status.canary_weight.unwrap_or(0), 20, fancy)));
    if let Some(message) = &status.message {
        line(format!("Message:  {message}"));
    }
    if let Some(checks) = &status.checks {
        let mut parts = Vec::new();
        for (name, result) in [
            ("signature", &checks.signature),
            ("contract", &checks.contract),
            ("smoke training", &checks.smoke_training),
        ] {
            if let Some(result) = result {
                let mut part = format!("{name} {}", result.result);
                if let Some(signer) = &result.signer {
                    part.push_str(&format!(" (signer {signer})"));
                }
                parts.push(part);
            }
        }
        if !parts.is_empty() {
            line(format!("Checks:   {}", parts.join(", ")));
        }
    }
    if let Some(analysis) = &status.analysis {
        line(format!(
            "Analysis: {} after {} look(s)",
            analysis.verdict.map_or("no verdict yet", |v| v.as_str()),
            analysis.looks.unwrap_or(0)
        ));
        let mut rows: Vec<Vec<String>> = analysis.metrics.iter().flatten().map(metric_row).collect();
        if let Some(srm) = &analysis.srm {
            rows.push(metric_row(srm));
        }
        if !rows.is_empty() {
            let header = ["METRIC", "VERDICT", "CANARY", "BASELINE", "EFFECT", "INTERVAL", "P", "SAMPLES", "REASON"];
            for text in table(&header, &rows).lines() {
                line(format!("  {text}"));
            }
        }
        if let Some(error) = &analysis.last_error {
            line(format!("  last metrics error: {error}"));
        }
    }
    if let Some(history) = status.history.as_ref().filter(|history| !history.is_empty()) {
        line("Recent:".into());
        let skip = history.len().saturating_sub(5);
        for entry in history.iter().skip(skip) {
            let step = entry.step.map(|step| format!(" step {step}")).unwrap_or_default();
            line(format!("  {} {:?}{step} {}", entry.time, entry.phase, entry.message.as_deref().unwrap_or("")));
        }
    }
    out
}

fn metric_row(metric: &MetricStatus) -> Vec<String> {
    let cell = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    vec![
        metric.name.clone(),
        metric.verdict.to_string(),
        cell(&metric.canary),
        cell(&metric.baseline),
        cell(&metric.effect),
        cell(&metric.interval),
        cell(&metric.p_value),
        cell(&metric.samples),
        cell(&metric.reason),
    ]
}

/// One step in words, e.g. `analysis for 10m every 30s`.
pub fn describe_step(step: &Step) -> String {
    if let Some(weight) = step.set_weight {
        return format!("set the canary weight to {weight}%");
    }
    if let Some(pause) = &step.pause {
        return match &pause.duration {
            Some(duration) => format!("pause for {duration}"),
            None => "pause until `rampart promote`".into(),
        };
    }
    if let Some(analysis) = &step.analysis {
        return match &analysis.interval {
            Some(interval) => format!("analysis for {} every {interval}", analysis.duration),
            None => format!("analysis for {}", analysis.duration),
        };
    }
    if let Some(cohort) = &step.cohort {
        let rules: Vec<String> = cohort
            .headers
            .iter()
            .map(|h| match h.match_type.unwrap_or_default() {
                HeaderMatchType::Exact => format!("{}: {}", h.name, h.value),
                HeaderMatchType::RegularExpression => format!("{} matching /{}/", h.name, h.value),
            })
            .collect();
        return format!("send requests with {} to the canary", rules.join(" and "));
    }
    if let Some(shadow) = &step.shadow {
        let tolerance = shadow.tolerance.unwrap_or(0.01);
        return format!(
            "shadow for {}: mirror requests to the canary, agreement within {}%",
            shadow.duration,
            tolerance * 100.0
        );
    }
    "empty step".into()
}
