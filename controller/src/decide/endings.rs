//! Each kind of ending, written once: stay, advance to the next step, fail before traffic, roll back with a typed
//! cause, finish a rollback, enter promotion, promoted, pause, retry. Every decision that changes the phase goes
//! through one of these, so the record, the history entry, the conditions and the Event always travel together.

use std::time::Duration;

use rampart_api::v1alpha1::OnInconclusive;
use rampart_api::{ModelRolloutStatus, Phase};

use super::{Act, Decision, Effect, Facts, Note, Requeue, parse_duration, step_elapsed};
use crate::status::{self, format_duration, truncate};
use crate::trail::{self, TrailRecord};

/// Come back at once: the next stage can start now.
pub const NEXT: Requeue = Requeue::After(Duration::from_millis(50));

/// Why traffic goes back to the baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackCause {
    /// `rampart abort`.
    Aborted,
    /// An analysis verdict failed; the reason names the metrics and numbers.
    AnalysisFailed(String),
    /// The analysis ended undecided and the policy is `onInconclusive: rollback`.
    Inconclusive(String),
    /// A canary pod's verifying init container refused the artifact (the object changed after verification); the
    /// reason names the file and both digests.
    ArtifactRefused(String),
    /// The registry refused to record the rollout (the model belongs to another namespace, a version's digest
    /// conflicts): it could never be promoted.
    RegistryRefused(String),
    /// The status that says where traffic is was written by someone other than Rampart: nothing it says can be
    /// trusted, so traffic goes back whatever `rollback.onFailure` says.
    StatusForged(String),
}

impl RollbackCause {
    fn reason(&self) -> String {
        match self {
            RollbackCause::Aborted => "aborted by the rampart.dev/abort annotation (rampart abort)".into(),
            RollbackCause::AnalysisFailed(reason) => reason.clone(),
            RollbackCause::Inconclusive(reason) => format!("{reason}; onInconclusive: rollback"),
            RollbackCause::ArtifactRefused(reason) => reason.clone(),
            RollbackCause::RegistryRefused(reason) => reason.clone(),
            RollbackCause::StatusForged(reason) => reason.clone(),
        }
    }
}

/// Finishes a decision: conditions and `observedGeneration` follow the status built in memory.
pub fn act(
    facts: &Facts<'_>,
    mut status: ModelRolloutStatus,
    effects: Vec<Effect>,
    event: Option<Note>,
    requeue: Requeue,
) -> Decision {
    status::set_conditions(&mut status, facts.now, facts.generation);
    status.observed_generation = facts.generation;
    Decision::Act(Box::new(Act { effects, status, event, requeue }))
}

/// Nothing changes (conditions are still brought up to date).
pub fn stay(facts: &Facts<'_>, requeue: Requeue) -> Decision {
    act(facts, facts.status.clone(), vec![], None, requeue)
}

/// A status change without a transition (a message, a check result), with an optional Event.
pub fn update(facts: &Facts<'_>, status: ModelRolloutStatus, event: Option<Note>, requeue: Requeue) -> Decision {
    act(facts, status, vec![], event, requeue)
}

/// Queues a registry record in the status outbox (applied to Postgres later, in order).
pub fn record(facts: &Facts<'_>, status: &mut ModelRolloutStatus, record: TrailRecord) {
    if facts.settings.registry {
        // Stamped with the attempt (the retry request being handled), so a retry's start is a new registry attempt.
        let retry = status.handled_retry.clone();
        trail::push_for_attempt(status.outbox.get_or_insert_with(Vec::new), &record, retry.as_deref());
    }
}

/// Starts step `index` now.
pub fn begin_step(facts: &Facts<'_>, status: &mut ModelRolloutStatus, index: i32) {
    status.current_step = Some(index);
    status.step_started_at = Some(facts.now.to_string());
}

