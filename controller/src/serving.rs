//! The Deployment serving backend: create `<name>-canary` from the baseline's pod template with the candidate's
//! model, delete it when the rollout ends, and on promotion move the baseline itself to the candidate. With a signed
//! candidate (and `verification: VerifiedCopy`, the default) the pods get a `rampart-check fetch` init container and
//! the model server is pointed at the verified local copy: a replaced object keeps the pod from starting.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use rampart_api::ModelRollout;
use rampart_api::v1alpha1::DeploymentServing;
use serde_json::json;

use crate::jobs::{ArtifactFetch, with_verified_copy};
use crate::labels::{VERSION_ANNOTATION, label_value};

/// Label on canary pods and Deployments: `canary`.
pub const ROLE_LABEL: &str = "rampart.dev/role";
/// Label carrying the model version a Deployment serves.
pub const VERSION_LABEL: &str = "rampart.dev/model-version";
/// Label naming the rollout that created a canary.
pub const ROLLOUT_LABEL: &str = "rampart.dev/rollout";

/// Why the Deployment backend could not act.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// Reading or writing a Deployment failed.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The baseline Deployment cannot carry a model URI as configured.
    #[error("{0}")]
    Unusable(String),
}

/// Annotation by which a Deployment's owner names the environment variable that carries its model URI: the only
/// variable a rollout's `modelEnv` may set.
pub const MODEL_ENV_ANNOTATION: &str = "rampart.dev/model-uri-env";
/// Annotation by which a Deployment's owner names the flag that carries its model URI: the only flag a rollout's
/// `modelArg` may set.
pub const MODEL_ARG_ANNOTATION: &str = "rampart.dev/model-uri-arg";

/// A Deployment opts in to rollouts by naming, in an annotation, the one variable or flag that carries its model
/// URI; a rollout may set only that one. Without it, a rollout could point any container at any variable
/// (`JAVA_TOOL_OPTIONS`, `LD_PRELOAD`) and run the Deployment's pods, under their ServiceAccount, with what it wrote.
pub fn check_opt_in(meta: &kube::api::ObjectMeta, serving: &DeploymentServing, namespace: &str) -> Result<(), String> {
    let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str);
    let (key, wanted, what) = match (&serving.model_env, &serving.model_arg) {
        (Some(env), _) => (MODEL_ENV_ANNOTATION, env.as_str(), "modelEnv"),
        (None, Some(arg)) => (MODEL_ARG_ANNOTATION, arg.as_str(), "modelArg"),
        (None, None) => return Err("spec.serving.deployment names neither modelEnv nor modelArg".into()),
    };
    match annotation(key) {
        Some(allowed) if allowed == wanted => Ok(()),
        Some(allowed) => Err(format!(
            "Deployment {namespace}/{} lets rollouts set only {allowed} (its {key} annotation), not {what} {wanted}: \
             use {what}: {allowed}; nothing was changed and no traffic was moved",
            serving.name
        )),
        None => Err(format!(
            "Deployment {namespace}/{} has not opted in to rollouts: its owner annotates it with {key}: {wanted} to \
             let rollouts set {wanted} (and nothing else) to the model URI; nothing was changed and no traffic was \
             moved",
            serving.name
        )),
    }
}

/// The canary Deployment's name.
pub fn canary_name(serving: &DeploymentServing) -> String {
    format!("{}-canary", serving.name)
}

/// The model version an object (Deployment, InferenceService) says it serves: the exact text in the
/// `rampart.dev/model-version` annotation when the label agrees with it, else the label (labelled by hand).
pub fn served_version(meta: &kube::api::ObjectMeta) -> Option<String> {
    let label = meta.labels.as_ref().and_then(|l| l.get(VERSION_LABEL));
    let exact = meta.annotations.as_ref().and_then(|a| a.get(VERSION_ANNOTATION));
    match (label, exact) {
        (Some(label), Some(exact)) if label_value(exact) == *label => Some(exact.clone()),
        (label, _) => label.cloned(),
    }
}

/// Reads the baseline Deployment.
pub async fn baseline(client: &kube::Client, namespace: &str, name: &str) -> Result<Deployment, ServingError> {
    Api::<Deployment>::namespaced(client.clone(), namespace).get(name).await.map_err(|source| ServingError::Kube {
        action: format!("reading baseline Deployment {namespace}/{name}"),
        source,
    })
}

