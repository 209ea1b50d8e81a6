//! Promoting: the registry records the promotion first (promotion needs the record; a rollback never does), then the
//! baseline serves the candidate: for a Deployment, its template moves to the candidate and, once that rolled out,
//! traffic returns to it and the canary goes; for KServe, the candidate becomes the default at 100%.

use std::time::Duration;

use rampart_api::Phase;

use super::endings::act;
use super::{BaselineState, DecideError, Decision, Effect, Facts, Need, Note, Observation, Requeue};
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
    let effects = if let Some(deployment) = &spec.serving.deployment {
        let waiting = format!(
            "promoting: waiting for Deployment {} to roll out the candidate before traffic returns to it",
            deployment.name
        );
        match observed.baseline {
            BaselineState::ServesPrevious | BaselineState::NotApplicable => {
                status.message = Some(waiting);
                return Ok(act(facts, status, vec![Effect::PromoteBaseline], None, Requeue::After(ROLL_OUT_FALLBACK)));
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
    status.canary_weight = Some(0);
    let message = format!("{} {} is now the baseline", spec.model, spec.candidate.version);
    status::transition(&mut status, Phase::Succeeded, message.clone(), facts.now);
    Ok(act(facts, status, effects, Some(Note { warning: false, reason: "Promoted", message }), Requeue::OnChange))
}
