//! An analysis step: when a look is due, ask for the metrics, hand them to the statistics engine and act on its
//! verdict: Fail rolls back in this reconcile, Pass advances, an undecided final look follows `onInconclusive`,
//! anything else waits for the next look.

use std::time::Duration;

use jiff::Timestamp;
use rampart_analysis::{AnalysisConfig, AnalysisState, StepInput, Verdict};
use rampart_api::v1alpha1::{AnalysisStatus, AnalysisStep};

use super::endings::{self, RollbackCause, advance, record};
use super::{DecideError, Decision, Effect, Facts, Need, Note, Observation, Requeue, parse_duration, step_elapsed};
use crate::analysis::{analysis_config, metric_status, srm_status, status_verdict};
use crate::status::{parse_time, truncate};
use crate::trail::TrailRecord;

/// Shortest interval between looks, whatever the spec says.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// A step judged by looks: what it asks for, how the engine is set up, and what it is called.
pub(super) struct Plan {
    /// The engine's configuration.
    pub config: AnalysisConfig,
    /// Longest time the step may take.
    pub duration: Duration,
    /// Time between looks.
    pub interval: Duration,
    /// The canary's expected share of the requests for the split check, 0 to 1.
    pub expected_share: f64,
    /// The observation one look needs, counting from a time.
    pub need: fn(Timestamp) -> Need,
    /// The step's name in messages, e.g. `analysis`.
    pub words: &'static str,
    /// What it is doing, for messages between looks, e.g. `analysing`.
    pub ongoing: &'static str,
    /// The Event reason when it passes.
    pub passed_reason: &'static str,
    /// Effects carried out when it passes (before the next step).
    pub pass_effects: Vec<Effect>,
    /// The split check is the pairing check of a shadow step (candidate against baseline responses to the same
    /// mirrored requests), and a failure is described as such.
    pub pairing: bool,
    /// Counting starts here instead of when the step's weight settled (a bake counts from the first canary step).
    pub since: Option<Timestamp>,
    /// What the verdicts lead to: the next step, or the end of a bake.
    pub ending: Ending,
}

/// What an analysis verdict leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// A step: Fail rolls back, Pass advances, an undecided end follows `onInconclusive`.
    Step,
    /// The bake after promotion: Fail rolls back after promotion; anything else waits for the window to end and
    /// finishes the promotion.
    Bake,
}

/// The interval of a step (`interval` or the controller's default), never below [`MIN_INTERVAL`].
pub(super) fn interval(facts: &Facts<'_>, text: Option<&str>) -> Result<Duration, DecideError> {
    Ok(match text {
        Some(text) => parse_duration(text)?,
        None => facts.settings.default_analysis_interval,
    }
    .max(MIN_INTERVAL))
}

/// One analysis look, or the wait for it.
pub fn look(facts: &Facts<'_>, index: i32, step: &AnalysisStep) -> Result<Decision, DecideError> {
    let Some(spec_analysis) = &facts.spec.analysis else {
        return Err(DecideError::Spec("analysis step without spec.analysis".into()));
    };
    let mut config = analysis_config(spec_analysis).map_err(DecideError::Spec)?;
    if super::steps::active_cohort(facts.spec, index).is_some() {
        // The cohort's share of the requests is not known in advance, so the split has no expected value to check.
        config.srm.enabled = false;
    }
    let plan = Plan {
        config,
        duration: parse_duration(&step.duration)?,
        interval: interval(facts, step.interval.as_deref())?,
        expected_share: f64::from(facts.status.canary_weight.unwrap_or(0)) / 100.0,
        need: |since| Need::Look { since },
        words: "analysis",
        ongoing: "analysing",
        passed_reason: "AnalysisPassed",
        pass_effects: Vec::new(),
        pairing: false,
        since: None,
        ending: Ending::Step,
    };
    look_with(facts, index, plan)
}

