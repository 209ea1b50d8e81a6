//! The reconcile: read, decide, act, write once. [`decide`](crate::decide) says what to do from plain data; this file
//! carries it out: it drains the registry outbox, gathers what the decision asked to see, makes the changes it
//! named (rollback traffic first), writes status with server-side apply only when something changed, and publishes
//! the transition's Event.
//!
//! Freshness: the watch cache can lag behind this controller's own last status write, and acting on a stale copy
//! could repeat a step or undo a rollback. The resourceVersion of every status write is remembered per rollout; a
//! cached copy older than it waits for the watch to catch up instead of acting. The write itself carries the read's
//! resourceVersion, so a concurrent change fails with 409 and is retried.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use rampart_api::{ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RETRY, ModelRollout, ModelRolloutStatus, Phase};
use tokio::sync::watch;

use crate::config::ControllerConfig;
use crate::decide::{self, Act, DecideError, Decision, Effect, Facts, Intent, Observation, Requeue, Settings};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::status::truncate;
use crate::trail::RegistryConnection;
use crate::{claims, jobs, look, observe, outbox, seal, serving, traffic};

/// What every reconcile needs.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The controller's configuration.
    pub config: ControllerConfig,
    /// What the configuration contributes to decisions.
    pub settings: Settings,
    /// The controller's own metrics.
    pub metrics: Metrics,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// True while this replica holds the leader lease.
    pub leader: watch::Receiver<bool>,
    /// The registry, when the controller has a database URL.
    pub registry: Option<Arc<RegistryConnection>>,
    /// Public keys whose signatures the controller accepts.
    pub trusted_keys: Arc<Vec<rampart_checks::signing::TrustedKey>>,
    /// Pauses outbox flushes after the registry failed them.
    pub outbox_backoff: outbox::Backoff,
    /// Prometheus clients by address.
    pub prometheus: look::Clients,
    /// The resourceVersion of this controller's last status write, per rollout uid.
    pub written: Mutex<HashMap<String, u64>>,
    /// Hands written statuses to the notification task (None: no sinks, or no registry for the queue).
    pub notifier: Option<crate::notify::Notifier>,
    /// Canary pods that changed since their rollout last looked at them, as (namespace, version label): the pod
    /// watch marks them, and a rollout lists its canary pods (for a refused artifact) only when marked.
    pub canary_pods_changed: Arc<Mutex<HashSet<(String, String)>>>,
    /// Seals the status fields that gate traffic (see [`crate::seal`]); None: status is not checked.
    pub status_key: Option<rampart_analysis::StateKey>,
    /// Reconciles running per namespace (see [`NamespaceSlot`]).
    pub namespace_slots: Arc<Mutex<HashMap<String, u16>>>,
}

/// One of a namespace's reconcile slots, given back when dropped. A namespace has at most
/// `max_reconciles_per_namespace` at once; a reconcile that finds none free comes back shortly instead of waiting in
/// one of the controller's slots.
pub struct NamespaceSlot {
    slots: Arc<Mutex<HashMap<String, u16>>>,
    namespace: String,
}

impl NamespaceSlot {
    /// Takes a slot of `namespace`, or None when it has `limit` running (a limit of 0 never refuses).
    pub fn take(slots: &Arc<Mutex<HashMap<String, u16>>>, namespace: &str, limit: u16) -> Option<NamespaceSlot> {
        let mut running = slots.lock().unwrap_or_else(|p| p.into_inner());
        let count = running.entry(namespace.to_string()).or_insert(0);
        if limit > 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(NamespaceSlot { slots: slots.clone(), namespace: namespace.to_string() })
    }
}

impl Drop for NamespaceSlot {
    fn drop(&mut self) {
        let mut running = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = running.get_mut(&self.namespace) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.namespace);
            }
        }
    }
}

