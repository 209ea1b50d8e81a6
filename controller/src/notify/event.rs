//! Which notifications a rollout owes, derived from its status alone (a pure function, no I/O). Deriving from the
//! level rather than the edge is what makes delivery at-least-once: after a restart the controller looks at every
//! rollout again, derives the same events with the same ids, and the queue ignores the ones it already holds.

use rampart_api::v1alpha1::MetricStatus;
use rampart_api::{ModelRollout, Phase};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A transition that is announced.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Transition {
    /// The candidate is deployed as a canary and receives live traffic.
    Deployed,
    /// The candidate was promoted: the baseline now serves it.
    Upgraded,
    /// Traffic went back to the baseline (a failing verdict, a failed step, an abort).
    RolledBack,
}

impl Transition {
    /// The CDEvents event type (CDEvents spec v0.4, service events 0.2.0).
    pub fn cdevents_type(self) -> &'static str {
        match self {
            Transition::Deployed => "dev.cdevents.service.deployed.0.2.0",
            Transition::Upgraded => "dev.cdevents.service.upgraded.0.2.0",
            Transition::RolledBack => "dev.cdevents.service.rolledback.0.2.0",
        }
    }

    /// A short word for ids, logs and messages.
    pub fn word(self) -> &'static str {
        match self {
            Transition::Deployed => "deployed",
            Transition::Upgraded => "upgraded",
            Transition::RolledBack => "rolledback",
        }
    }
}

/// The analysis detail carried by an event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisDetail {
    /// Index of the analysis step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// The step's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Looks taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub looks: Option<i32>,
    /// Per metric: canary and baseline estimates, effect, confidence interval, p-value, samples, reason.
    #[serde(default)]
    pub metrics: Vec<MetricStatus>,
    /// The sample-ratio-mismatch check, when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srm: Option<MetricStatus>,
}

/// One notification, as queued: everything a sink's message is rendered from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutEvent {
    /// Stable id: the same rollout, attempt and transition always give the same id.
    pub id: String,
    pub transition: Transition,
    /// When the transition happened (RFC 3339): from the status history when it is there.
    pub time: String,
    pub namespace: String,
    pub name: String,
    /// The serving target rolled (the baseline Deployment or the InferenceService), the CDEvents service.
    pub service: String,
    pub uid: String,
    pub model: String,
    pub candidate_version: String,
    pub artifact_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_version: Option<String>,
    /// The rollout's phase when the event was derived.
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// Why: the rollout's status message (for a rollback, the failing metric with its numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The value of `rampart.dev/retry` this attempt started from (none for the first attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisDetail>,
}