/// One look of a step judged by `plan`, or the wait for it.
pub(super) fn look_with(facts: &Facts<'_>, index: i32, plan: Plan) -> Result<Decision, DecideError> {
    let Plan {
        config,
        duration,
        interval,
        expected_share,
        need,
        words,
        ongoing,
        passed_reason,
        pass_effects,
        pairing,
        since: counting_since,
        ending,
    } = plan;
    let status = facts.status;
    let elapsed = step_elapsed(status, facts.now);
    let final_look = elapsed >= duration;
    // A new analysis step starts from nothing: looks, running p-value minima and the latency threshold belong to the
    // step they were taken in.
    let previous = status.analysis.clone().filter(|a| a.step == Some(index)).unwrap_or_default();
    let looks_done = u32::try_from(previous.looks.unwrap_or(0).max(0)).unwrap_or(0);
    // Counting starts once the new weight has settled; looks are due on a fixed grid after that (slot k opens at
    // settle + k * interval, the last look is at the end of the step). A look whose status was not written (see
    // `Settings::analysis_status_interval`) therefore does not shift the next one.
    let settle = facts.settings.metrics_settle.min(duration / 2);
    let slot_of = |elapsed: Duration| -> u32 {
        if elapsed <= settle { 0 } else { ((elapsed - settle).as_secs_f64() / interval.as_secs_f64()).floor() as u32 }
    };
    let slot_now = slot_of(elapsed);
    let last_slot = match parse_time(previous.last_look_at.as_deref()) {
        Some(at) => slot_of(step_elapsed(status, at).min(elapsed)),
        None => looks_done,
    };
    if !final_look && (slot_now == 0 || (looks_done > 0 && last_slot >= slot_now)) {
        let next_slot = slot_now.max(last_slot) + 1;
        let due = (settle + interval * next_slot).min(duration);
        return Ok(endings::stay(facts, Requeue::After(due.saturating_sub(elapsed).max(Duration::from_millis(50)))));
    }
    let step_started = parse_time(status.step_started_at.as_deref()).unwrap_or(facts.now);
    let since = counting_since.unwrap_or_else(|| step_started.checked_add(settle).unwrap_or(step_started));
    let Observation::Look(counts) = &facts.observed else { return Ok(Decision::Observe(need(since))) };

    let mut status = status.clone();
    let mut analysis = AnalysisStatus {
        step: Some(index),
        looks: Some(i32::try_from(looks_done + 1).unwrap_or(i32::MAX)),
        last_look_at: Some(facts.now.to_string()),
        ..previous.clone()
    };
    let counts = match counts {
        Ok(counts) => counts,
        Err(err) => {
            let errors = analysis.provider_errors.unwrap_or(0) + 1;
            analysis.provider_errors = Some(errors);
            analysis.last_error = Some(truncate(err, 512));
            analysis.verdict = Some(rampart_api::v1alpha1::Verdict::Continue);
            status.analysis = Some(analysis);
            if final_look && ending == Ending::Bake {
                let message = format!(
                    "bake ended without a failing look: the metrics could not be read at the end ({errors} looks in a \
                     row): {err}"
                );
                return Ok(super::bake::finish(facts, status, message));
            }
            if final_look {
                let reason = format!(
                    "step {index}: {words} ended without a verdict: the metrics could not be read ({errors} looks in \
                     a row): {err}"
                );
                return Ok(endings::inconclusive(facts, status, index, reason));
            }
            let note = (errors == 1).then(|| Note {
                warning: true,
                reason: "MetricsUnavailable",
                message: format!("step {index}: {err}; never promoting while the metrics are unreadable"),
            });
            return Ok(endings::update(facts, status, note, Requeue::After(interval)));
        }
    };
    let pairing_counts = if pairing { counts.requests } else { None };
    // Only the metrics the engine was set up for (a bake judges the ratio metrics alone).
    let metrics: Vec<_> =
        counts.metrics.iter().filter(|m| config.metrics.iter().any(|c| c.name == m.name)).cloned().collect();
    let input = StepInput { configured_canary_weight: expected_share, requests: counts.requests, metrics, final_look };
    let previous_state: Option<AnalysisState> =
        analysis.engine_state.as_deref().and_then(|text| serde_json::from_str(text).ok());
    // The state is sealed per rollout and step: one written by anyone else, or copied from another rollout or step,
    // is discarded rather than trusted.
    let outcome = match &facts.settings.state_key {
        Some(key) => {
            let seal = key.seal_for(format!("{}/step {index}", facts.uid));
            rampart_analysis::evaluate_step_sealed(&config, &input, previous_state.as_ref(), &seal)?
        }
        None => rampart_analysis::evaluate_step(&config, &input, previous_state.as_ref())?,
    };
    let verdict = outcome.verdict;
    analysis.provider_errors = None;
    analysis.last_error = None;
    analysis.verdict = Some(status_verdict(verdict.verdict));
    analysis.metrics = Some(verdict.metrics.iter().map(metric_status).collect());
    analysis.srm = verdict.srm.as_ref().map(srm_status);
    analysis.engine_state = serde_json::to_string(&outcome.state).ok();
    let statistics = serde_json::json!({"metrics": analysis.metrics, "srm": analysis.srm});
    status.analysis = Some(analysis);
    if ending == Ending::Bake {
        // The registry keeps no verdicts after a promotion; a failing bake's rollback record carries the numbers.
        return Ok(super::bake::after_look(facts, status, &verdict, final_look, interval, duration));
    }
    record(
        facts,
        &mut status,
        TrailRecord::Verdict {
            uid: facts.uid.into(),
            verdict: rampart_registry::VerdictRecord {
                step_index: u32::try_from(index).unwrap_or(0),
                evaluation: looks_done,
                verdict: verdict.verdict.as_str().to_lowercase(),
                statistics,
            },
        },
    );

    Ok(match verdict.verdict {
        Verdict::Fail => {
            let reason = format!(
                "step {index}: {words} failed: {}",
                describe_failure(&verdict, pairing_counts, config.srm.alpha)
            );
            endings::roll_back(facts, status, RollbackCause::AnalysisFailed(reason))
        }
        Verdict::Pass => {
            let message = format!("step {index}: {words} passed: {}", verdict.reason);
            let description = format!("{words} passed after {} looks", verdict.look);
            advance(facts, status, index, pass_effects, description, message, passed_reason)
        }
        Verdict::Inconclusive if final_look => {
            let reason = format!("step {index}: {words} ended without a verdict: {}", verdict.reason);
            endings::inconclusive(facts, status, index, reason)
        }
        Verdict::Continue | Verdict::Inconclusive => {
            status.message = Some(format!("step {index}: {ongoing}: {}", verdict.reason));
            let quiet = facts.settings.analysis_status_interval;
            let last_written = parse_time(previous.last_look_at.as_deref());
            let recently_written = last_written.is_some_and(|at| {
                let since = facts.now.duration_since(at);
                since.is_positive() && since.unsigned_abs() < quiet
            });
            let same_verdict = previous.verdict == status.analysis.as_ref().and_then(|a| a.verdict);
            if recently_written && same_verdict {
                // Nothing a person acts on changed since the last written look: keep the written status (the
                // engine's state from that look stays valid; this look's counts are included in the next one).
                return Ok(endings::stay(facts, Requeue::After(interval)));
            }
            endings::update(facts, status, None, Requeue::After(interval))
        }
    })
}

/// The rollback reason: the metrics that failed with their numbers, or the traffic-split mismatch.
/// With `pairing` (a shadow step's responses per side), a split failure is told as the pairing failure it is.
pub(super) fn describe_failure(
    verdict: &rampart_analysis::StepVerdict,
    pairing: Option<rampart_analysis::ArmPair<f64>>,
    alpha: f64,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(srm) = &verdict.srm
        && srm.verdict == Verdict::Fail
    {
        match pairing {
            Some(responses) => parts.push(format!(
                "pairing check failed: the candidate answered {} mirrored requests while the baseline answered {} \
                 (always-valid p {:.2e} < {alpha}); requests without both answers are unpaired and never count as \
                 agreement: check that the candidate answers and logs every mirrored request",
                responses.canary, responses.baseline, srm.always_valid_p
            )),
            None => parts.push(srm.reason.clone()),
        }
    }
    for metric in verdict.metrics.iter().filter(|m| m.verdict == Verdict::Fail) {
        parts.push(format!("{}: {}", metric.name, metric.reason));
    }
    if parts.is_empty() { verdict.reason.clone() } else { parts.join("; ") }
}