/// The model URI the baseline's pod template carries now, if it can be found.
pub fn current_uri(deployment: &Deployment, serving: &DeploymentServing) -> Option<String> {
    let template = deployment.spec.as_ref()?.template.spec.as_ref()?;
    let container = pick_container(&template.containers, serving.container.as_deref())?;
    if let Some(env) = &serving.model_env {
        return container.env.as_ref()?.iter().find(|e| &e.name == env)?.value.clone();
    }
    let flag = serving.model_arg.as_deref()?;
    let args = container.args.as_ref()?;
    for (i, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix(&format!("{flag}=")) {
            return Some(value.to_string());
        }
        if arg == flag {
            return args.get(i + 1).cloned();
        }
    }
    None
}

fn pick_container<'a>(containers: &'a [Container], name: Option<&str>) -> Option<&'a Container> {
    match name {
        Some(name) => containers.iter().find(|c| c.name == name),
        None => containers.first(),
    }
}

/// Returns `template` with the model URI set in the chosen container (env var or `--flag=value` argument).
pub fn with_model_uri(
    mut template: PodTemplateSpec,
    serving: &DeploymentServing,
    uri: &str,
) -> Result<PodTemplateSpec, ServingError> {
    let spec = template
        .spec
        .as_mut()
        .ok_or_else(|| ServingError::Unusable(format!("Deployment {} has no pod spec", serving.name)))?;
    let container = match serving.container.as_deref() {
        Some(name) => spec.containers.iter_mut().find(|c| c.name == name),
        None => spec.containers.first_mut(),
    }
    .ok_or_else(|| {
        ServingError::Unusable(format!(
            "Deployment {} has no container {}",
            serving.name,
            serving.container.as_deref().unwrap_or("(any)")
        ))
    })?;
    if let Some(env_name) = &serving.model_env {
        let env = container.env.get_or_insert_with(Vec::new);
        match env.iter_mut().find(|e| &e.name == env_name) {
            Some(var) => {
                var.value = Some(uri.to_string());
                var.value_from = None;
            }
            None => env.push(EnvVar { name: env_name.clone(), value: Some(uri.to_string()), value_from: None }),
        }
    } else if let Some(flag) = &serving.model_arg {
        let args = container.args.get_or_insert_with(Vec::new);
        let mut replaced = false;
        let mut i = 0;
        while i < args.len() {
            if args[i].starts_with(&format!("{flag}=")) {
                args[i] = format!("{flag}={uri}");
                replaced = true;
            } else if args[i] == *flag && i + 1 < args.len() {
                args[i + 1] = uri.to_string();
                replaced = true;
                i += 1;
            }
            i += 1;
        }
        if !replaced {
            args.push(format!("{flag}={uri}"));
        }
    }
    Ok(template)
}

/// What the model server is told to load: the verified local copy when there is a fetch, else the URI.
pub fn served_uri(rollout: &ModelRollout, fetch: Option<&ArtifactFetch>) -> String {
    fetch.map(ArtifactFetch::local_path).unwrap_or_else(|| rollout.spec.candidate.artifact.uri.clone())
}

/// The candidate's pod template: the model URI (or the verified copy's path) in the serving container and, with a
/// fetch, the verifying init container, the volume and its read-only mount.
fn candidate_template(
    template: PodTemplateSpec,
    rollout: &ModelRollout,
    serving: &DeploymentServing,
    fetch: Option<&ArtifactFetch>,
    check_image: &str,
) -> Result<PodTemplateSpec, ServingError> {
    let template = with_model_uri(template, serving, &served_uri(rollout, fetch))?;
    let Some(fetch) = fetch else { return Ok(template) };
    let container = pick_container(
        template.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default(),
        serving.container.as_deref(),
    )
    .map(|c| c.name.clone())
    .unwrap_or_default();
    let mut value = serde_json::to_value(&template).map_err(|err| ServingError::Unusable(err.to_string()))?;
    if let Some(pod) = value.get_mut("spec") {
        // A template from an earlier promotion already carries the fetch: replace it rather than add a second one.
        strip_verified_copy(pod);
        with_verified_copy(pod, fetch, check_image, &[container.as_str()]);
    }
    serde_json::from_value(value).map_err(|err| ServingError::Unusable(err.to_string()))
}