/// The stable id of a rollout's transition: sha256 over uid, attempt and transition, as 32 hex digits.
pub fn event_id(uid: &str, attempt: Option<&str>, transition: Transition) -> String {
    let mut hash = Sha256::new();
    hash.update(b"rampart.dev/notification\n");
    hash.update(uid.as_bytes());
    hash.update(b"\n");
    hash.update(attempt.unwrap_or("").as_bytes());
    hash.update(b"\n");
    hash.update(transition.word().as_bytes());
    let digest = hash.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The transitions the status shows have happened (in the order they happen).
pub fn transitions(phase: Phase, canary_weight: Option<i32>) -> Vec<Transition> {
    let traffic = canary_weight.unwrap_or(0) > 0;
    match phase {
        Phase::Progressing | Phase::Paused | Phase::Promoting | Phase::Baking if traffic => vec![Transition::Deployed],
        Phase::Succeeded => vec![Transition::Upgraded],
        Phase::RollingBack | Phase::RolledBack => vec![Transition::RolledBack],
        _ => Vec::new(),
    }
}

/// The events a rollout's status owes. A "deployed" event is derived only while the canary has traffic, so it can be
/// missed if the controller is down for the whole canary phase; upgrades and rollbacks are derived from the final
/// status and are never missed while the rollout exists.
pub fn events_for(rollout: &ModelRollout, now: &str) -> Vec<RolloutEvent> {
    let Some(status) = rollout.status.as_ref() else { return Vec::new() };
    let Some(phase) = status.phase else { return Vec::new() };
    let uid = rollout.metadata.uid.clone().unwrap_or_default();
    if uid.is_empty() {
        return Vec::new();
    }
    let attempt = status.handled_retry.clone();
    let serving = &rollout.spec.serving;
    let service = match (&serving.deployment, &serving.kserve) {
        (Some(deployment), _) => deployment.name.clone(),
        (None, Some(kserve)) => kserve.inference_service.clone(),
        (None, None) => rollout.metadata.name.clone().unwrap_or_default(),
    };
    transitions(phase, status.canary_weight)
        .into_iter()
        .map(|transition| {
            // The latest entry of the phase that marks the transition (a retry leaves older ones in the history);
            // a canary's deployment is announced while it runs, so "now" is close enough for it.
            let entered: &[Phase] = match transition {
                Transition::Deployed => &[],
                Transition::Upgraded => &[Phase::Succeeded],
                Transition::RolledBack => &[Phase::RollingBack, Phase::RolledBack],
            };
            let history = status.history.as_deref().unwrap_or_default();
            let time = entered
                .iter()
                .find_map(|phase| history.iter().rfind(|h| h.phase == *phase))
                .map(|h| h.time.clone())
                .unwrap_or_else(|| now.to_string());
            let analysis = status.analysis.as_ref().map(|a| AnalysisDetail {
                step: a.step,
                verdict: a.verdict.map(|v| format!("{v:?}")),
                looks: a.looks,
                metrics: a.metrics.clone().unwrap_or_default(),
                srm: a.srm.clone(),
            });
            RolloutEvent {
                id: event_id(&uid, attempt.as_deref(), transition),
                transition,
                time,
                namespace: rollout.metadata.namespace.clone().unwrap_or_default(),
                name: rollout.metadata.name.clone().unwrap_or_default(),
                service: service.clone(),
                uid: uid.clone(),
                model: rollout.spec.model.clone(),
                candidate_version: rollout.spec.candidate.version.clone(),
                artifact_uri: rollout.spec.candidate.artifact.uri.clone(),
                baseline_version: status.baseline_version.clone(),
                phase: format!("{phase:?}"),
                canary_weight: status.canary_weight,
                step: status.current_step,
                reason: status.message.clone(),
                attempt: attempt.clone(),
                analysis,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_rollout_attempt_and_transition_always_get_the_same_id() {
        let a = event_id("uid-1", None, Transition::RolledBack);
        assert_eq!(a, event_id("uid-1", None, Transition::RolledBack));
        assert_eq!(a.len(), 32);
        assert_ne!(a, event_id("uid-1", None, Transition::Upgraded));
        assert_ne!(a, event_id("uid-2", None, Transition::RolledBack));
        assert_ne!(a, event_id("uid-1", Some("1"), Transition::RolledBack), "a retry is a new attempt");
    }

    #[test]
    fn only_deployed_upgraded_and_rolled_back_are_announced() {
        assert_eq!(transitions(Phase::Progressing, Some(10)), vec![Transition::Deployed]);
        assert!(transitions(Phase::Progressing, Some(0)).is_empty(), "no traffic yet: nothing deployed");
        assert!(transitions(Phase::Checking, None).is_empty());
        assert_eq!(transitions(Phase::Succeeded, Some(0)), vec![Transition::Upgraded]);
        assert_eq!(transitions(Phase::RollingBack, Some(0)), vec![Transition::RolledBack]);
        assert_eq!(transitions(Phase::RolledBack, Some(0)), vec![Transition::RolledBack]);
        assert!(transitions(Phase::Failed, Some(0)).is_empty());
    }

    #[test]
    fn a_rolled_back_rollout_owes_one_event_with_the_failing_metric() {
        let rollout: ModelRollout = serde_json::from_value(serde_json::json!({
            "apiVersion": "rampart.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": "fraud", "namespace": "ml", "uid": "u-1"},
            "spec": {
                "model": "fraud",
                "candidate": {"version": "v2", "artifact": {"uri": "s3://m/v2", "digest": format!("sha256:{}", "0".repeat(64))}},
                "serving": {"deployment": {"name": "model", "modelEnv": "MODEL_URI"}},
                "steps": [{"setWeight": 10}],
            },
            "status": {
                "phase": "RolledBack", "canaryWeight": 0, "message": "accuracy: canary 0.85 vs baseline 0.90",
                "history": [{"time": "2026-01-01T00:00:00Z", "phase": "Progressing"},
                            {"time": "2026-01-01T00:01:00Z", "phase": "RollingBack"}],
                "analysis": {"step": 1, "verdict": "Fail", "metrics": [{"name": "accuracy", "verdict": "Fail",
                    "canary": "0.85", "baseline": "0.90", "interval": "[-0.07, -0.03]", "reason": "worse"}]},
            },
        }))
        .unwrap();
        let events = events_for(&rollout, "2026-01-01T00:05:00Z");
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.transition, Transition::RolledBack);
        assert_eq!(event.id, event_id("u-1", None, Transition::RolledBack));
        assert_eq!(event.time, "2026-01-01T00:01:00Z", "the time the rollback started, not the time of derivation");
        let metric = &event.analysis.as_ref().unwrap().metrics[0];
        assert_eq!((metric.canary.as_deref(), metric.interval.as_deref()), (Some("0.85"), Some("[-0.07, -0.03]")));
    }
}
