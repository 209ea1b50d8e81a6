//! Target claims: one rollout at a time holds a serving target (the baseline Deployment or the InferenceService) and
//! its HTTPRoute, so two rollouts on one target cannot overwrite each other's canary.
//!
//! A claim is the annotation `rampart.dev/claimed-by: <namespace>/<name>/<uid>` on each target object, written with a
//! merge patch that carries the object's resourceVersion (two rollouts racing for it: one write wins, the other gets
//! 409 and reads again). A claim whose holder is gone (no rollout with that uid) or has ended (a terminal phase) is
//! stale and may be taken over, so a release that never happened (a crash, a forced delete) blocks nobody for good.
//! Targets are claimed in a fixed order (Deployment or InferenceService before HTTPRoute), and a rollout that finds
//! one held lets go of what it took, so two waiting rollouts never hold a part each.
//!
//! The attempt's targets are frozen in `status.targets` when it takes the claim; later edits of `spec.serving` or
//! `spec.traffic` do not move it to other objects until it ends (see [`effective`]).

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, ResourceExt};
use rampart_api::v1alpha1::RolloutTargets;
use rampart_api::{ModelRollout, ModelRolloutStatus};
use serde_json::json;

use crate::status;
use crate::traffic::{httproute_resource, inference_service_resource};

/// The annotation that names the rollout holding a target: `<namespace>/<name>/<uid>`.
pub const ANNOTATION_CLAIMED_BY: &str = "rampart.dev/claimed-by";

/// The condition a rollout waiting for a claimed target carries (True while it waits; its message names the holder).
pub const CONDITION_TARGET_CLAIMED: &str = "TargetClaimed";

/// The condition a rollout carries while its spec names other targets than the ones its attempt started with.
pub const CONDITION_SPEC_FROZEN: &str = "TargetsFrozen";

/// One object a rollout holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// What kind of object, for messages (`Deployment`, `HTTPRoute`, `InferenceService`).
    pub kind: &'static str,
    /// Its name, in the rollout's namespace.
    pub name: String,
}

/// Where claiming stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This rollout holds every target (or a target that does not exist yet; the start gate reports it).
    Held,
    /// Another live rollout holds a target: a message naming the object and the holder.
    HeldBy(String),
}

/// The targets a rollout's spec (or frozen targets) names, in claiming order.
pub fn targets_of(targets: &RolloutTargets) -> Vec<Target> {
    let mut out = Vec::new();
    if let Some(deployment) = &targets.serving.deployment {
        out.push(Target { kind: "Deployment", name: deployment.name.clone() });
    }
    if let Some(kserve) = &targets.serving.kserve {
        out.push(Target { kind: "InferenceService", name: kserve.inference_service.clone() });
    }
    if let Some(gateway) = targets.traffic.as_ref().and_then(|t| t.gateway_api.as_ref()) {
        out.push(Target { kind: "HTTPRoute", name: gateway.http_route.clone() });
    }
    out
}

/// The targets the spec names now.
pub fn spec_targets(rollout: &ModelRollout) -> RolloutTargets {
    RolloutTargets { serving: rollout.spec.serving.clone(), traffic: rollout.spec.traffic.clone() }
}

/// The rollout to act on: the one read, with `spec.serving` and `spec.traffic` replaced by the targets its attempt
/// started with (when it has taken them), so an edit after the start cannot strand the old route.
pub fn effective(rollout: &ModelRollout, status: &ModelRolloutStatus) -> ModelRollout {
    let mut effective = rollout.clone();
    if let Some(targets) = &status.targets {
        effective.spec.serving = targets.serving.clone();
        effective.spec.traffic = targets.traffic.clone();
    }
    effective
}

/// Sets or clears the `TargetsFrozen` condition: True while the spec names other targets than the frozen ones.
pub fn note_frozen(
    status: &mut ModelRolloutStatus,
    now_spec: &RolloutTargets,
    now: Timestamp,
    generation: Option<i64>,
) {
    let Some(frozen) = &status.targets else { return };
    if frozen != now_spec {
        let held = describe(&targets_of(frozen));
        let message = format!(
            "spec.serving or spec.traffic changed after this attempt started; Rampart keeps acting on the targets it \
             started with ({held}) until the rollout ends. To move to the new targets, abort (rampart abort) and retry \
             (rampart retry), or create a new rollout"
        );
        status::set_condition(
            status,
            CONDITION_SPEC_FROZEN,
            "True",
            "TargetsChangedAfterStart",
            &message,
            now,
            generation,
        );
    } else if status.conditions.as_ref().is_some_and(|c| c.iter().any(|c| c.type_ == CONDITION_SPEC_FROZEN)) {
        let message = "the spec names the targets this attempt started with";
        status::set_condition(status, CONDITION_SPEC_FROZEN, "False", "Unchanged", message, now, generation);
    }
}

