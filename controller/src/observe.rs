//! Gathers what a decision asked to see ([`Need`]) and nothing more: the signature and the baseline when a rollout
//! starts, a check Job, one analysis look from Prometheus, or where promotion stands.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::DynamicObject;
use kube::{Api, ResourceExt};
use rampart_api::ModelRollout;

use crate::decide::capacity::{self, CapacityObservation};
use crate::decide::{BaselineFacts, BaselineState, Need, Observation, PromotionObservation, StartObservation};
use crate::jobs::{self, Check, JobState};
use crate::look::{self, LookWindow};
use crate::reconcile::Context;
use crate::{outbox, serving, traffic, verify};

/// Observes what `need` names. Failures the user can act on become part of the observation (the decision turns them
/// into a message); only failures to talk to the API server are errors.
pub async fn observe(ctx: &Context, rollout: &ModelRollout, need: &Need) -> Result<Observation, crate::Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let id = format!("{namespace}/{}", rollout.name_any());
    let status = rollout.status.clone().unwrap_or_default();
    Ok(match need {
        Need::Start => {
            let signature = verify::verify_candidate(
                &ctx.client,
                rollout,
                &ctx.trusted_keys,
                &ctx.config.key_scopes,
                ctx.config.allow_insecure_skip_signature,
            )
            .await;
            let baseline =
                if signature.is_ok() { resolve_baseline(ctx, rollout).await } else { Ok(Default::default()) };
            Observation::Start(StartObservation { signature, baseline })
        }
        Need::Job { check, started: false } => {
            let job = wanted_job(ctx, rollout, *check, &status).await;
            Observation::JobToCreate { check: *check, job: job.map(Box::new) }
        }
        Need::Job { check, started: true } => {
            let name = jobs::job_name(&rollout.name_any(), *check);
            let wanted = wanted_job(ctx, rollout, *check, &status).await;
            let (state, curve) =
                jobs::job_state(&ctx.client, &namespace, &name, wanted.as_ref().map_err(String::as_str))
                    .await
                    .map_err(|source| crate::Error::Checks {
                        rollout: id.clone(),
                        action: format!("read the {} check Job {name}", check.as_str()),
                        source,
                    })?;
            // A passed artifact Job's verification goes to the registry with the bundle it checked against, which the
            // outbox verifies again before applying it; read here, from where the spec points, not from status.
            let state = match state {
                JobState::Passed(summary, files, _) if *check == Check::Artifact => {
                    let bundle = verify::load_bundle(&ctx.client, rollout).await.ok();
                    JobState::Passed(summary, files, bundle)
                }
                other => other,
            };
            Observation::Job { check: *check, state, curve }
        }
        Need::Look { since } | Need::ShadowLook { since } => {
            // What is read: the spec's metrics (analysis step), or the pairing counters of the current shadow step.
            let analysis = rollout.spec.analysis.as_ref();
            let shadow_model = matches!(need, Need::ShadowLook { .. }).then(|| {
                let step = status.current_step.and_then(|i| usize::try_from(i).ok());
                let shadow = step.and_then(|i| rollout.spec.steps.get(i)).and_then(|s| s.shadow.as_ref());
                shadow.and_then(|s| s.model_label.clone()).unwrap_or_else(|| rollout.spec.model.clone())
            });
            if shadow_model.is_none() && analysis.is_none() {
                return Ok(Observation::Look(Ok(Default::default())));
            }
            let url = analysis
                .and_then(|a| a.prometheus_address.clone())
                .unwrap_or_else(|| ctx.config.prometheus_url.clone());
            // Checked again for every look: the spec stays editable after the start gate.
            let counts =
                match ctx.settings.prometheus_allow.check(&url).map_err(|why| why.to_string()).and_then(|()| {
                    ctx.prometheus.get(&url, ctx.config.prometheus_timeout).map_err(|err| err.to_string())
                }) {
                    Ok(prometheus) => {
                        let window = LookWindow {
                            namespace: &namespace,
                            canary_version: &rollout.spec.candidate.version,
                            baseline_version: status.baseline_version.as_deref().unwrap_or_default(),
                            since: *since,
                            until: jiff::Timestamp::now(),
                        };
                        // One deadline for the whole look: a slow endpoint cannot hold this reconcile slot for long.
                        let deadline = ctx.config.prometheus_look_deadline;
                        let taken = async {
                            match (&shadow_model, analysis) {
                                (Some(model), _) => {
                                    look::take_shadow(&prometheus, &look::ShadowLabels { model }, &window).await
                                }
                                (None, Some(analysis)) => look::take(&prometheus, analysis, &window).await,
                                (None, None) => Ok(Default::default()),
                            }
                        };
                        match tokio::time::timeout(deadline, taken).await {
                            Ok(result) => result.map_err(|err| crate::prometheus::sanitise(&err.to_string(), 600)),
                            Err(_) => Err(format!(
                                "Prometheus at {} did not answer this look's queries within {} s",
                                crate::prometheus::sanitise(&url, 200),
                                deadline.as_secs_f64()
                            )),
                        }
                    }
                    Err(err) => Err(err),
                };
            if let Err(err) = &counts {
                ctx.metrics.count_error("prometheus");
                tracing::info!(rollout = %id, error = %err, "analysis look without metrics");
            }
            Observation::Look(counts)
        }
        Need::Promotion => {
            let registry = match &ctx.registry {
                Some(connection) => {
                    let uid = rollout.uid().unwrap_or_default();
                    outbox::record_promotion(connection, &rollout.spec, &status, &uid, &ctx.config.identity).await
                }
                None => Ok(()),
            };
            let mut baseline_replicas = None;
            let mut capacity = None;
            let baseline = match (&registry, &rollout.spec.serving.deployment) {
                (Ok(()), Some(deployment)) => {
                    let base = serving::baseline(&ctx.client, &namespace, &deployment.name)
                        .await
                        .map_err(|err| crate::Error::Serving { rollout: id.clone(), message: err.to_string() })?;
                    baseline_replicas = Some(base.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1));
                    if status.capacity.is_some() {
                        capacity = Some(capacity_with(ctx, &namespace, deployment, &base).await);
                    }
                    let fetch = serving_fetch(ctx, rollout)
                        .await
                        .map_err(|message| crate::Error::Serving { rollout: id.clone(), message })?;
                    let serves_candidate = serving::served_version(&base.metadata).as_ref()
                        == Some(&rollout.spec.candidate.version)
                        && serving::current_uri(&base, deployment).as_deref()
                            == Some(serving::served_uri(rollout, fetch.as_ref()).as_str());
                    if !serves_candidate {
                        BaselineState::ServesPrevious
                    } else if serving::is_rolled_out(&base) {
                        BaselineState::RolledOut
                    } else {
                        BaselineState::RollingOut
                    }
                }
                _ => BaselineState::NotApplicable,
            };
            Observation::Promotion(PromotionObservation { registry, baseline, capacity, baseline_replicas })
        }
        Need::Capacity => match &rollout.spec.serving.deployment {
            Some(deployment) => Observation::Capacity(capacity_seen(ctx, &namespace, deployment).await),
            None => Observation::Capacity(Err("capacity-aware steps need spec.serving.deployment".into())),
        },
    })
}

