//! What the dashboard's pages show, as JSON: read from the cluster with the user's credentials and from the registry
//! when one is configured. The browser renders it; nothing here formats HTML.

use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use rampart_api::ModelRollout;
use rampart_registry::{EventKind, RegistryError};
use serde_json::{Value, json};

use super::Dashboard;
use crate::error::CliError;
use crate::history;

/// Every rollout the user may list: across all namespaces when allowed, else in the kubeconfig's namespace.
pub async fn overview(state: &Dashboard) -> Result<Value, CliError> {
    let cluster = &state.cluster;
    let all: Api<ModelRollout> = Api::all(cluster.client.clone());
    let (items, scope) = match all.list(&ListParams::default()).await {
        Ok(list) => (list.items, "all namespaces".to_string()),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            let list = cluster
                .rollouts()
                .list(&ListParams::default())
                .await
                .map_err(|err| cluster.api_error(err, "ModelRollout", "*", "list"))?;
            (list.items, format!("namespace {}", cluster.namespace))
        }
        Err(err) => return Err(cluster.api_error(err, "ModelRollout", "*", "list")),
    };
    let mut rollouts: Vec<Value> = items.iter().map(summary).collect();
    rollouts.sort_by(|a, b| {
        (a["namespace"].as_str(), a["name"].as_str()).cmp(&(b["namespace"].as_str(), b["name"].as_str()))
    });
    Ok(json!({"scope": scope, "cluster": cluster.server, "registry": state.database.is_some(), "rollouts": rollouts}))
}

/// The columns of the list page for one rollout.
fn summary(rollout: &ModelRollout) -> Value {
    let status = rollout.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready").map(|c| c.status.clone());
    json!({
        "namespace": rollout.namespace().unwrap_or_default(),
        "name": rollout.name_any(),
        "model": rollout.spec.model,
        "candidate": rollout.spec.candidate.version,
        "baseline": status.baseline_version,
        "phase": status.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "Pending".into()),
        "canaryWeight": status.canary_weight.unwrap_or(0),
        "currentStep": status.current_step,
        "steps": rollout.spec.steps.len(),
        "message": status.message,
        "ready": ready,
        "created": rollout.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        "resourceVersion": rollout.resource_version(),
    })
}

/// One rollout: the object itself, what the user may do to it, the tolerances to draw, and every analysis look the
/// registry recorded (else only the latest, from the status).
pub async fn rollout(state: &Dashboard, namespace: &str, name: &str) -> Result<Value, CliError> {
    let cluster = crate::cluster::Cluster {
        client: state.cluster.client.clone(),
        namespace: namespace.to_string(),
        server: state.cluster.server.clone(),
    };
    let mut rollout = cluster.get_rollout(name).await?;
    rollout.metadata.managed_fields = None;
    let may_patch = may_patch(state, namespace, name).await;
    let status = rollout.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(rampart_api::Phase::Pending);
    let ended = phase.is_terminal();
    let actions = json!({
        // A promote request does not end a bake (docs/bake.md).
        "promote": may_patch && !ended && !matches!(phase, rampart_api::Phase::RollingBack | rampart_api::Phase::Baking),
        "abort": may_patch && !ended && !matches!(phase, rampart_api::Phase::RollingBack),
        "retry": may_patch && ended,
    });
    let metrics: Vec<Value> = rollout
        .spec
        .analysis
        .iter()
        .flat_map(|analysis| analysis.metrics.iter())
        .map(|metric| {
            let definition = metric.definition().ok();
            json!({
                "name": metric.name,
                "preset": metric.preset.map(|p| p.name()),
                "kind": definition.as_ref().map(|d| d.kind),
                "direction": definition.as_ref().map(|d| d.direction),
                "tolerance": metric.tolerance,
            })
        })
        .collect();

    let (looks, looks_source, registry_note) = match &state.database {
        None => (latest_look(&status), "status", Some("no registry configured: only the latest look is shown".into())),
        Some(database) => {
            let uid = rollout.uid().unwrap_or_default();
            match database.registry.rollout_events(&uid).await {
                Ok(events) => {
                    let looks: Vec<Value> = events
                        .iter()
                        .filter(|event| event.kind == EventKind::Verdict)
                        .map(|event| {
                            json!({
                                "time": event.occurred_at.to_string(),
                                "step": event.payload["step_index"],
                                "evaluation": event.payload["evaluation"],
                                "verdict": event.payload["verdict"],
                                "metrics": event.payload["statistics"]["metrics"],
                                "srm": event.payload["statistics"]["srm"],
                            })
                        })
                        .collect();
                    if looks.is_empty() { (latest_look(&status), "status", None) } else { (looks, "registry", None) }
                }
                Err(RegistryError::RolloutNotFound { .. }) => {
                    (latest_look(&status), "status", Some("the registry has no record of this rollout yet".to_string()))
                }
                Err(err) => (latest_look(&status), "status", Some(database.error(err).to_string())),
            }
        }
    };
    Ok(json!({
        "rollout": rollout,
        "actions": actions,
        "metrics": metrics,
        "looks": looks,
        "looksSource": looks_source,
        "registryNote": registry_note,
    }))
}