/// Step `index` is done: record it and start the next one.
pub fn advance(
    facts: &Facts<'_>,
    mut status: ModelRolloutStatus,
    index: i32,
    effects: Vec<Effect>,
    description: String,
    message: String,
    reason: &'static str,
) -> Decision {
    let step = rampart_registry::StepRecord {
        index: u32::try_from(index).unwrap_or(0),
        canary_weight: u32::try_from(status.canary_weight.unwrap_or(0)).unwrap_or(0),
        description,
    };
    record(facts, &mut status, TrailRecord::Step { uid: facts.uid.into(), step });
    begin_step(facts, &mut status, index + 1);
    status::transition(&mut status, Phase::Progressing, message.clone(), facts.now);
    act(facts, status, effects, Some(Note { warning: false, reason, message }), NEXT)
}

/// A gate before traffic failed: the rollout ends as Failed and nothing moved.
pub fn fail_before_traffic(
    facts: &Facts<'_>,
    mut status: ModelRolloutStatus,
    reason: &'static str,
    message: String,
) -> Decision {
    record(
        facts,
        &mut status,
        TrailRecord::Finish { uid: facts.uid.into(), aborted: false, reason: truncate(&message, 2048) },
    );
    status::transition(&mut status, Phase::Failed, message.clone(), facts.now);
    act(facts, status, vec![], Some(Note { warning: true, reason, message }), Requeue::OnChange)
}

/// Sends all traffic back to the baseline in this reconcile, then records why. Waits for nothing that can be down.
/// With `rollback.onFailure: false`, a failure (not an abort) halts at weight 0 instead, for a person to decide.
pub fn roll_back(facts: &Facts<'_>, mut status: ModelRolloutStatus, cause: RollbackCause) -> Decision {
    let reason = cause.reason();
    let effects =
        vec![Effect::RouteAllToBaseline { after_failing_verdict: matches!(cause, RollbackCause::AnalysisFailed(_)) }];
    status.canary_weight = Some(0);
    status.step_started_at = Some(facts.now.to_string());
    // A forged status ends like an abort: no halting at weight 0 on the word of a status someone else wrote.
    let aborted = matches!(cause, RollbackCause::Aborted | RollbackCause::StatusForged(_));
    if aborted {
        record(
            facts,
            &mut status,
            TrailRecord::Finish { uid: facts.uid.into(), aborted: true, reason: reason.clone() },
        );
    } else {
        let statistics = serde_json::to_value(&status.analysis).unwrap_or_default();
        let statistics = serde_json::json!({
            "metrics": statistics.get("metrics"),
            "srm": statistics.get("srm"),
            "lastError": statistics.get("lastError"),
        });
        record(facts, &mut status, TrailRecord::Rollback { uid: facts.uid.into(), reason: reason.clone(), statistics });
    }
    let automatic = facts.spec.rollback.as_ref().and_then(|r| r.on_failure).unwrap_or(true);
    if !aborted && !automatic {
        let message =
            format!("{reason}; canary at weight 0, rollback.onFailure is false: rampart abort or rampart promote");
        status::transition(&mut status, Phase::Paused, message.clone(), facts.now);
        let note = Note { warning: true, reason: "Halted", message };
        return act(facts, status, effects, Some(note), Requeue::OnChange);
    }
    // Capacity-aware steps: with traffic off the canary, its pods go and the baseline gets its own back.
    let mut effects = effects;
    effects.extend(super::capacity::return_pods(facts.spec, &status));
    status::transition(&mut status, Phase::RollingBack, reason.clone(), facts.now);
    let requeue = Requeue::After(scale_down_delay(facts).max(Duration::from_millis(50)));
    act(facts, status, effects, Some(Note { warning: true, reason: "RollingBack", message: reason }), requeue)
}