impl Context {
    /// A context for `config`.
    pub fn new(
        client: kube::Client,
        config: ControllerConfig,
        metrics: Metrics,
        recorder: Recorder,
        leader: watch::Receiver<bool>,
    ) -> Self {
        let settings = Settings {
            registry: config.database_url.is_some(),
            metrics_settle: config.metrics_settle,
            default_analysis_interval: config.default_analysis_interval,
            analysis_status_interval: config.analysis_status_interval,
            smoke_image_allow_list: config.smoke_image_allow_list.clone(),
            state_key: random_state_key(),
            prometheus_allow: crate::prometheus::AllowList::new(
                &config.prometheus_url,
                &config.prometheus_allowed_urls,
            )
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, "the Prometheus allow-list does not parse; no rollout may name one");
                Default::default()
            }),
        };
        Context {
            registry: config
                .database_url
                .as_deref()
                .map(|url| Arc::new(RegistryConnection::new(url).with_shared_models(config.shared_models))),
            trusted_keys: Arc::new(config.trusted_keys.clone()),
            client,
            config,
            settings,
            metrics,
            recorder,
            leader,
            outbox_backoff: Default::default(),
            prometheus: Default::default(),
            written: Default::default(),
            notifier: None,
            canary_pods_changed: Default::default(),
            status_key: None,
            namespace_slots: Default::default(),
        }
    }
}

/// A fresh key for sealing analysis states, from the kernel's random source. Per process: after a restart or a
/// change of leader the running analyses start over from their totals (at worst a reset, never a forged Pass).
fn random_state_key() -> Option<rampart_analysis::StateKey> {
    match seal::random_bytes() {
        Ok(bytes) => Some(rampart_analysis::StateKey::new(&bytes)),
        Err(err) => {
            tracing::warn!(error = %err, "no random source for sealing analysis state; states are only checked");
            None
        }
    }
}

/// Reconciles one rollout, timing it and counting failures by kind.
pub async fn reconcile(rollout: Arc<ModelRollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let Some(_slot) = NamespaceSlot::take(&ctx.namespace_slots, &namespace, ctx.config.max_reconciles_per_namespace)
    else {
        ctx.metrics.count_error("namespace_busy");
        return Ok(Action::requeue(Duration::from_millis(200)));
    };
    let started = Instant::now();
    let result = match current(&rollout, &ctx).await {
        Ok(Some(current)) => run(&current, &ctx).await,
        Ok(None) => Ok(Action::requeue(Duration::from_millis(500))),
        Err(err) => Err(err),
    };
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    if let Err(err) = &result {
        ctx.metrics.count_error(err.metric_label());
    }
    result
}

/// The rollout to act on: the cached copy when it is at least as new as this controller's last status write, a fresh
/// read when its resourceVersion cannot be compared, or None (wait for the watch) when the cache is behind.
async fn current(rollout: &Arc<ModelRollout>, ctx: &Context) -> Result<Option<ModelRollout>, Error> {
    let uid = rollout.uid().unwrap_or_default();
    let written = ctx.written.lock().unwrap_or_else(|p| p.into_inner()).get(&uid).copied();
    let cached = rollout.resource_version().and_then(|rv| rv.parse::<u64>().ok());
    match (written, cached) {
        (None, _) => Ok(Some((**rollout).clone())),
        (Some(written), Some(cached)) if cached >= written => Ok(Some((**rollout).clone())),
        (Some(_), Some(_)) => Ok(None),
        (Some(_), None) => {
            let namespace = rollout.namespace().unwrap_or_default();
            Api::<ModelRollout>::namespaced(ctx.client.clone(), &namespace).get_opt(&rollout.name_any()).await.map_err(
                |source| Error::Kube {
                    rollout: format!("{namespace}/{}", rollout.name_any()),
                    action: "read the rollout".into(),
                    source,
                },
            )
        }
    }
}