/// The baseline's and the canary's replicas (the canary counts as zero pods while it does not exist).
async fn capacity_seen(
    ctx: &Context,
    namespace: &str,
    deployment: &rampart_api::v1alpha1::DeploymentServing,
) -> Result<CapacityObservation, String> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let base = api
        .get_opt(&deployment.name)
        .await
        .map_err(|err| format!("reading Deployment {namespace}/{}: {err}", deployment.name))?
        .ok_or_else(|| format!("the baseline Deployment {namespace}/{} is gone", deployment.name))?;
    capacity_with(ctx, namespace, deployment, &base).await
}

/// [`capacity_seen`] with the baseline already read.
async fn capacity_with(
    ctx: &Context,
    namespace: &str,
    deployment: &rampart_api::v1alpha1::DeploymentServing,
    base: &Deployment,
) -> Result<CapacityObservation, String> {
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let pods = |d: &Deployment| capacity::Pods {
        wanted: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
    };
    let canary_name = serving::canary_name(deployment);
    let canary = api
        .get_opt(&canary_name)
        .await
        .map_err(|err| format!("reading Deployment {namespace}/{canary_name}: {err}"))?;
    Ok(CapacityObservation { baseline: pods(base), canary: canary.as_ref().map(pods).unwrap_or_default() })
}