/// The status was written by someone other than Rampart (its seal does not match): none of it is trusted. Only what
/// informs is kept (conditions, history, the outbox, whose records are checked on their own). Before traffic the gates
/// run again from the start; with traffic possibly on the canary, all of it goes back and the rollout ends rolled back
/// (`rampart retry` starts it again); a finished rollout keeps its phase, and a Deployment canary's traffic goes back
/// to the baseline (harmless after a real promotion: the baseline serves the candidate then).
pub fn status_forged(facts: &Facts<'_>) -> Decision {
    let read = facts.status;
    let phase = read.phase.unwrap_or(Phase::Pending);
    let mut status = ModelRolloutStatus {
        conditions: read.conditions.clone(),
        history: read.history.clone(),
        outbox: read.outbox.clone(),
        observed_generation: read.observed_generation,
        // Claimed again from the spec by this reconcile (a forged status's own targets are dropped before deciding).
        targets: read.targets.clone(),
        ..Default::default()
    };
    let why = "the status was changed by someone other than Rampart (its seal does not match), so none of it is \
               trusted";
    match phase {
        Phase::Pending | Phase::Verifying | Phase::Checking => {
            let message = format!("{why}: no traffic had moved; the gates run again from the start");
            status.current_step = Some(0);
            status.canary_weight = Some(0);
            status::transition(&mut status, Phase::Pending, message.clone(), facts.now);
            act(facts, status, vec![], Some(Note { warning: true, reason: "StatusForged", message }), NEXT)
        }
        // A forged `Baking` claims a promotion with the previous version standing by: traffic goes back to it.
        Phase::Progressing | Phase::Paused | Phase::Promoting | Phase::Baking | Phase::RollingBack => {
            let message =
                format!("{why}: all traffic returned to the baseline; rampart retry starts the rollout again");
            let mut decision = roll_back(facts, status, RollbackCause::StatusForged(message));
            if let Decision::Act(act) = &mut decision
                && let Some(note) = act.event.as_mut()
            {
                note.reason = "StatusForged";
            }
            decision
        }
        Phase::Succeeded | Phase::RolledBack | Phase::Failed => {
            let mut effects = Vec::new();
            if facts.spec.serving.deployment.is_some() {
                effects.push(Effect::RouteAllToBaseline { after_failing_verdict: false });
                effects.push(Effect::DeleteCanary);
            }
            let message = format!("{why}: the rollout had ended; traffic is on the baseline");
            status.phase = Some(phase);
            status.canary_weight = Some(0);
            status.message = Some(message.clone());
            act(
                facts,
                status,
                effects,
                Some(Note { warning: true, reason: "StatusForged", message }),
                Requeue::OnChange,
            )
        }
    }
}

/// After the scale-down delay, the canary goes and the rollout is RolledBack. Traffic is already on the baseline
/// (the rollback moved it before RollingBack was written); it is asserted once more at the end.
pub fn finish_rollback(facts: &Facts<'_>) -> Decision {
    let delay = scale_down_delay(facts);
    let elapsed = step_elapsed(facts.status, facts.now);
    if elapsed < delay {
        return stay(facts, Requeue::After(delay - elapsed));
    }
    let mut status = facts.status.clone();
    let mut effects = vec![Effect::RouteAllToBaseline { after_failing_verdict: false }];
    if facts.spec.serving.deployment.is_some() {
        effects.push(Effect::DeleteCanary);
    }
    let reason = status.message.clone().unwrap_or_else(|| "rolled back".into());
    status::transition(&mut status, Phase::RolledBack, reason.clone(), facts.now);
    let note =
        Note { warning: true, reason: "RolledBack", message: format!("all traffic is back on the baseline: {reason}") };
    act(facts, status, effects, Some(note), Requeue::OnChange)
}

/// Every step passed (or a person promoted): promotion starts.
pub fn enter_promotion(facts: &Facts<'_>, mut status: ModelRolloutStatus, message: String) -> Decision {
    status::transition(&mut status, Phase::Promoting, message.clone(), facts.now);
    act(facts, status, vec![], Some(Note { warning: false, reason: "Promoting", message }), NEXT)
}

/// Waits in Paused with an Event (a pause step, or an undecided analysis with `onInconclusive: pause`).
pub fn pause(facts: &Facts<'_>, mut status: ModelRolloutStatus, note: Note, requeue: Requeue) -> Decision {
    status::transition(&mut status, Phase::Paused, note.message.clone(), facts.now);
    act(facts, status, vec![], Some(note), requeue)
}

