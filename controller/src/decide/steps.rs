//! Progressing and Paused: run the current step. `setWeight` moves traffic, `pause` waits (for a time, or for a
//! person), `analysis` takes looks until the statistics decide; when the steps run out, promotion starts.

use std::time::Duration;

use rampart_api::Phase;
use rampart_api::v1alpha1::{CapacityStatus, Cohort, HeaderMatchType, HeaderRule, ModelRolloutSpec, Step};

use super::endings::{self, advance, pause};
use super::{DecideError, Decision, Effect, Facts, Need, Note, Observation, Requeue, capacity};
use crate::status::format_duration;

/// The current step's decision.
pub fn progress(facts: &Facts<'_>) -> Result<Decision, DecideError> {
    let status = facts.status;
    let index = status.current_step.unwrap_or(0).max(0);
    let Some(step) = usize::try_from(index).ok().and_then(|i| facts.spec.steps.get(i)) else {
        return Ok(endings::enter_promotion(facts, status.clone(), "all steps completed".into()));
    };
    let Step { set_weight, pause: pause_step, analysis, cohort, shadow } = step;
    if let Some(weight) = set_weight {
        return Ok(set_weight_step(facts, index, *weight));
    }
    if let Some(cohort) = cohort {
        return Ok(cohort_step(facts, index, cohort));
    }
    if let Some(pause_step) = pause_step {
        return pause_decision(facts, index, pause_step.duration.as_deref());
    }
    if let Some(analysis) = analysis {
        if status.phase == Some(Phase::Paused) {
            // Paused by `onInconclusive: pause` or a halted rollback: a person decides.
            return Ok(endings::stay(facts, Requeue::OnChange));
        }
        return super::analysis::look(facts, index, analysis);
    }
    if let Some(shadow) = shadow {
        if status.phase == Some(Phase::Paused) {
            return Ok(endings::stay(facts, Requeue::OnChange));
        }
        return super::shadow::look(facts, index, shadow);
    }
    Err(DecideError::Spec(format!("step {index} has no action")))
}

fn set_weight_step(facts: &Facts<'_>, index: i32, weight: i32) -> Decision {
    if let Some(sizes) = &facts.status.capacity
        && facts.spec.serving.deployment.is_some()
    {
        return capacity_step(facts, index, weight, sizes);
    }
    let mut status = facts.status.clone();
    // The canary Deployment is made when traffic first goes to it; later weights only move traffic.
    let create_canary = facts.spec.serving.deployment.is_some() && weight > 0 && status.canary_weight.unwrap_or(0) == 0;
    status.canary_weight = Some(weight);
    if weight > 0 {
        mark_canary_started(facts, &mut status);
    }
    let cohort = active_cohort(facts.spec, index).map(|c| c.headers.clone());
    let effects = vec![Effect::SetWeight { weight, create_canary, cohort, mirror: false }];
    let message = format!("step {index}: canary weight set to {weight}%");
    advance(facts, status, index, effects, format!("setWeight {weight}"), message, "WeightSet")
}

/// A capacity-aware `setWeight`: one move per reconcile towards the step's split (see [`super::capacity`]); the step
/// ends when the pods are there and ready and the weight is the step's.
fn capacity_step(facts: &Facts<'_>, index: i32, weight: i32, sizes: &CapacityStatus) -> Decision {
    let Observation::Capacity(seen) = &facts.observed else { return Decision::Observe(Need::Capacity) };
    let mut status = facts.status.clone();
    let seen = match seen {
        Ok(seen) => *seen,
        Err(why) => {
            status.message = Some(format!("step {index}: setWeight {weight} waits: {why}"));
            return endings::update(facts, status, None, Requeue::After(capacity::MOVE_POLL));
        }
    };
    let total = sizes.baseline_replicas;
    let target = capacity::canary_pods(weight, total);
    let step = capacity::plan(total, sizes.surge_replicas, target, weight, seen);
    let current = status.canary_weight.unwrap_or(0);
    let cohort = active_cohort(facts.spec, index).map(|c| c.headers.clone());
    let effects = capacity::effects(&step, seen, current, cohort);
    status.canary_weight = Some(step.weight);
    if step.weight > 0 {
        mark_canary_started(facts, &mut status);
    }
    capacity::note_ready(&mut status, seen);
    if step.done {
        let message = format!(
            "step {index}: canary weight set to {weight}% on {target} of {total} pods ({})",
            capacity::describe(seen)
        );
        return advance(facts, status, index, effects, format!("setWeight {weight}"), message, "WeightSet");
    }
    status.message = Some(format!(
        "step {index}: moving to {weight}% within a surge of {} pods: {}; canary weight {}% follows its ready pods",
        sizes.surge_replicas,
        capacity::describe(seen),
        step.weight
    ));
    endings::act(facts, status, effects, None, Requeue::After(capacity::MOVE_POLL))
}