/// Requeues failed reconciles soon: most failures (API conflicts, blips) are transient; a write conflict (someone
/// changed the rollout since it was read) is retried at once.
pub fn error_policy(rollout: Arc<ModelRollout>, error: &Error, _ctx: Arc<Context>) -> Action {
    if error.is_conflict() {
        return Action::requeue(Duration::from_millis(100));
    }
    if !matches!(error, Error::NotLeader) {
        tracing::warn!(rollout = %rollout.name_any(), namespace = ?rollout.namespace(), %error, "reconcile failed");
    }
    Action::requeue(Duration::from_secs(2))
}

/// Read the intent, decide (observing what the decision asks for), act.
async fn run(rollout: &ModelRollout, ctx: &Context) -> Result<Action, Error> {
    if !*ctx.leader.borrow() {
        return Err(Error::NotLeader);
    }
    let namespace = rollout.namespace().unwrap_or_default();
    let name = rollout.name_any();
    let uid = rollout.uid().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    let read = rollout.status.clone().unwrap_or_default();
    // Is this status Rampart's? A status someone else wrote decides nothing: not its phase, its checks or its targets.
    let status_trust = seal::trust(ctx.status_key.as_ref(), &uid, &read);
    if status_trust == seal::Trust::Forged {
        ctx.metrics.count_error("forged_status");
        tracing::warn!(rollout = %id, "the status was not written by Rampart (its seal does not match)");
    }

    // Registry records queued by earlier reconciles go first; the trimmed outbox is written with this decision.
    let mut status = read.clone();
    let mut registry_refused = None;
    if status_trust == seal::Trust::Forged {
        status.targets = None;
    }
    if let Some(connection) = &ctx.registry
        && let Some(queued) = read.outbox.as_deref().filter(|o| !o.is_empty())
    {
        let owner = outbox::Owner {
            uid: &uid,
            namespace: &namespace,
            name: &name,
            spec: &rollout.spec,
            trusted_keys: &ctx.trusted_keys,
            key_scopes: &ctx.config.key_scopes,
        };
        let flushed = outbox::flush(connection, &ctx.outbox_backoff, &owner, queued).await;
        if flushed.failed {
            ctx.metrics.count_error("registry");
        }
        for _ in 0..flushed.forged {
            ctx.metrics.count_error("forged_record");
        }
        if let Some(rest) = flushed.remaining {
            status.outbox = (!rest.is_empty()).then_some(rest);
        }
        registry_refused = flushed.refused;
    }

    // Targets: one rollout holds a Deployment (or InferenceService) and its HTTPRoute at a time. Claimed (again)
    // before traffic, and whenever this attempt has not taken them yet (also when deleting, since returning traffic
    // means acting on them); afterwards the attempt acts on the targets it froze, whatever the spec says now.
    let now = Timestamp::now();
    let phase = status.phase.unwrap_or(Phase::Pending);
    let mut target_holder = None;
    let before_traffic = matches!(phase, Phase::Pending | Phase::Verifying | Phase::Checking);
    let deleting = rollout.metadata.deletion_timestamp.is_some();
    // A forged status's targets were dropped above: the targets are claimed again from the spec, whatever the phase
    // says, so that traffic can be returned on them.
    if (status_trust == seal::Trust::Forged && !deleting)
        || (!phase.is_terminal()
            && phase != Phase::RollingBack
            && (status.targets.is_none() || (before_traffic && !deleting)))
    {
        let wanted = status.targets.clone().unwrap_or_else(|| claims::spec_targets(rollout));
        let claimed = claims::claim(&ctx.client, rollout, &claims::targets_of(&wanted))
            .await
            .map_err(|source| Error::Claim { rollout: id.clone(), source })?;
        match claimed {
            claims::Claim::Held => {
                status.targets.get_or_insert(wanted);
                claims::note_held(&mut status, now, rollout.metadata.generation);
            }
            claims::Claim::HeldBy(holder) => target_holder = Some(holder),
        }
    }
    claims::note_frozen(&mut status, &claims::spec_targets(rollout), now, rollout.metadata.generation);
    let effective = claims::effective(rollout, &status);
    let rollout = &effective;

    let annotations = rollout.annotations();
    let intent = Intent {
        promote: annotations.contains_key(ANNOTATION_PROMOTE),
        abort: annotations.contains_key(ANNOTATION_ABORT),
        retry: annotations.get(ANNOTATION_RETRY).cloned(),
    };
    // A canary pod whose verifying init container refused the artifact is a reason to roll back, whatever step runs.
    // The pods are listed only when the pod watch saw one of this version's canary pods change since the last look.
    // In other phases the mark is dropped, so the set holds only versions of running rollouts.
    let canary_key = (namespace.clone(), crate::labels::label_value(&rollout.spec.candidate.version));
    let marked = canary_pods_take(ctx, &canary_key);
    let canary_refused = if matches!(phase, Phase::Progressing | Phase::Paused)
        && rollout.spec.serving.deployment.is_some()
        && marked
    {
        let refused = serving::canary_fetch_refused(&ctx.client, &namespace, rollout).await;
        // Look again next time unless the pods were read and none refused: a refusal found here is found again if
        // this reconcile fails before the rollback is written.
        if !matches!(refused, Ok(None)) {
            canary_pods_mark(ctx, canary_key);
        }
        refused
            .map_err(|err| Error::Serving { rollout: id.clone(), message: format!("reading the canary pods: {err}") })?
    } else {
        None
    };
    let mut facts = Facts {
        uid: &uid,
        namespace: &namespace,
        name: &name,
        generation: rollout.metadata.generation,
        spec: &rollout.spec,
        status: &status,
        intent: &intent,
        settings: &ctx.settings,
        now,
        deleted_at: rollout.metadata.deletion_timestamp.as_ref().map(|t| t.0),
        has_finalizer: rollout.finalizers().iter().any(|f| f == decide::FINALIZER),
        registry_refused,
        target_holder,
        observed: Observation::Nothing,
        canary_refused,
        status_trust,
    };
    let spec_error = |err: DecideError| match err {
        DecideError::Spec(message) => Error::InvalidSpec { rollout: id.clone(), message },
        DecideError::Analysis(source) => Error::Analysis { rollout: id.clone(), source },
    };
    let mut decision = decide::decide(&facts).map_err(spec_error)?;
    let mut observed_at = None;
    if let Decision::Observe(need) = &decision {
        facts.observed = observe::observe(ctx, rollout, need).await?;
        observed_at = Some(Instant::now());
        decision = decide::decide(&facts).map_err(spec_error)?;
    }
    let Decision::Act(act) = decision else {
        return Err(Error::InvalidSpec { rollout: id, message: "the decision asked to observe twice".into() });
    };
    carry_out(ctx, rollout, &read, *act, observed_at).await
}

