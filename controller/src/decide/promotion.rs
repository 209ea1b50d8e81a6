//! Promoting: the registry records the promotion first (promotion needs the record; a rollback never does), then the
//! baseline serves the candidate: for a Deployment, its template moves to the candidate and, once that rolled out,
//! traffic returns to it and the canary goes; for KServe, the candidate becomes the default at 100%. With
//! `spec.bake`, a recorded promotion first bakes (see `bake`): the baseline moves only once the bake passed.

use std::time::Duration;

use rampart_api::v1alpha1::CapacityStatus;
use rampart_api::{ModelRolloutStatus, Phase};

use super::endings::act;
use super::{
    BaselineState, DecideError, Decision, Effect, Facts, Need, Note, Observation, PromotionObservation, Requeue,
    capacity,
};
use crate::status;

/// How long to wait for the registry before trying again.
const REGISTRY_RETRY: Duration = Duration::from_secs(2);
/// A fallback look at the baseline Deployment while it rolls out; the Deployment watch normally wakes the rollout
/// first.
const ROLL_OUT_FALLBACK: Duration = Duration::from_secs(30);

/// The promotion's next move.
pub fn promote(facts: &Facts<'_>) -> Result<Decision, DecideError> {
    let Observation::Promotion(observed) = &facts.observed else { return Ok(Decision::Observe(Need::Promotion)) };
    let mut status = facts.status.clone();
    if let Err(waiting) = &observed.registry {
        status.message =
            Some(format!("promoting: waiting for the registry ({waiting}); promotion needs the record first"));
        return Ok(act(facts, status, vec![], None, Requeue::After(REGISTRY_RETRY)));
    }
    let spec = facts.spec;
    // Admission keeps `spec.bake` and capacity-aware steps apart (a bake keeps both versions' pods).
    if let (Some(sizes), Some(deployment)) = (&facts.status.capacity, &spec.serving.deployment) {
        return Ok(with_capacity(facts, observed, sizes, &deployment.name));
    }
    if let Some(bake) = &spec.bake
        && spec.serving.deployment.is_some()
        && status.bake.as_ref().and_then(|b| b.outcome).is_none()
    {
        return super::bake::enter(facts, status, bake, observed.baseline_replicas);
    }
    // A passed bake that kept the previous version at fewer replicas gives the baseline its replicas back.
    let restore =
        status.bake.as_ref().and_then(|b| b.baseline_replicas).map(|replicas| Effect::ScaleBaseline { replicas });
    let effects = if let Some(deployment) = &spec.serving.deployment {
        let waiting = format!(
            "promoting: waiting for Deployment {} to roll out the candidate before traffic returns to it",
            deployment.name
        );
        match observed.baseline {
            BaselineState::ServesPrevious | BaselineState::NotApplicable => {
                status.message = Some(waiting);
                let effects = restore.into_iter().chain([Effect::PromoteBaseline]).collect();
                return Ok(act(facts, status, effects, None, Requeue::After(ROLL_OUT_FALLBACK)));
            }
            BaselineState::RollingOut => {
                status.message = Some(waiting);
                return Ok(act(facts, status, vec![], None, Requeue::After(ROLL_OUT_FALLBACK)));
            }
            BaselineState::RolledOut => {
                vec![Effect::RouteAllToBaseline { after_failing_verdict: false }, Effect::DeleteCanary]
            }
        }
    } else {
        vec![Effect::PromoteKServe]
    };
    Ok(promoted(facts, status, effects))
}

fn promoted(facts: &Facts<'_>, mut status: ModelRolloutStatus, effects: Vec<Effect>) -> Decision {
    status.canary_weight = Some(0);
    let message = format!("{} {} is now the baseline", facts.spec.model, facts.spec.candidate.version);
    status::transition(&mut status, Phase::Succeeded, message.clone(), facts.now);
    act(facts, status, effects, Some(Note { warning: false, reason: "Promoted", message }), Requeue::OnChange)
}

/// Promotion within a surge budget: all traffic and pods move to the canary (it serves the candidate already), the
/// baseline's template moves to the candidate while it has no pods, then the pods and traffic move back to it and the
/// canary goes. The pods of both never exceed the budget, and each side gets traffic only for its ready pods.
fn with_capacity(
    facts: &Facts<'_>,
    observed: &PromotionObservation,
    sizes: &CapacityStatus,
    deployment: &str,
) -> Decision {
    let mut status = facts.status.clone();
    let seen = match &observed.capacity {
        Some(Ok(seen)) => *seen,
        Some(Err(why)) => {
            status.message = Some(format!("promoting: waiting to read the Deployments: {why}"));
            return act(facts, status, vec![], None, Requeue::After(capacity::MOVE_POLL));
        }
        None => {
            status.message = Some("promoting: the Deployments were not read; looking again".into());
            return act(facts, status, vec![], None, Requeue::After(capacity::MOVE_POLL));
        }
    };
    let total = sizes.baseline_replicas;
    let current = status.canary_weight.unwrap_or(0);
    capacity::note_ready(&mut status, seen);
    let to_canary = matches!(observed.baseline, BaselineState::ServesPrevious | BaselineState::NotApplicable);
    let (target, stage) = if to_canary {
        (total, format!("moving all pods and traffic to the canary before Deployment {deployment} takes the candidate"))
    } else {
        (0, format!("Deployment {deployment} serves the candidate; moving pods and traffic back to it"))
    };
    let step = capacity::plan(total, sizes.surge_replicas, target, 100, seen);
    let mut effects = capacity::effects(&step, seen, current, None);
    status.canary_weight = Some(step.weight);
    if step.done && !to_canary {
        effects.push(Effect::RouteAllToBaseline { after_failing_verdict: false });
        effects.push(Effect::DeleteCanary);
        return promoted(facts, status, effects);
    }
    if step.done {
        effects.push(Effect::PromoteBaseline);
    }
    status.message = Some(format!("promoting: {stage} ({}; canary weight {}%)", capacity::describe(seen), step.weight));
    act(facts, status, effects, None, Requeue::After(capacity::MOVE_POLL))
}