/// Removes an earlier fetch init container, volume and mounts from a pod spec.
fn strip_verified_copy(pod: &mut serde_json::Value) {
    let named = |v: &serde_json::Value, name: &str| v.get("name").and_then(|n| n.as_str()) == Some(name);
    if let Some(init) = pod.get_mut("initContainers").and_then(|c| c.as_array_mut()) {
        init.retain(|c| !named(c, crate::jobs::FETCH_CONTAINER));
    }
    if let Some(volumes) = pod.get_mut("volumes").and_then(|c| c.as_array_mut()) {
        volumes.retain(|v| !named(v, crate::jobs::MODEL_VOLUME));
    }
    for list in ["initContainers", "containers"] {
        for container in pod.get_mut(list).and_then(|c| c.as_array_mut()).into_iter().flatten() {
            if let Some(mounts) = container.get_mut("volumeMounts").and_then(|m| m.as_array_mut()) {
                mounts.retain(|m| !named(m, crate::jobs::MODEL_VOLUME));
            }
        }
    }
}

/// Creates or updates the canary Deployment (server-side apply): the baseline's pod template with the candidate's
/// URI, labelled `rampart.dev/role: canary` and owned by the rollout so it goes when the rollout is deleted. It gets
/// `replicas` pods, or the baseline's count when that is None.
pub async fn ensure_canary(
    client: &kube::Client,
    rollout: &ModelRollout,
    serving: &DeploymentServing,
    fetch: Option<&ArtifactFetch>,
    check_image: &str,
    replicas: Option<i32>,
) -> Result<(), ServingError> {
    let namespace = rollout.namespace().unwrap_or_default();
    let base = baseline(client, &namespace, &serving.name).await?;
    let base_spec = base
        .spec
        .clone()
        .ok_or_else(|| ServingError::Unusable(format!("Deployment {namespace}/{} has no spec", serving.name)))?;
    check_opt_in(&base.metadata, serving, &namespace).map_err(ServingError::Unusable)?;
    let version = &rollout.spec.candidate.version;
    let mut template = candidate_template(base_spec.template.clone(), rollout, serving, fetch, check_image)?;
    let labels = template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
    labels.insert(ROLE_LABEL.into(), "canary".into());
    labels.insert(VERSION_LABEL.into(), label_value(version));
    let mut selector = base_spec.selector.match_labels.clone().unwrap_or_default();
    selector.insert(ROLE_LABEL.into(), "canary".into());
    let owner = owner_reference(rollout);
    let name = canary_name(serving);
    check_canary_owner(client, &namespace, &name, &owner.uid).await?;
    let canary = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": {
                ROLE_LABEL: "canary",
                VERSION_LABEL: label_value(version),
                ROLLOUT_LABEL: label_value(&rollout.name_any()),
            },
            "annotations": {VERSION_ANNOTATION: version},
            "ownerReferences": [owner],
        },
        "spec": {
            "replicas": replicas.unwrap_or(base_spec.replicas.unwrap_or(1)),
            "selector": {"matchLabels": selector},
            "template": template,
        },
    });
    Api::<Deployment>::namespaced(client.clone(), &namespace)
        .patch(&name, &PatchParams::apply(rampart_api::FIELD_MANAGER).force(), &Patch::Apply(&canary))
        .await
        .map_err(|source| ServingError::Kube {
            action: format!("creating canary Deployment {namespace}/{name}"),
            source,
        })?;
    Ok(())
}

/// Sets the baseline Deployment's replicas (capacity-aware steps). A merge patch, so the apply that moves its template
/// on promotion never takes ownership of the field (and never resets it).
pub async fn scale_baseline(
    client: &kube::Client,
    namespace: &str,
    serving: &DeploymentServing,
    replicas: i32,
) -> Result<(), ServingError> {
    let base = baseline(client, namespace, &serving.name).await?;
    check_opt_in(&base.metadata, serving, namespace).map_err(ServingError::Unusable)?;
    if base.spec.as_ref().and_then(|s| s.replicas) == Some(replicas) {
        return Ok(());
    }
    scale(client, namespace, &serving.name, replicas).await
}