/// Makes the decision's changes in order, writes status once when it changed, publishes the Event.
/// Takes the pod watch's mark for a version's canary pods: true when they changed since the last look.
fn canary_pods_take(ctx: &Context, key: &(String, String)) -> bool {
    ctx.canary_pods_changed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key)
}

/// Marks a version's canary pods as changed (for the next reconcile to look at).
pub fn canary_pods_mark(ctx: &Context, key: (String, String)) {
    ctx.canary_pods_changed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key);
}

async fn carry_out(
    ctx: &Context,
    rollout: &ModelRollout,
    read: &ModelRolloutStatus,
    mut act: Act,
    observed_at: Option<Instant>,
) -> Result<Action, Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let id = format!("{namespace}/{}", rollout.name_any());
    // The status write carries the read's resourceVersion, or the one a finalizer change returned.
    let mut resource_version = rollout.resource_version();
    for effect in &act.effects.clone() {
        let (changed, missing) = apply(ctx, rollout, &act.status, effect).await?;
        if let Some(changed) = changed {
            resource_version = Some(changed);
        }
        if let Some(missing) = missing {
            // Counted as weight 0, and said so: the rollback does not wait for an object someone deleted.
            let generation = rollout.metadata.generation;
            crate::status::set_condition(
                &mut act.status,
                "TrafficTargetFound",
                "False",
                "Missing",
                &missing,
                Timestamp::now(),
                generation,
            );
        }
        if let (Effect::RouteAllToBaseline { after_failing_verdict: true }, Some(at)) = (effect, observed_at) {
            let latency = at.elapsed();
            ctx.metrics.rollback_latency.observe(latency.as_secs_f64());
            tracing::info!(rollout = %id, latency_ms = latency.as_secs_f64() * 1000.0, "canary weight is 0 after a failing verdict");
        }
    }
    if let Some(key) = &ctx.status_key {
        seal::seal(key, &rollout.uid().unwrap_or_default(), &mut act.status);
    }
    let released = act.effects.contains(&Effect::ReleaseFinalizer);
    let ended = act.status.phase.is_some_and(|p| p.is_terminal()) && !read.phase.is_some_and(|p| p.is_terminal());
    if (released || ended)
        && let Some(targets) = &act.status.targets
    {
        let uid = rollout.uid().unwrap_or_default();
        claims::release(&ctx.client, &namespace, &uid, &claims::targets_of(targets)).await;
    }
    if act.status != *read && !released {
        write_status(ctx, rollout, resource_version, &act.status).await?;
        if let Some(notifier) = &ctx.notifier {
            // Only hands the new status over (never waits); the notification task queues and sends.
            let mut written = rollout.clone();
            written.status = Some(act.status.clone());
            notifier.offer(written);
        }
        if let Some(analysis) = &act.status.analysis
            && read.analysis.as_ref() != Some(analysis)
        {
            for metric in analysis.metrics.iter().flatten() {
                ctx.metrics.set_verdict(&namespace, &rollout.name_any(), &metric.name, metric.verdict);
            }
        }
    }
    ctx.metrics.set_rollout(
        &namespace,
        &rollout.name_any(),
        act.status.phase.unwrap_or(Phase::Pending),
        act.status.canary_weight.unwrap_or(0),
    );
    if let Some(note) = &act.event {
        publish(ctx, rollout, note).await;
    }
    Ok(match act.requeue {
        Requeue::After(after) => Action::requeue(after),
        Requeue::OnChange => Action::await_change(),
    })
}