/// Marks the claim taken (`TargetClaimed=False`), when the rollout had waited for it.
pub fn note_held(status: &mut ModelRolloutStatus, now: Timestamp, generation: Option<i64>) {
    if status.conditions.as_ref().is_some_and(|c| c.iter().any(|c| c.type_ == CONDITION_TARGET_CLAIMED)) {
        let message = "this rollout holds its targets";
        status::set_condition(status, CONDITION_TARGET_CLAIMED, "False", "Held", message, now, generation);
    }
}

fn describe(targets: &[Target]) -> String {
    targets.iter().map(|t| format!("{} {}", t.kind, t.name)).collect::<Vec<_>>().join(", ")
}

/// The claim value for a rollout.
fn holder_value(namespace: &str, name: &str, uid: &str) -> String {
    format!("{namespace}/{name}/{uid}")
}

/// Splits a claim value into (namespace, name, uid); None when it is not one.
pub fn parse_holder(value: &str) -> Option<(&str, &str, &str)> {
    let mut parts = value.splitn(3, '/');
    let (namespace, name, uid) = (parts.next()?, parts.next()?, parts.next()?);
    (!namespace.is_empty() && !name.is_empty() && !uid.is_empty()).then_some((namespace, name, uid))
}

fn api_for(client: &kube::Client, namespace: &str, target: &Target) -> Api<DynamicObject> {
    let resource = match target.kind {
        "Deployment" => ApiResource::erase::<Deployment>(&()),
        "InferenceService" => inference_service_resource(),
        _ => httproute_resource(),
    };
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// Why a claim could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct ClaimError {
    action: String,
    #[source]
    source: kube::Error,
}

impl ClaimError {
    /// True when another writer changed the object between the read and the write (try again).
    pub fn is_conflict(&self) -> bool {
        matches!(&self.source, kube::Error::Api(status) if status.code == 409)
    }
}

/// Takes (or confirms) this rollout's claim on each of `targets`. When another live rollout holds one, what this
/// rollout took is let go and [`Claim::HeldBy`] says who holds what.
pub async fn claim(client: &kube::Client, rollout: &ModelRollout, targets: &[Target]) -> Result<Claim, ClaimError> {
    let namespace = rollout.namespace().unwrap_or_default();
    let uid = rollout.uid().unwrap_or_default();
    let ours = holder_value(&namespace, &rollout.name_any(), &uid);
    for target in targets {
        let api = api_for(client, &namespace, target);
        let read_error =
            |source| ClaimError { action: format!("reading {} {namespace}/{}", target.kind, target.name), source };
        let Some(object) = api.get_opt(&target.name).await.map_err(read_error)? else { continue };
        let current = object.annotations().get(ANNOTATION_CLAIMED_BY).cloned();
        if current.as_deref() == Some(ours.as_str()) {
            continue;
        }
        if let Some(value) = &current
            && let Some(holder) = live_holder(client, value, &uid).await?
        {
            release(client, &namespace, &uid, targets).await;
            return Ok(Claim::HeldBy(format!(
                "{} {namespace}/{} is held by rollout {holder}; this rollout waits until that one ends (Succeeded, \
                 RolledBack, Failed or deleted)",
                target.kind, target.name
            )));
        }
        let patch = json!({
            "metadata": {
                "resourceVersion": object.resource_version(),
                "annotations": {ANNOTATION_CLAIMED_BY: ours},
            }
        });
        api.patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(|source| ClaimError {
            action: format!("claiming {} {namespace}/{}", target.kind, target.name),
            source,
        })?;
    }
    Ok(Claim::Held)
}