/// Sets the canary Deployment's replicas, creating it with that many when it is missing (zero leaves it missing).
/// A Deployment under the canary's name that this rollout did not create is refused.
pub async fn scale_canary(
    client: &kube::Client,
    rollout: &ModelRollout,
    serving: &DeploymentServing,
    replicas: i32,
    fetch: impl std::future::Future<Output = Result<Option<ArtifactFetch>, String>>,
    check_image: &str,
) -> Result<(), ServingError> {
    let namespace = rollout.namespace().unwrap_or_default();
    let name = canary_name(serving);
    let existing = Api::<Deployment>::namespaced(client.clone(), &namespace)
        .get_opt(&name)
        .await
        .map_err(|source| ServingError::Kube { action: format!("reading Deployment {namespace}/{name}"), source })?;
    match existing {
        None if replicas == 0 => Ok(()),
        None => {
            let fetch = fetch.await.map_err(ServingError::Unusable)?;
            ensure_canary(client, rollout, serving, fetch.as_ref(), check_image, Some(replicas)).await
        }
        Some(canary) if owned_by(&canary, &rollout.uid().unwrap_or_default()) => {
            if canary.spec.as_ref().and_then(|s| s.replicas) == Some(replicas) {
                return Ok(());
            }
            scale(client, &namespace, &name, replicas).await
        }
        Some(_) => Err(ServingError::Unusable(format!(
            "Deployment {namespace}/{name} exists and was not created by this rollout; Rampart neither scales nor \
             deletes it. Rename it, or delete it yourself if it is a leftover, then rampart retry"
        ))),
    }
}

async fn scale(client: &kube::Client, namespace: &str, name: &str, replicas: i32) -> Result<(), ServingError> {
    let patch = json!({"spec": {"replicas": replicas}});
    Api::<Deployment>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| ServingError::Kube {
            action: format!("scaling Deployment {namespace}/{name} to {replicas} replicas"),
            source,
        })?;
    Ok(())
}

/// True when `deployment` is owned by the rollout with uid `owner`.
fn owned_by(deployment: &Deployment, owner: &str) -> bool {
    deployment.metadata.owner_references.iter().flatten().any(|r| r.uid == owner && r.kind == "ModelRollout")
}

/// Refuses a Deployment under the canary's name that this rollout did not create (another team's, or another
/// rollout's): Rampart overwrites only its own canary.
async fn check_canary_owner(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    owner: &str,
) -> Result<(), ServingError> {
    match Api::<Deployment>::namespaced(client.clone(), namespace).get_opt(name).await {
        Ok(Some(existing)) if owned_by(&existing, owner) => Ok(()),
        Ok(Some(_)) => Err(ServingError::Unusable(format!(
            "Deployment {namespace}/{name} exists and was not created by this rollout; Rampart neither overwrites nor \
             deletes it. Rename it, or delete it yourself if it is a leftover, then rampart retry"
        ))),
        Ok(None) => Ok(()),
        Err(source) => Err(ServingError::Kube { action: format!("reading Deployment {namespace}/{name}"), source }),
    }
}

/// Deletes the canary Deployment if this rollout (uid `owner`) created it; a canary that is already gone is fine.
pub async fn delete_canary(
    client: &kube::Client,
    namespace: &str,
    serving: &DeploymentServing,
    owner: &str,
) -> Result<(), ServingError> {
    let name = canary_name(serving);
    let existing = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get_opt(&name)
        .await
        .map_err(|source| ServingError::Kube { action: format!("reading Deployment {namespace}/{name}"), source })?;
    // Gone already, or not this rollout's: nothing of ours to delete.
    let Some(uid) = existing.filter(|d| owned_by(d, owner)).and_then(|d| d.metadata.uid) else { return Ok(()) };
    // The uid precondition deletes exactly the Deployment that was checked, never one created under its name since.
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid).filter(|u| !u.is_empty()),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match Api::<Deployment>::namespaced(client.clone(), namespace).delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => {
            Err(ServingError::Kube { action: format!("deleting canary Deployment {namespace}/{name}"), source })
        }
    }
}