/// Carries out one effect. Returns the rollout's new resourceVersion when the effect changed the rollout itself, and
/// why a traffic object was counted as weight 0 when it no longer exists.
async fn apply(
    ctx: &Context,
    rollout: &ModelRollout,
    status: &ModelRolloutStatus,
    effect: &Effect,
) -> Result<(Option<String>, Option<String>), Error> {
    if let Effect::AddFinalizer | Effect::ReleaseFinalizer = effect {
        return set_finalizer(ctx, rollout, matches!(effect, Effect::AddFinalizer)).await.map(|rv| (Some(rv), None));
    }
    apply_to_cluster(ctx, rollout, status, effect).await.map(|missing| (None, missing))
}

/// Adds or removes Rampart's finalizer with server-side apply under its own field manager, so other finalizers on
/// the rollout are left alone.
async fn set_finalizer(ctx: &Context, rollout: &ModelRollout, present: bool) -> Result<String, Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let finalizers: Vec<&str> = if present { vec![decide::FINALIZER] } else { vec![] };
    let patch = serde_json::json!({
        "apiVersion": ModelRollout::api_version(&()),
        "kind": ModelRollout::kind(&()),
        "metadata": {"name": rollout.name_any(), "finalizers": finalizers},
    });
    let params = PatchParams::apply(FINALIZER_MANAGER).force();
    let changed = Api::<ModelRollout>::namespaced(ctx.client.clone(), &namespace)
        .patch(&rollout.name_any(), &params, &Patch::Apply(&patch))
        .await
        .map_err(|source| Error::Kube {
            rollout: format!("{namespace}/{}", rollout.name_any()),
            action: if present { "add the finalizer".into() } else { "remove the finalizer".into() },
            source,
        })?;
    if let (Some(uid), Some(version)) = (rollout.uid(), changed.resource_version().and_then(|rv| rv.parse().ok())) {
        ctx.written.lock().unwrap_or_else(|p| p.into_inner()).insert(uid, version);
    }
    Ok(changed.resource_version().unwrap_or_default())
}