/// The Job Rampart runs for `check` now, from the spec (and the baseline URI the start gate recorded), or why it
/// cannot be built.
async fn wanted_job(
    ctx: &Context,
    rollout: &ModelRollout,
    check: Check,
    status: &rampart_api::ModelRolloutStatus,
) -> Result<k8s_openapi::api::batch::v1::Job, String> {
    let fetch = candidate_fetch(ctx, rollout).await?;
    match check {
        Check::Artifact => match &fetch {
            Some(fetch) => jobs::artifact_job(rollout, &ctx.config, fetch),
            None => Err("the candidate is not signed, so there is no manifest to verify it against".into()),
        },
        Check::Contract => match status.stable_uri.as_deref() {
            Some(baseline) => jobs::contract_job(rollout, &ctx.config, baseline, fetch.as_ref()),
            None => Err("the baseline's model URI is unknown, so there is nothing to compare with".into()),
        },
        Check::SmokeTraining => match rollout.spec.checks.as_ref().and_then(|c| c.smoke_training.as_ref()) {
            Some(smoke) => jobs::smoke_job(rollout, smoke, &ctx.config, fetch.as_ref()),
            None => Err("no smoke-training settings".into()),
        },
    }
}

/// The baseline's version label and current model URI. Errors are messages for the user.
async fn resolve_baseline(ctx: &Context, rollout: &ModelRollout) -> Result<BaselineFacts, String> {
    let spec = &rollout.spec;
    let namespace = rollout.namespace().unwrap_or_default();
    let explicit = spec.baseline.as_ref().and_then(|b| b.version.clone());
    let needs_version = spec.steps.iter().any(|s| s.analysis.is_some());
    let mut pods = (None, None);
    let (labelled, uri) = if let Some(deployment) = &spec.serving.deployment {
        let base = serving::baseline(&ctx.client, &namespace, &deployment.name).await.map_err(|err| {
            format!("{err}; create the baseline Deployment in namespace {namespace}, then rampart retry")
        })?;
        serving::check_opt_in(&base.metadata, deployment, &namespace)?;
        if let Some(gateway) = spec.traffic.as_ref().and_then(|t| t.gateway_api.as_ref()) {
            let routes: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), &namespace, &traffic::httproute_resource());
            routes
                .get(&gateway.http_route)
                .await
                .map_err(|err| format!("HTTPRoute {namespace}/{} cannot be read: {err}", gateway.http_route))?;
        }
        if let Some(base_spec) = &base.spec {
            pods = (Some(base_spec.replicas.unwrap_or(1)), Some(capacity::gpus_per_pod(&base_spec.template)));
        }
        (serving::served_version(&base.metadata), serving::current_uri(&base, deployment))
    } else if let Some(kserve) = &spec.serving.kserve {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &namespace, &traffic::inference_service_resource());
        let isvc = api.get(&kserve.inference_service).await.map_err(|err| {
            format!("InferenceService {namespace}/{} cannot be read: {err}", kserve.inference_service)
        })?;
        let uri = isvc.data.pointer("/spec/predictor/model/storageUri").and_then(|v| v.as_str()).map(str::to_string);
        (serving::served_version(&isvc.metadata), uri)
    } else {
        return Err("spec.serving names no backend".into());
    };
    let version = explicit.or(labelled);
    if version.is_none() && needs_version {
        return Err(format!(
            "cannot tell which version the baseline serves, which the metric queries need for {{{{version}}}}: set \
             spec.baseline.version, or label the baseline with {}: <version>",
            serving::VERSION_LABEL
        ));
    }
    Ok(BaselineFacts { version, uri, replicas: pods.0, gpus_per_pod: pods.1 })
}

/// The verifying fetch for the candidate's check Jobs and serving pods: every candidate but an `insecureSkipSignature`
/// one (which the start gate let through only if this controller allows it) is fetched through `rampart-check fetch`.
/// Decided from the spec and the bundle, read and checked again here against the controller's keys, never from status
/// (which someone with `modelrollouts/status` could write). `Ok(None)` for an allowed unsigned candidate.
pub async fn candidate_fetch(ctx: &Context, rollout: &ModelRollout) -> Result<Option<jobs::ArtifactFetch>, String> {
    let signer = verify::verify_candidate(
        &ctx.client,
        rollout,
        &ctx.trusted_keys,
        &ctx.config.key_scopes,
        ctx.config.allow_insecure_skip_signature,
    )
    .await?;
    match signer {
        Some(signer) => jobs::ArtifactFetch::for_candidate(rollout, &signer, &ctx.trusted_keys).map(Some),
        None => Ok(None),
    }
}

/// The verifying fetch for serving pods: the candidate's fetch unless the rollout opted out
/// (`verification: BeforeTrafficOnly`).
pub async fn serving_fetch(ctx: &Context, rollout: &ModelRollout) -> Result<Option<jobs::ArtifactFetch>, String> {
    let mode = rollout.spec.candidate.artifact.verification.unwrap_or_default();
    if mode == rampart_api::v1alpha1::ArtifactVerification::BeforeTrafficOnly {
        return Ok(None);
    }
    candidate_fetch(ctx, rollout).await
}