/// Moves the baseline Deployment to the candidate: its pod template gets the candidate's URI and its
/// `rampart.dev/model-version` label the candidate's version.
pub async fn promote_baseline(
    client: &kube::Client,
    rollout: &ModelRollout,
    serving: &DeploymentServing,
    fetch: Option<&ArtifactFetch>,
    check_image: &str,
) -> Result<(), ServingError> {
    let namespace = rollout.namespace().unwrap_or_default();
    let base = baseline(client, &namespace, &serving.name).await?;
    check_opt_in(&base.metadata, serving, &namespace).map_err(ServingError::Unusable)?;
    let spec = base
        .spec
        .ok_or_else(|| ServingError::Unusable(format!("Deployment {namespace}/{} has no spec", serving.name)))?;
    let template = candidate_template(spec.template, rollout, serving, fetch, check_image)?;
    let container = pick_container(
        template.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default(),
        serving.container.as_deref(),
    )
    .cloned()
    .ok_or_else(|| ServingError::Unusable(format!("Deployment {namespace}/{} has no container", serving.name)))?;
    // Apply only what Rampart owns: the model URI field of one container, and the version label.
    let mut owned = json!({"name": container.name});
    if let Some(env_name) = &serving.model_env {
        let value = container
            .env
            .as_ref()
            .and_then(|env| env.iter().find(|e| &e.name == env_name))
            .and_then(|e| e.value.clone());
        owned["env"] = json!([{"name": env_name, "value": value}]);
    } else {
        owned["args"] = json!(container.args);
    }
    // With a fetch, Rampart also owns the verifying init container, its volume and the serving container's mount of
    // it; without one (an unsigned or BeforeTrafficOnly candidate), leaving them out of this apply removes those
    // Rampart applied for an earlier version.
    let mut pod = json!({"containers": [owned]});
    if let Some(fetch) = fetch {
        pod["containers"][0]["volumeMounts"] = json!([{"name": crate::jobs::MODEL_VOLUME, "mountPath": rampart_checks::artifact::MODEL_DIR, "readOnly": true}]);
        pod["initContainers"] = json!([crate::jobs::fetch_init_container(fetch, check_image)]);
        pod["volumes"] = json!([{"name": crate::jobs::MODEL_VOLUME, "emptyDir": {}}]);
    }
    let patch = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": serving.name,
            "labels": {VERSION_LABEL: label_value(&rollout.spec.candidate.version)},
            "annotations": {VERSION_ANNOTATION: rollout.spec.candidate.version},
        },
        "spec": {"template": {"spec": pod}},
    });
    Api::<Deployment>::namespaced(client.clone(), &namespace)
        .patch(&serving.name, &PatchParams::apply(rampart_api::FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| ServingError::Kube {
            action: format!("moving baseline Deployment {namespace}/{} to the candidate", serving.name),
            source,
        })?;
    Ok(())
}

/// Why a canary pod's verifying init container refused the artifact, when one did: a pod whose `rampart-fetch` init
/// container ended with exit code 1 (not verified: a changed, added or missing file, or another model) never becomes
/// ready, and the rollout rolls back with this reason (which names the file and both digests). Exit code 2 (the
/// store could not be read) is not a verdict and is left to the pod's restarts.
pub async fn canary_fetch_refused(
    client: &kube::Client,
    namespace: &str,
    rollout: &ModelRollout,
) -> Result<Option<String>, kube::Error> {
    use k8s_openapi::api::core::v1::Pod;
    use rampart_checks::smoke::termination::TerminationMessage;
    let selector = format!("{ROLE_LABEL}=canary,{VERSION_LABEL}={}", label_value(&rollout.spec.candidate.version));
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&kube::api::ListParams::default().labels(&selector))
        .await?;
    for pod in pods.items {
        let statuses = pod.status.and_then(|s| s.init_container_statuses).unwrap_or_default();
        for status in statuses.into_iter().filter(|s| s.name == crate::jobs::FETCH_CONTAINER) {
            let ended = [status.state.and_then(|s| s.terminated), status.last_state.and_then(|s| s.terminated)];
            for terminated in ended.into_iter().flatten() {
                if terminated.exit_code != 1 {
                    continue;
                }
                let text = terminated.message.unwrap_or_default();
                let reason = match serde_json::from_str::<TerminationMessage>(text.trim()) {
                    Ok(message) if !message.reasons.is_empty() => message.reasons.join("; "),
                    Ok(message) => message.summary,
                    Err(_) => "the artifact did not match its signature".to_string(),
                };
                return Ok(Some(format!(
                    "canary pod {} did not start: its init container refused the artifact: {reason}",
                    pod.metadata.name.unwrap_or_default()
                )));
            }
        }
    }
    Ok(None)
}