/// An analysis step ended without a verdict: the spec's `onInconclusive` policy decides.
pub fn inconclusive(facts: &Facts<'_>, mut status: ModelRolloutStatus, index: i32, reason: String) -> Decision {
    let policy = facts.spec.analysis.as_ref().and_then(|a| a.on_inconclusive).unwrap_or_default();
    if let Some(analysis) = status.analysis.as_mut() {
        analysis.verdict = Some(rampart_api::v1alpha1::Verdict::Inconclusive);
    }
    match policy {
        OnInconclusive::Rollback => roll_back(facts, status, RollbackCause::Inconclusive(reason)),
        OnInconclusive::Promote => {
            let message = format!("{reason}; onInconclusive: promote, carrying on");
            let description = "analysis inconclusive, promoted by policy".to_string();
            let mut decision = advance(facts, status, index, vec![], description, message, "AnalysisInconclusive");
            if let Decision::Act(act) = &mut decision
                && let Some(note) = act.event.as_mut()
            {
                note.warning = true;
            }
            decision
        }
        OnInconclusive::Pause => {
            let message = format!("{reason}; onInconclusive: pause, waiting for rampart promote or rampart abort");
            pause(facts, status, Note { warning: true, reason: "AnalysisInconclusive", message }, Requeue::OnChange)
        }
    }
}

/// `rampart retry` on a finished rollout: old check Jobs go (they would hand back old verdicts) and it starts again
/// from step 0.
pub fn retry(facts: &Facts<'_>, value: String) -> Decision {
    let mut status = facts.status.clone();
    status.handled_retry = Some(value);
    status.current_step = Some(0);
    status.canary_weight = Some(0);
    status.analysis = None;
    status.checks = None;
    status.canary_started_at = None;
    status.bake = None;
    // The new attempt claims the targets the spec names now.
    status.targets = None;
    // A registry refusal belonged to the attempt that ended; the new one is recorded afresh.
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != "Recorded");
    }
    let message = "retry requested (rampart retry): starting again from step 0".to_string();
    status::transition(&mut status, Phase::Pending, message, facts.now);
    let note = Note { warning: false, reason: "Retrying", message: "starting again from step 0".into() };
    act(facts, status, vec![Effect::DeleteCheckJobs], Some(note), NEXT)
}

/// Another live rollout holds one of this rollout's targets: wait (the phase stays), with a `TargetClaimed`
/// condition and message naming the holder, and look again soon. Nothing is done to any target. The Event is
/// published once, when the wait begins.
pub fn wait_for_target(facts: &Facts<'_>, holder: &str) -> Decision {
    let mut status = facts.status.clone();
    let already = status
        .conditions
        .as_ref()
        .is_some_and(|c| c.iter().any(|c| c.type_ == crate::claims::CONDITION_TARGET_CLAIMED && c.status == "True"));
    let message = format!("waiting for a target: {holder}");
    status.phase.get_or_insert(Phase::Pending);
    status.message = Some(message.clone());
    let mut decision = act(facts, status, vec![], None, Requeue::After(Duration::from_secs(5)));
    if let Decision::Act(act) = &mut decision {
        status::set_condition(
            &mut act.status,
            crate::claims::CONDITION_TARGET_CLAIMED,
            "True",
            "HeldByAnotherRollout",
            holder,
            facts.now,
            facts.generation,
        );
        if !already {
            act.event = Some(Note { warning: true, reason: "TargetClaimed", message });
        }
    }
    decision
}

/// The registry refused a record that puts this rollout in it: the rollout stops with the registry's reason in its
/// message and a `Recorded=False` condition. Before traffic it fails; with traffic on the canary it rolls back.
pub fn registry_refused(facts: &Facts<'_>, why: &str) -> Decision {
    let status = facts.status.clone();
    let phase = status.phase.unwrap_or(Phase::Pending);
    let message = format!("the registry refused to record this rollout, so it can never be promoted: {why}");
    let before_traffic =
        matches!(phase, Phase::Pending | Phase::Verifying | Phase::Checking) && status.canary_weight.unwrap_or(0) == 0;
    let mut decision = if before_traffic {
        fail_before_traffic(facts, status, "RegistryRefused", format!("{message}; no traffic was moved"))
    } else if phase == Phase::RollingBack {
        stay(facts, NEXT)
    } else {
        roll_back(facts, status, RollbackCause::RegistryRefused(message.clone()))
    };
    if let Decision::Act(act) = &mut decision {
        status::set_condition(
            &mut act.status,
            "Recorded",
            "False",
            "RegistryRefused",
            &message,
            facts.now,
            facts.generation,
        );
    }
    decision
}