/// The field manager that owns Rampart's finalizer (separate from the one that owns status).
const FINALIZER_MANAGER: &str = "rampart-finalizer";

/// True when the error is the API server saying the object does not exist.
fn not_found(err: &traffic::TrafficError) -> bool {
    matches!(err, traffic::TrafficError::Kube { source: kube::Error::Api(status), .. } if status.code == 404)
}

/// Carries out one effect on objects other than the rollout. Returns a message when the traffic object is gone and was
/// counted as weight 0.
async fn apply_to_cluster(
    ctx: &Context,
    rollout: &ModelRollout,
    status: &ModelRolloutStatus,
    effect: &Effect,
) -> Result<Option<String>, Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    let id = || format!("{namespace}/{}", rollout.name_any());
    let spec = &rollout.spec;
    let traffic_error = |err: traffic::TrafficError| Error::Traffic { rollout: id(), message: err.to_string() };
    let serving_error = |err: serving::ServingError| Error::Serving { rollout: id(), message: err.to_string() };
    let on_targets = matches!(
        effect,
        Effect::SetWeight { .. }
            | Effect::RouteAllToBaseline { .. }
            | Effect::DeleteCanary
            | Effect::ScaleBaseline { .. }
            | Effect::ScaleCanary { .. }
            | Effect::PromoteBaseline
            | Effect::PromoteKServe
    );
    if on_targets && !claims::holds(status) {
        // A rollout that never took its targets (it waited, and was aborted or deleted meanwhile) leaves them to the
        // rollout that holds them.
        tracing::info!(rollout = %id(), ?effect, "not holding the targets: leaving them alone");
        return Ok(None);
    }
    let mut missing = None;
    let result = match effect {
        Effect::CreateCheckJob(job) => {
            let name = job.name_any();
            jobs::ensure_job(&ctx.client, &namespace, job).await.map_err(|source| Error::Checks {
                rollout: id(),
                action: format!("create the check Job {name}"),
                source,
            })
        }
        Effect::DeleteCheckJobs => {
            for check in [jobs::Check::Artifact, jobs::Check::Contract, jobs::Check::SmokeTraining] {
                let name = jobs::job_name(&rollout.name_any(), check);
                let api: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(ctx.client.clone(), &namespace);
                match api.delete(&name, &kube::api::DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(source) => {
                        return Err(Error::Checks {
                            rollout: id(),
                            action: format!("delete the old check Job {name}"),
                            source,
                        });
                    }
                }
            }
            Ok(())
        }
        Effect::SetWeight { weight, create_canary, cohort, mirror } => {
            if let Some(deployment) = &spec.serving.deployment {
                if *create_canary {
                    let fetch = observe::serving_fetch(ctx, rollout)
                        .await
                        .map_err(|message| Error::Serving { rollout: id(), message })?;
                    // Capacity-aware steps start a canary made by a cohort or shadow step with one pod.
                    let replicas = status.capacity.as_ref().map(|_| 1);
                    serving::ensure_canary(
                        &ctx.client,
                        rollout,
                        deployment,
                        fetch.as_ref(),
                        &ctx.config.check_image,
                        replicas,
                    )
                    .await
                    .map_err(serving_error)?;
                }
                let gateway =
                    spec.traffic.as_ref().and_then(|t| t.gateway_api.as_ref()).ok_or_else(|| Error::InvalidSpec {
                        rollout: id(),
                        message: "spec.traffic.gatewayAPI is required with spec.serving.deployment".into(),
                    })?;
                traffic::set_gateway_weight(
                    &ctx.client,
                    &namespace,
                    gateway,
                    *weight,
                    traffic::Extras { cohort: cohort.as_deref(), mirror: *mirror },
                )
                .await
                .map_err(traffic_error)
            } else if let Some(kserve) = &spec.serving.kserve {
                let uri = Some(spec.candidate.artifact.uri.as_str());
                traffic::set_kserve(&ctx.client, &namespace, &kserve.inference_service, *weight, uri)
                    .await
                    .map_err(traffic_error)
            } else {
                Ok(())
            }
        }
        Effect::RouteAllToBaseline { .. } => {
            // A route (or InferenceService) that no longer exists sends nothing to the canary: that is weight 0, and
            // a rollback must not wait forever for an object someone deleted.
            let result = if spec.serving.deployment.is_some() {
                match spec.traffic.as_ref().and_then(|t| t.gateway_api.as_ref()) {
                    Some(gateway) => {
                        traffic::set_gateway_weight(&ctx.client, &namespace, gateway, 0, Default::default()).await
                    }
                    None => Ok(()),
                }
            } else if let Some(kserve) = &spec.serving.kserve {
                let uri = status.stable_uri.as_deref();
                traffic::set_kserve(&ctx.client, &namespace, &kserve.inference_service, 0, uri).await
            } else {
                Ok(())
            };
            match result {
                Err(err) if not_found(&err) => {
                    tracing::warn!(rollout = %id(), error = %err, "the traffic object is gone; counting it as weight 0");
                    missing = Some(format!(
                        "{err}; the traffic object is gone, so no traffic reaches the canary through it (counted as \
                         weight 0). Recreate it to route traffic again"
                    ));
                    Ok(())
                }
                other => other.map_err(traffic_error),
            }
        }
        Effect::DeleteCanary => match &spec.serving.deployment {
            Some(deployment) => {
                serving::delete_canary(&ctx.client, &namespace, deployment, &rollout.uid().unwrap_or_default())
                    .await
                    .map_err(serving_error)
            }
            None => Ok(()),
        },
        Effect::ScaleBaseline { replicas } => match &spec.serving.deployment {
            Some(deployment) => {
                serving::scale_baseline(&ctx.client, &namespace, deployment, *replicas).await.map_err(serving_error)
            }
            None => Ok(()),
        },
        Effect::ScaleCanary { replicas } => match &spec.serving.deployment {
            Some(deployment) => serving::scale_canary(
                &ctx.client,
                rollout,
                deployment,
                *replicas,
                observe::serving_fetch(ctx, rollout),
                &ctx.config.check_image,
            )
            .await
            .map_err(serving_error),
            None => Ok(()),
        },
        Effect::PromoteBaseline => match &spec.serving.deployment {
            Some(deployment) => {
                let fetch = observe::serving_fetch(ctx, rollout)
                    .await
                    .map_err(|message| Error::Serving { rollout: id(), message })?;
                serving::promote_baseline(&ctx.client, rollout, deployment, fetch.as_ref(), &ctx.config.check_image)
                    .await
                    .map_err(serving_error)
            }
            None => Ok(()),
        },
        Effect::AddFinalizer | Effect::ReleaseFinalizer => Ok(()),
        Effect::PromoteKServe => match &spec.serving.kserve {
            Some(kserve) => {
                let uri = Some(spec.candidate.artifact.uri.as_str());
                traffic::set_kserve(&ctx.client, &namespace, &kserve.inference_service, 100, uri)
                    .await
                    .map_err(traffic_error)
            }
            None => Ok(()),
        },
    };
    result.map(|()| missing)
}