/// Notes when traffic first reached the canary: a bake counts the metrics from there.
pub(super) fn mark_canary_started(facts: &Facts<'_>, status: &mut rampart_api::ModelRolloutStatus) {
    if status.canary_started_at.is_none() {
        status.canary_started_at = Some(facts.now.to_string());
    }
}

/// The cohort routed to the canary at step `index`: the last `cohort` step at or before it. It stays until the
/// rollout ends (promotion and rollback route everything back to the baseline).
pub fn active_cohort(spec: &ModelRolloutSpec, index: i32) -> Option<&Cohort> {
    let upto = usize::try_from(index).ok()?.saturating_add(1).min(spec.steps.len());
    spec.steps[..upto].iter().rev().find_map(|step| step.cohort.as_ref())
}

/// `x-tenant=internal, x-group~beta-.*` for messages.
pub fn describe_cohort(headers: &[HeaderRule]) -> String {
    let rules: Vec<String> = headers
        .iter()
        .map(|h| match h.match_type.unwrap_or_default() {
            HeaderMatchType::Exact => format!("{}={}", h.name, h.value),
            HeaderMatchType::RegularExpression => format!("{}~{}", h.name, h.value),
        })
        .collect();
    rules.join(", ")
}

/// Routes the cohort's requests to the canary (creating it when no traffic went to it yet); the weight stays.
fn cohort_step(facts: &Facts<'_>, index: i32, cohort: &Cohort) -> Decision {
    let mut status = facts.status.clone();
    mark_canary_started(facts, &mut status);
    let weight = status.canary_weight.unwrap_or(0);
    let create_canary = facts.spec.serving.deployment.is_some() && weight == 0;
    let effects =
        vec![Effect::SetWeight { weight, create_canary, cohort: Some(cohort.headers.clone()), mirror: false }];
    let described = describe_cohort(&cohort.headers);
    let message = format!("step {index}: requests with {described} go to the canary (other requests: {weight}%)");
    advance(facts, status, index, effects, format!("cohort {described}"), message, "CohortRouted")
}

fn pause_decision(facts: &Facts<'_>, index: i32, duration: Option<&str>) -> Result<Decision, DecideError> {
    let status = facts.status;
    let Some(duration) = duration else {
        if status.phase == Some(Phase::Paused) {
            return Ok(endings::stay(facts, Requeue::OnChange));
        }
        let message = format!("step {index}: paused until promoted (rampart promote {})", facts.name);
        return Ok(pause(facts, status.clone(), Note { warning: false, reason: "Paused", message }, Requeue::OnChange));
    };
    let duration = super::parse_duration(duration)?;
    let elapsed = super::step_elapsed(status, facts.now);
    if elapsed >= duration {
        let message = format!("step {index}: pause of {} ended", format_duration(duration));
        let description = format!("pause {}", format_duration(duration));
        return Ok(advance(facts, status.clone(), index, vec![], description, message, "PauseEnded"));
    }
    let left = Requeue::After((duration - elapsed).max(Duration::from_millis(50)));
    if status.phase == Some(Phase::Paused) {
        return Ok(endings::stay(facts, left));
    }
    let message = format!("step {index}: pausing for {}", format_duration(duration));
    Ok(pause(facts, status.clone(), Note { warning: false, reason: "Paused", message }, left))
}