/// How long a deleted rollout waits for the registry to take its queued records before it goes anyway.
pub const DELETE_GRACE: Duration = Duration::from_secs(300);

/// The rollout was deleted: traffic goes back to the baseline (unless the candidate was promoted, when the baseline
/// serves it already), the canary goes, the trail is written, then the finalizer is released. Waits up to
/// [`DELETE_GRACE`] for the registry, never for anything else.
pub fn release(facts: &Facts<'_>) -> Decision {
    if !facts.has_finalizer {
        return Decision::Act(Box::new(Act {
            effects: vec![],
            status: facts.status.clone(),
            event: None,
            requeue: Requeue::OnChange,
        }));
    }
    let mut status = facts.status.clone();
    let phase = status.phase.unwrap_or(Phase::Pending);
    let mut effects = Vec::new();
    // A forged `Succeeded` must not keep traffic on a canary that was never promoted.
    if phase != Phase::Succeeded || facts.status_trust == crate::seal::Trust::Forged {
        effects.push(Effect::RouteAllToBaseline { after_failing_verdict: false });
        status.canary_weight = Some(0);
    }
    if facts.spec.serving.deployment.is_some() {
        effects.push(Effect::DeleteCanary);
    }
    if !phase.is_terminal() && facts.status_trust != crate::seal::Trust::Forged {
        // The canary is being deleted; scaling it to zero first is harmless and keeps one way to give pods back.
        effects.extend(super::capacity::return_pods(facts.spec, &status));
    }
    let mut event = None;
    if phase == Phase::Baking {
        // Promoted already: `production` goes back to the previous version with the traffic.
        let reason = "the rollout was deleted during the bake after promotion: all traffic returned to the previous \
                      version"
            .to_string();
        // The bake's looks only (an earlier step's numbers are not why it rolled back).
        let bake_step = i32::try_from(facts.spec.steps.len()).ok();
        let looks = status.analysis.as_ref().filter(|a| a.step.is_some() && a.step == bake_step);
        let statistics = serde_json::json!({"metrics": looks.and_then(|a| a.metrics.clone())});
        record(
            facts,
            &mut status,
            TrailRecord::RollbackAfterPromotion { uid: facts.uid.into(), reason: reason.clone(), statistics },
        );
        if let Some(replicas) = status.bake.as_ref().and_then(|b| b.baseline_replicas) {
            // Right after the route: the previous version gets its replicas back before the candidate goes.
            effects.insert(1.min(effects.len()), Effect::ScaleBaseline { replicas });
        }
        status::transition(&mut status, Phase::RolledBack, reason.clone(), facts.now);
        event = Some(Note { warning: true, reason: "Deleted", message: reason });
    } else if !phase.is_terminal() {
        let reason = "the rollout was deleted: all traffic returned to the baseline".to_string();
        record(
            facts,
            &mut status,
            TrailRecord::Finish { uid: facts.uid.into(), aborted: true, reason: reason.clone() },
        );
        status::transition(&mut status, Phase::RolledBack, reason.clone(), facts.now);
        event = Some(Note { warning: true, reason: "Deleted", message: reason });
    }
    let pending = status.outbox.as_ref().map_or(0, Vec::len);
    let deleted_for = facts
        .deleted_at
        .map(|at| facts.now.duration_since(at))
        .filter(|d| d.is_positive())
        .map(|d| d.unsigned_abs())
        .unwrap_or(Duration::ZERO);
    if facts.settings.registry && pending > 0 && deleted_for < DELETE_GRACE {
        status.message = Some(format!(
            "deleting: traffic is on the baseline; waiting for the registry to take {pending} trail records (at most {})",
            format_duration(DELETE_GRACE)
        ));
        return act(facts, status, effects, event, Requeue::After(Duration::from_secs(2)));
    }
    effects.push(Effect::ReleaseFinalizer);
    Decision::Act(Box::new(Act { effects, status, event, requeue: Requeue::OnChange }))
}

pub(super) fn scale_down_delay(facts: &Facts<'_>) -> Duration {
    facts
        .spec
        .rollback
        .as_ref()
        .and_then(|r| r.scale_down_delay.as_deref())
        .and_then(|text| parse_duration(text).ok())
        .unwrap_or(Duration::ZERO)
}