/// Writes status with server-side apply, carrying the read's resourceVersion, and remembers the new one. Fields
/// someone else wrote into status under another field manager survive an apply that leaves them out; the outbox and
/// the sealed fields (see [`seal`]) are then made exactly Rampart's with merge patches, so a refused record or a
/// forged check result does not come back on every read.
async fn write_status(
    ctx: &Context,
    rollout: &ModelRollout,
    resource_version: Option<String>,
    status: &ModelRolloutStatus,
) -> Result<(), Error> {
    if !*ctx.leader.borrow() {
        return Err(Error::NotLeader);
    }
    let namespace = rollout.namespace().unwrap_or_default();
    let patch = serde_json::json!({
        "apiVersion": ModelRollout::api_version(&()),
        "kind": ModelRollout::kind(&()),
        "metadata": {"resourceVersion": resource_version},
        "status": status,
    });
    let api = Api::<ModelRollout>::namespaced(ctx.client.clone(), &namespace);
    let status_error = |source| Error::Status { rollout: format!("{namespace}/{}", rollout.name_any()), source };
    let mut written = api
        .patch_status(
            &rollout.name_any(),
            &PatchParams::apply(rampart_api::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(status_error)?;
    let ours = seal::fields(status);
    let theirs = seal::fields(&written.status.clone().unwrap_or_default());
    let mut differing: Vec<String> = ours.keys().filter(|key| ours.get(*key) != theirs.get(*key)).cloned().collect();
    if written.status.as_ref().and_then(|s| s.outbox.as_ref()) != status.outbox.as_ref() {
        differing.push("outbox".into());
    }
    if !differing.is_empty() {
        let value = |key: &str| match key {
            "outbox" => serde_json::json!(status.outbox),
            _ => ours.get(key).cloned().unwrap_or_default(),
        };
        // Cleared first: a merge patch merges maps, so a key someone added inside `checks` would outlive one patch.
        let clear: serde_json::Map<String, serde_json::Value> =
            differing.iter().map(|key| (key.clone(), serde_json::Value::Null)).collect();
        let set: serde_json::Map<String, serde_json::Value> =
            differing.iter().map(|key| (key.clone(), value(key))).filter(|(_, v)| !v.is_null()).collect();
        for fields in [clear, set].into_iter().filter(|f| !f.is_empty()) {
            let merge = serde_json::json!({
                "metadata": {"resourceVersion": written.resource_version()},
                "status": fields,
            });
            written = api
                .patch_status(
                    &rollout.name_any(),
                    &PatchParams { field_manager: Some(rampart_api::FIELD_MANAGER.into()), ..Default::default() },
                    &Patch::Merge(&merge),
                )
                .await
                .map_err(status_error)?;
        }
    }
    if let (Some(uid), Some(version)) = (rollout.uid(), written.resource_version().and_then(|rv| rv.parse().ok())) {
        ctx.written.lock().unwrap_or_else(|p| p.into_inner()).insert(uid, version);
    }
    Ok(())
}

/// Publishes an Event. Its action names the step, so each transition is its own Event (the recorder folds Events
/// with the same action and reason into one series).
async fn publish(ctx: &Context, rollout: &ModelRollout, note: &decide::Note) {
    let step = rollout.status.as_ref().and_then(|s| s.current_step).unwrap_or(0);
    let event = Event {
        type_: if note.warning { EventType::Warning } else { EventType::Normal },
        reason: note.reason.into(),
        note: Some(truncate(&note.message, 1000)),
        action: format!("{}AtStep{step}", note.reason),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &rollout.object_ref(&())).await {
        tracing::warn!(rollout = %rollout.name_any(), error = %err, "could not publish event {}", note.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_at_its_bound_gets_no_slot_and_others_still_do() {
        let slots = Arc::new(Mutex::new(HashMap::new()));
        let first = NamespaceSlot::take(&slots, "team-a", 2);
        let second = NamespaceSlot::take(&slots, "team-a", 2);
        assert!(first.is_some() && second.is_some());
        assert!(NamespaceSlot::take(&slots, "team-a", 2).is_none(), "team-a is at its bound");
        assert!(NamespaceSlot::take(&slots, "team-b", 2).is_some(), "team-b is not held up by team-a");
        drop(first);
        assert!(NamespaceSlot::take(&slots, "team-a", 2).is_some(), "a slot given back is free again");
        drop(second);
        assert!(NamespaceSlot::take(&slots, "team-c", 0).is_some(), "0: no bound");
    }
}