/// The status's latest look, as a one-element list of looks (no registry, or nothing recorded yet).
fn latest_look(status: &rampart_api::ModelRolloutStatus) -> Vec<Value> {
    match &status.analysis {
        Some(analysis) if analysis.metrics.as_ref().is_some_and(|m| !m.is_empty()) => vec![json!({
            "time": Value::Null,
            "step": analysis.step,
            "evaluation": analysis.looks,
            "verdict": analysis.verdict,
            "metrics": analysis.metrics,
            "srm": analysis.srm,
        })],
        _ => Vec::new(),
    }
}

/// Whether the user may patch this rollout (the promote/abort/retry annotations), per the API server's own answer.
/// Any failure to ask counts as no: buttons only show when the cluster said yes.
async fn may_patch(state: &Dashboard, namespace: &str, name: &str) -> bool {
    let review: SelfSubjectAccessReview = match serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {
            "group": "rampart.dev", "resource": "modelrollouts", "verb": "patch",
            "namespace": namespace, "name": name,
        }},
    })) {
        Ok(review) => review,
        Err(_) => return false,
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(state.cluster.client.clone());
    match api.create(&PostParams::default(), &review).await {
        Ok(answer) => answer.status.is_some_and(|status| status.allowed),
        Err(_) => false,
    }
}

/// One model: registry versions, the production alias and its moves, every rollout with its outcome and rollback
/// reason, and whether the event log's hash chain is intact; plus the rollouts of this model in the cluster.
pub async fn model(state: &Dashboard, model: &str) -> Result<Value, CliError> {
    let in_cluster: Vec<Value> = match overview(state).await {
        Ok(value) => value["rollouts"]
            .as_array()
            .map(|all| all.iter().filter(|r| r["model"] == model).cloned().collect())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let Some(database) = &state.database else {
        return Ok(json!({
            "model": model,
            "registry": false,
            "registryNote": "no registry configured: start the dashboard with --database-url to see versions, \
                             rollbacks and the hash chain",
            "clusterRollouts": in_cluster,
        }));
    };
    let registry = &database.registry;
    let versions = registry.versions(model).await.map_err(|err| database.error(err))?;
    let production = registry.production(model).await.map_err(|err| database.error(err))?;
    let moves = registry.alias_history(model, "production").await.map_err(|err| database.error(err))?;
    let rollouts = registry.rollouts(model).await.map_err(|err| database.error(err))?;
    let rollbacks = registry.rollbacks(model).await.map_err(|err| database.error(err))?;
    let chain = registry.verify_chain(model).await.map_err(|err| database.error(err))?;
    let rollouts: Vec<Value> = rollouts
        .iter()
        .map(|rollout| {
            let mut value = history::rollout_json(rollout);
            if let (Some(object), Some(rollback)) =
                (value.as_object_mut(), rollbacks.iter().find(|rollback| rollback.rollout.uid == rollout.uid))
            {
                object.insert("rollback".into(), history::rollback_json(rollback));
            }
            value
        })
        .collect();
    Ok(json!({
        "model": model,
        "registry": true,
        "production": production.as_ref().map(history::version_json),
        "versions": versions.iter().map(|version| {
            let mut value = history::version_json(version);
            if let Some(object) = value.as_object_mut() {
                object.insert("status".into(), json!(version.status));
                object.insert("statusReason".into(), json!(version.status_reason));
                object.insert("createdAt".into(), json!(version.created_at));
            }
            value
        }).collect::<Vec<_>>(),
        "productionMoves": moves.iter().map(|m| json!({
            "from": m.from_version, "to": m.to_version, "at": m.moved_at, "actor": m.actor, "reason": m.reason,
        })).collect::<Vec<_>>(),
        "rollouts": rollouts,
        "chain": history::chain_json(&chain),
        "clusterRollouts": in_cluster,
    }))
}