/// True when the Deployment has rolled out its current template: observed, updated, ready and available.
pub fn is_rolled_out(deployment: &Deployment) -> bool {
    let want = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = &deployment.status else { return false };
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) >= want
        && status.ready_replicas.unwrap_or(0) >= want
        && status.available_replicas.unwrap_or(0) >= want
}

/// An owner reference pointing at the rollout (so deleting the rollout deletes its canary).
pub fn owner_reference(rollout: &ModelRollout) -> OwnerReference {
    OwnerReference {
        api_version: ModelRollout::api_version(&()).into_owned(),
        kind: ModelRollout::kind(&()).into_owned(),
        name: rollout.name_any(),
        uid: rollout.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn template(container: Container) -> PodTemplateSpec {
        PodTemplateSpec { metadata: None, spec: Some(PodSpec { containers: vec![container], ..Default::default() }) }
    }

    fn serving(env: Option<&str>, arg: Option<&str>) -> DeploymentServing {
        DeploymentServing {
            name: "fraud".into(),
            container: None,
            model_env: env.map(Into::into),
            model_arg: arg.map(Into::into),
            capacity: None,
        }
    }

    fn annotated(pairs: &[(&str, &str)]) -> kube::api::ObjectMeta {
        kube::api::ObjectMeta {
            annotations: Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn a_rollout_may_set_only_the_variable_or_flag_the_deployment_names() {
        let env = serving(Some("MODEL_URI"), None);
        assert!(check_opt_in(&annotated(&[(MODEL_ENV_ANNOTATION, "MODEL_URI")]), &env, "ml").is_ok());
        let attack = serving(Some("JAVA_TOOL_OPTIONS"), None);
        let err = check_opt_in(&annotated(&[(MODEL_ENV_ANNOTATION, "MODEL_URI")]), &attack, "ml").unwrap_err();
        assert!(err.contains("lets rollouts set only MODEL_URI") && err.contains("JAVA_TOOL_OPTIONS"), "{err}");
        let err = check_opt_in(&kube::api::ObjectMeta::default(), &env, "ml").unwrap_err();
        assert!(err.contains("has not opted in") && err.contains("rampart.dev/model-uri-env: MODEL_URI"), "{err}");
        // An env opt-in does not open the flags, nor the other way round.
        let arg = serving(None, Some("--model"));
        assert!(check_opt_in(&annotated(&[(MODEL_ENV_ANNOTATION, "--model")]), &arg, "ml").is_err());
        assert!(check_opt_in(&annotated(&[(MODEL_ARG_ANNOTATION, "--model")]), &arg, "ml").is_ok());
    }

    #[test]
    fn sets_the_model_env_var_replacing_the_old_value() {
        let c = Container {
            name: "server".into(),
            env: Some(vec![EnvVar { name: "MODEL_URI".into(), value: Some("s3://old".into()), value_from: None }]),
            ..Default::default()
        };
        let s = serving(Some("MODEL_URI"), None);
        let out = with_model_uri(template(c), &s, "s3://new").unwrap();
        let env = out.spec.unwrap().containers[0].env.clone().unwrap();
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].value.as_deref(), Some("s3://new"));
    }

    #[test]
    fn sets_the_model_flag_in_either_form() {
        let s = serving(None, Some("--model"));
        for (args, expected) in [
            (vec!["--port=8080", "--model=s3://old"], vec!["--port=8080", "--model=s3://new"]),
            (vec!["--model", "s3://old", "--port=1"], vec!["--model", "s3://new", "--port=1"]),
            (vec!["--port=1"], vec!["--port=1", "--model=s3://new"]),
        ] {
            let c = Container {
                name: "server".into(),
                args: Some(args.iter().map(|a| a.to_string()).collect()),
                ..Default::default()
            };
            let out = with_model_uri(template(c.clone()), &s, "s3://new").unwrap();
            assert_eq!(out.spec.unwrap().containers[0].args.clone().unwrap(), expected);
            let d = Deployment {
                spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec { template: template(c), ..Default::default() }),
                ..Default::default()
            };
            assert_eq!(current_uri(&d, &s).as_deref(), Some("s3://old").filter(|_| args.len() > 1));
        }
    }
}