/// The holder named by a claim value, as `namespace/name`, when that rollout still exists with the uid and has not
/// ended. A value that is not a claim, names this rollout's uid, or names a rollout that is gone or ended: None.
async fn live_holder(client: &kube::Client, value: &str, our_uid: &str) -> Result<Option<String>, ClaimError> {
    let Some((namespace, name, uid)) = parse_holder(value) else { return Ok(None) };
    if uid == our_uid {
        return Ok(None);
    }
    let api: Api<ModelRollout> = Api::namespaced(client.clone(), namespace);
    let holder = api
        .get_opt(name)
        .await
        .map_err(|source| ClaimError { action: format!("reading the holder rollout {namespace}/{name}"), source })?;
    Ok(holder
        .filter(|h| h.uid().as_deref() == Some(uid))
        .filter(|h| !h.status.as_ref().and_then(|s| s.phase).is_some_and(|p| p.is_terminal()))
        .map(|_| format!("{namespace}/{name}")))
}

/// Lets go of this rollout's claims on `targets` (only those naming its uid; with a resourceVersion precondition, so
/// a claim someone else took meanwhile stays). Failures are logged: a claim left behind is stale once the rollout
/// ended, and the next rollout takes it over.
pub async fn release(client: &kube::Client, namespace: &str, uid: &str, targets: &[Target]) {
    for target in targets {
        let api = api_for(client, namespace, target);
        let object = match api.get_opt(&target.name).await {
            Ok(Some(object)) => object,
            Ok(None) => continue,
            Err(err) => {
                tracing::warn!(target = %target.name, error = %err, "could not read a target to release its claim");
                continue;
            }
        };
        let ours = object
            .annotations()
            .get(ANNOTATION_CLAIMED_BY)
            .and_then(|v| parse_holder(v))
            .is_some_and(|(_, _, holder)| holder == uid);
        if !ours {
            continue;
        }
        let patch = json!({
            "metadata": {"resourceVersion": object.resource_version(), "annotations": {ANNOTATION_CLAIMED_BY: null}}
        });
        if let Err(err) = api.patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::warn!(target = %target.name, error = %err, "could not release a claim; it is stale once the rollout ended");
        }
    }
}

/// Whether a rollout's status says it acts on its targets (it took the claim): effects on traffic and serving run
/// only then, so a rollout that waits, or was deleted or aborted while waiting, never touches another's route.
pub fn holds(status: &ModelRolloutStatus) -> bool {
    status.targets.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_value_names_namespace_name_and_uid() {
        assert_eq!(parse_holder("ml/fraud-v2/1234-abcd"), Some(("ml", "fraud-v2", "1234-abcd")));
        assert_eq!(parse_holder("ml/fraud-v2"), None);
        assert_eq!(parse_holder("//x"), None);
        assert_eq!(parse_holder(""), None);
    }

    #[test]
    fn the_serving_target_is_claimed_before_the_route() {
        let targets: RolloutTargets = serde_json::from_value(json!({
            "serving": {"deployment": {"name": "model", "modelEnv": "MODEL_URI"}},
            "traffic": {"gatewayAPI": {"httpRoute": "route", "baselineBackend": "a", "canaryBackend": "b"}},
        }))
        .unwrap();
        let kinds: Vec<_> = targets_of(&targets).into_iter().map(|t| (t.kind, t.name)).collect();
        assert_eq!(kinds, vec![("Deployment", "model".to_string()), ("HTTPRoute", "route".to_string())]);
    }

    #[test]
    fn an_edited_spec_is_noted_and_the_frozen_targets_stay() {
        let frozen: RolloutTargets = serde_json::from_value(json!({
            "serving": {"deployment": {"name": "model", "modelEnv": "MODEL_URI"}},
            "traffic": {"gatewayAPI": {"httpRoute": "route", "baselineBackend": "a", "canaryBackend": "b"}},
        }))
        .unwrap();
        let mut edited = frozen.clone();
        if let Some(gateway) = edited.traffic.as_mut().and_then(|t| t.gateway_api.as_mut()) {
            gateway.http_route = "other".into();
        }
        let mut status = ModelRolloutStatus { targets: Some(frozen.clone()), ..Default::default() };
        note_frozen(&mut status, &edited, Timestamp::UNIX_EPOCH, Some(3));
        let condition = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == CONDITION_SPEC_FROZEN).unwrap();
        assert_eq!(condition.status, "True");
        assert!(condition.message.as_deref().unwrap().contains("HTTPRoute route"), "{condition:?}");
        assert_eq!(status.targets, Some(frozen.clone()), "the frozen targets are kept");
        note_frozen(&mut status, &frozen, Timestamp::UNIX_EPOCH, Some(4));
        let condition = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == CONDITION_SPEC_FROZEN).unwrap();
        assert_eq!(condition.status, "False");
    }
}
