//! The reconcile loop: one idempotent state machine per ModelRollout, driven by its status.
//!
//! Each reconcile reads status, decides the one next action from status and the world, acts, then writes status with
//! server-side apply (field manager `rampart`). Stages: start -> steps (setWeight / pause / analysis) -> promote, or
//! roll back. A rollback sets the canary's weight to 0 before anything else, in the same reconcile as the failing
//! verdict, and waits for nothing that can be down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use rampart_analysis::{AnalysisState, ArmCounts, ArmPair, MetricObservation, StepInput, Verdict};
use rampart_api::v1alpha1::{
    AnalysisStatus, AnalysisStep, CheckResult, Condition, HistoryEntry, MetricKind, OnInconclusive, Step,
};
use rampart_api::{ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RETRY, ModelRollout, ModelRolloutStatus, Phase};
use tokio::sync::watch;

use crate::analysis::{analysis_config, metric_status, srm_status};
use crate::config::ControllerConfig;
use crate::error::Error;
use crate::jobs::{self, Check, JobState};
use crate::metrics::Metrics;
use crate::prometheus::{Prometheus, bucket_increase, render};
use crate::trail::{RegistryConnection, TrailRecord};
use crate::{serving, traffic, trail, verify};

/// Most transitions kept in `status.history`.
const HISTORY_LIMIT: usize = 30;

/// What every reconcile needs.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The controller's configuration.
    pub config: ControllerConfig,
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
    /// When the registry last failed to take the outbox, per rollout uid: flushes pause for a while after a failure
    /// so that an outage never slows a reconcile down.
    pub registry_backoff: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

/// Reconciles one rollout, timing it and counting failures by stage.
pub async fn reconcile(rollout: Arc<ModelRollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = match fresh(&rollout, &ctx).await {
        Ok(Some(current)) => Reconciler::new(&current, &ctx).run().await,
        Ok(None) => Ok(Action::await_change()),
        Err(err) => Err(err),
    };
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    if let Err(err) = &result {
        ctx.metrics
            .reconcile_errors
            .get_or_create(&crate::metrics::StageLabels { stage: err.metric_label().into() })
            .inc();
    }
    result
}

/// The rollout as the API server has it now. The watch cache can lag behind this controller's own last status write;
/// acting on a stale copy would repeat a step (or undo a rollback), so every reconcile starts from a fresh read, and
/// its status write carries that read's resourceVersion (a concurrent change makes it fail with 409 and retry).
async fn fresh(rollout: &ModelRollout, ctx: &Context) -> Result<Option<ModelRollout>, Error> {
    let namespace = rollout.namespace().unwrap_or_default();
    match Api::<ModelRollout>::namespaced(ctx.client.clone(), &namespace).get_opt(&rollout.name_any()).await {
        Ok(current) => Ok(current),
        Err(source) => Err(Error::Kube {
            rollout: format!("{namespace}/{}", rollout.name_any()),
            action: "read the rollout".into(),
            source,
        }),
    }
}

/// Requeues failed reconciles soon: most failures (API conflicts, Prometheus blips) are transient; a write conflict
/// (someone changed the rollout since it was read) is retried at once.
pub fn error_policy(rollout: Arc<ModelRollout>, error: &Error, _ctx: Arc<Context>) -> Action {
    if let Error::Status { source: kube::Error::Api(status), .. } = error
        && status.code == 409
    {
        return Action::requeue(Duration::from_millis(100));
    }
    if !matches!(error, Error::NotLeader) {
        tracing::warn!(rollout = %rollout.name_any(), namespace = ?rollout.namespace(), %error, "reconcile failed");
    }
    Action::requeue(Duration::from_secs(2))
}

struct Reconciler<'a> {
    rollout: &'a ModelRollout,
    ctx: &'a Context,
    namespace: String,
    name: String,
    now: Timestamp,
}

impl<'a> Reconciler<'a> {
    fn new(rollout: &'a ModelRollout, ctx: &'a Context) -> Self {
        Self {
            rollout,
            ctx,
            namespace: rollout.namespace().unwrap_or_default(),
            name: rollout.name_any(),
            now: Timestamp::now(),
        }
    }

    fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    async fn run(&self) -> Result<Action, Error> {
        if !*self.ctx.leader.borrow() {
            return Err(Error::NotLeader);
        }
        let status = self.rollout.status.clone().unwrap_or_default();
        if let Some(action) = self.flush_outbox(&status).await? {
            return Ok(action);
        }
        let phase = status.phase.unwrap_or(Phase::Pending);
        let annotations = self.rollout.annotations();

        if phase.is_terminal() {
            if let Some(retry) = annotations.get(ANNOTATION_RETRY)
                && status.handled_retry.as_ref() != Some(retry)
            {
                return self.retry(status, retry.clone()).await;
            }
            self.ctx.metrics.set_rollout(&self.namespace, &self.name, phase, status.canary_weight.unwrap_or(0));
            return Ok(Action::await_change());
        }
        if annotations.contains_key(ANNOTATION_ABORT) && phase != Phase::RollingBack {
            return self
                .roll_back(status, "aborted by the rampart.dev/abort annotation (rampart abort)".into(), true, None)
                .await;
        }
        match phase {
            Phase::Pending | Phase::Verifying => self.start(status).await,
            Phase::Checking => self.run_checks(status).await,
            Phase::Progressing | Phase::Paused => {
                if annotations.contains_key(ANNOTATION_PROMOTE) {
                    let message = "promoted by the rampart.dev/promote annotation (rampart promote): skipping the remaining steps";
                    return self.enter_promoting(status, message.into()).await;
                }
                self.progress(status).await
            }
            Phase::Promoting => self.promote(status).await,
            Phase::RollingBack => self.finish_rollback(status).await,
            Phase::Succeeded | Phase::RolledBack | Phase::Failed => Ok(Action::await_change()),
        }
    }

    // ----- status and events -------------------------------------------------------------------------------------

    async fn write_status(&self, mut status: ModelRolloutStatus) -> Result<(), Error> {
        if !*self.ctx.leader.borrow() {
            return Err(Error::NotLeader);
        }
        status.observed_generation = self.rollout.metadata.generation;
        let patch = serde_json::json!({
            "apiVersion": ModelRollout::api_version(&()),
            "kind": ModelRollout::kind(&()),
            "metadata": {"resourceVersion": self.rollout.resource_version()},
            "status": status,
        });
        Api::<ModelRollout>::namespaced(self.ctx.client.clone(), &self.namespace)
            .patch_status(&self.name, &PatchParams::apply(rampart_api::FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(|source| Error::Status { rollout: self.id(), source })?;
        self.ctx.metrics.set_rollout(
            &self.namespace,
            &self.name,
            status.phase.unwrap_or(Phase::Pending),
            status.canary_weight.unwrap_or(0),
        );
        Ok(())
    }

    /// Publishes an Event. Its action names the step, so each transition is its own Event (the recorder folds
    /// Events with the same action and reason into one series).
    async fn event(&self, kind: EventType, reason: &str, note: String) {
        let step = self.rollout.status.as_ref().and_then(|s| s.current_step).unwrap_or(0);
        let event = Event {
            type_: kind,
            reason: reason.into(),
            note: Some(truncate(&note, 1000)),
            action: format!("{reason}AtStep{step}"),
            secondary: None,
        };
        if let Err(err) = self.ctx.recorder.publish(&event, &self.rollout.object_ref(&())).await {
            tracing::warn!(rollout = %self.id(), error = %err, "could not publish event {reason}");
        }
    }

    /// Enters `phase` with a message: history entry, condition, phase, message.
    fn transition(&self, status: &mut ModelRolloutStatus, phase: Phase, message: String) {
        status.phase = Some(phase);
        status.message = Some(message.clone());
        let history = status.history.get_or_insert_with(Vec::new);
        history.push(HistoryEntry {
            time: self.now.to_string(),
            phase,
            step: status.current_step,
            message: Some(truncate(&message, 512)),
        });
        if history.len() > HISTORY_LIMIT {
            let excess = history.len() - HISTORY_LIMIT;
            history.drain(..excess);
        }
        let (ready, reason) = match phase {
            Phase::Succeeded => ("True", "Promoted"),
            Phase::RolledBack | Phase::RollingBack => ("False", "RolledBack"),
            Phase::Failed => ("False", "Failed"),
            Phase::Paused => ("False", "Paused"),
            _ => ("False", "Progressing"),
        };
        set_condition(status, "Ready", ready, reason, &message, self.now, self.rollout.metadata.generation);
    }

    fn begin_step(&self, status: &mut ModelRolloutStatus, step: i32) {
        status.current_step = Some(step);
        status.step_started_at = Some(self.now.to_string());
    }

    // ----- the registry trail -------------------------------------------------------------------------------------

    fn uid(&self) -> String {
        self.rollout.uid().unwrap_or_default()
    }

    /// Queues a registry record in the status outbox (written with the transition it belongs to).
    fn record(&self, status: &mut ModelRolloutStatus, record: TrailRecord) {
        if self.ctx.registry.is_some() {
            trail::push(status.outbox.get_or_insert_with(Vec::new), &record);
        }
    }

    /// Applies queued registry records in order and drops them from the outbox. Bounded in time, and skipped for a
    /// while after a failure, so a Postgres outage never delays a reconcile (a rollback least of all).
    async fn flush_outbox(&self, status: &ModelRolloutStatus) -> Result<Option<Action>, Error> {
        let Some(connection) = &self.ctx.registry else { return Ok(None) };
        let outbox = status.outbox.clone().unwrap_or_default();
        if outbox.is_empty() {
            return Ok(None);
        }
        let uid = self.uid();
        {
            let backoff = self.ctx.registry_backoff.lock().unwrap_or_else(|p| p.into_inner());
            if backoff.get(&uid).is_some_and(|failed| failed.elapsed() < Duration::from_secs(5)) {
                return Ok(None);
            }
        }
        let applied = tokio::time::timeout(Duration::from_millis(1500), async {
            let registry = match connection.get().await {
                Ok(registry) => registry,
                Err(err) => return (0, Some(err)),
            };
            let mut applied = 0;
            for text in &outbox {
                let Ok(record) = serde_json::from_str::<TrailRecord>(text) else {
                    applied += 1;
                    continue;
                };
                match record.apply(&registry).await {
                    Ok(()) => applied += 1,
                    Err(err) if err.is_retryable() => return (applied, Some(err.to_string())),
                    Err(err) => {
                        tracing::warn!(rollout = %self.id(), error = %err, "the registry refused a record; dropping it");
                        applied += 1;
                    }
                }
            }
            (applied, None)
        })
        .await
        .unwrap_or((0, Some("the registry did not answer in time".to_string())));
        let (applied, failure) = applied;
        if let Some(err) = &failure {
            tracing::warn!(rollout = %self.id(), error = %err, pending = outbox.len() - applied, "registry unavailable; the trail waits in the outbox");
            self.ctx.registry_backoff.lock().unwrap_or_else(|p| p.into_inner()).insert(uid, Instant::now());
        }
        if applied == 0 {
            return Ok(None);
        }
        let mut status = status.clone();
        let rest = outbox[applied..].to_vec();
        status.outbox = if rest.is_empty() { None } else { Some(rest) };
        self.write_status(status).await?;
        Ok(Some(Action::requeue(Duration::from_millis(50))))
    }

    // ----- stages ------------------------------------------------------------------------------------------------

    async fn start(&self, mut status: ModelRolloutStatus) -> Result<Action, Error> {
        let spec = &self.rollout.spec;
        if let Some(smoke) = spec.checks.as_ref().and_then(|c| c.smoke_training.as_ref())
            && !jobs::image_allowed(&smoke.image, &self.ctx.config.smoke_image_allow_list)
        {
            let allowed = if self.ctx.config.smoke_image_allow_list.is_empty() {
                "none configured".to_string()
            } else {
                self.ctx.config.smoke_image_allow_list.join(", ")
            };
            let message = format!(
                "smoke-training image {} is not allowed by this controller (allowed prefixes: {allowed}); nothing was \
                 created and no traffic was moved",
                smoke.image
            );
            self.transition(&mut status, Phase::Failed, message.clone());
            self.write_status(status).await?;
            self.event(EventType::Warning, "ImageNotAllowed", message).await;
            return Ok(Action::await_change());
        }
        let verified = verify::verify_candidate(
            &self.ctx.client,
            self.rollout,
            &self.ctx.trusted_keys,
            self.ctx.config.allow_insecure_skip_signature,
        )
        .await;
        let bundle = verified.as_ref().ok().and_then(|s| s.as_ref()).map(|s| s.bundle.clone());
        self.record(
            &mut status,
            TrailRecord::RegisterVersion {
                version: rampart_registry::NewVersion {
                    model: spec.model.clone(),
                    version: spec.candidate.version.clone(),
                    uri: spec.candidate.artifact.uri.clone(),
                    digest: spec.candidate.artifact.digest.clone(),
                    signature_bundle: bundle,
                    ..Default::default()
                },
            },
        );
        let baseline_for_registry = spec.baseline.as_ref().and_then(|b| b.version.clone());
        let start_record = TrailRecord::StartRollout {
            rollout: rampart_registry::NewRollout {
                model: spec.model.clone(),
                uid: self.uid(),
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                candidate_version: spec.candidate.version.clone(),
                baseline_version: baseline_for_registry,
            },
        };
        let checks = status.checks.get_or_insert_with(Default::default);
        match verified {
            Ok(Some(signer)) => {
                checks.signature = Some(CheckResult {
                    result: "Passed".into(),
                    message: Some(format!("signed by trusted key {} ({})", signer.key_label, signer.key_id)),
                    signer: Some(signer.key_id.clone()),
                    job: None,
                });
                self.record(
                    &mut status,
                    TrailRecord::MarkVerified {
                        model: spec.model.clone(),
                        version: spec.candidate.version.clone(),
                        verification: rampart_registry::Verification {
                            digest: spec.candidate.artifact.digest.clone(),
                            signer_key_id: signer.key_id,
                            signature_bundle: Some(signer.bundle),
                        },
                    },
                );
            }
            Ok(None) => {
                checks.signature = Some(CheckResult {
                    result: "Skipped".into(),
                    message: Some("insecureSkipSignature: the candidate is not signature-checked".into()),
                    signer: None,
                    job: None,
                });
            }
            Err(message) => {
                checks.signature = Some(CheckResult {
                    result: "Failed".into(),
                    message: Some(message.clone()),
                    signer: None,
                    job: None,
                });
                let message = format!("signature check failed, no traffic was moved: {message}");
                self.record(&mut status, start_record);
                self.record(
                    &mut status,
                    TrailRecord::Finish { uid: self.uid(), aborted: false, reason: message.clone() },
                );
                self.transition(&mut status, Phase::Failed, message.clone());
                self.write_status(status).await?;
                self.event(EventType::Warning, "SignatureFailed", message).await;
                return Ok(Action::await_change());
            }
        }
        match self.resolve_baseline().await {
            Ok((version, stable_uri)) => {
                let mut start_record = start_record;
                if let TrailRecord::StartRollout { rollout } = &mut start_record {
                    rollout.baseline_version = version.clone();
                }
                self.record(&mut status, start_record);
                status.baseline_version = version;
                status.stable_uri = stable_uri;
            }
            Err(message) => {
                self.record(&mut status, start_record);
                self.record(
                    &mut status,
                    TrailRecord::Finish { uid: self.uid(), aborted: false, reason: message.clone() },
                );
                self.transition(&mut status, Phase::Failed, message.clone());
                self.write_status(status).await?;
                self.event(EventType::Warning, "Failed", message).await;
                return Ok(Action::await_change());
            }
        }
        status.canary_weight = Some(0);
        status.analysis = None;
        self.begin_step(&mut status, 0);
        let message = format!(
            "rolling out {} {} against baseline {}",
            self.rollout.spec.model,
            self.rollout.spec.candidate.version,
            status.baseline_version.as_deref().unwrap_or("(unknown)")
        );
        let checks = self.rollout.spec.checks.as_ref();
        let needs_jobs = checks.is_some_and(|c| c.contract.is_some() || c.smoke_training.is_some());
        let phase = if needs_jobs { Phase::Checking } else { Phase::Progressing };
        self.transition(&mut status, phase, message.clone());
        self.write_status(status).await?;
        self.event(EventType::Normal, "Started", message).await;
        Ok(Action::requeue(Duration::from_millis(50)))
    }

    /// Runs the check Jobs one after the other (contract, then smoke training); any failure ends the rollout before
    /// traffic moves.
    async fn run_checks(&self, mut status: ModelRolloutStatus) -> Result<Action, Error> {
        let spec_checks = self.rollout.spec.checks.clone().unwrap_or_default();
        let wanted: Vec<Check> = [
            spec_checks.contract.as_ref().map(|_| Check::Contract),
            spec_checks.smoke_training.as_ref().map(|_| Check::SmokeTraining),
        ]
        .into_iter()
        .flatten()
        .collect();
        for check in wanted {
            let name = jobs::job_name(&self.name, check);
            let current = check_slot(&mut status, check).as_ref().map(|c| c.result.clone());
            if current.as_deref() == Some("Passed") {
                continue;
            }
            if current.as_deref() != Some("Running") {
                let job = match check {
                    Check::Contract => match status.stable_uri.as_deref() {
                        Some(baseline) => jobs::contract_job(self.rollout, &self.ctx.config, baseline),
                        None => Err("the baseline's model URI is unknown, so there is nothing to compare with".into()),
                    },
                    Check::SmokeTraining => match spec_checks.smoke_training.as_ref() {
                        Some(smoke) => jobs::smoke_job(self.rollout, smoke, &self.ctx.config),
                        None => Err("no smoke-training settings".into()),
                    },
                };
                let job = match job {
                    Ok(job) => job,
                    Err(why) => return self.fail_check(status, check, why).await,
                };
                jobs::ensure_job(&self.ctx.client, &self.namespace, &job).await.map_err(|source| Error::Kube {
                    rollout: self.id(),
                    action: format!("create the {} check Job {name}", check.as_str()),
                    source,
                })?;
                *check_slot(&mut status, check) = Some(CheckResult {
                    result: "Running".into(),
                    message: Some(format!("Job {name} is running")),
                    signer: None,
                    job: Some(name.clone()),
                });
                let message = format!("{} check running in Job {name}", check.as_str());
                status.message = Some(message.clone());
                self.write_status(status).await?;
                self.event(EventType::Normal, "CheckStarted", message).await;
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            let state =
                jobs::job_state(&self.ctx.client, &self.namespace, &name).await.map_err(|source| Error::Kube {
                    rollout: self.id(),
                    action: format!("read the {} check Job {name}", check.as_str()),
                    source,
                })?;
            match state {
                JobState::Running => return Ok(Action::requeue(Duration::from_secs(2))),
                JobState::Passed(summary) => {
                    *check_slot(&mut status, check) = Some(CheckResult {
                        result: "Passed".into(),
                        message: Some(summary.clone()),
                        signer: None,
                        job: Some(name),
                    });
                    self.write_status(status).await?;
                    let note = format!("{} check passed: {summary}", check.as_str());
                    self.event(EventType::Normal, "CheckPassed", note).await;
                    return Ok(Action::requeue(Duration::from_millis(50)));
                }
                JobState::Failed(why) => return self.fail_check(status, check, why).await,
            }
        }
        self.begin_step(&mut status, 0);
        let message = "all checks passed; starting the steps".to_string();
        self.transition(&mut status, Phase::Progressing, message.clone());
        self.write_status(status).await?;
        self.event(EventType::Normal, "ChecksPassed", message).await;
        Ok(Action::requeue(Duration::from_millis(50)))
    }

    async fn fail_check(&self, mut status: ModelRolloutStatus, check: Check, why: String) -> Result<Action, Error> {
        let slot = check_slot(&mut status, check);
        let job = slot.as_ref().and_then(|c| c.job.clone());
        *slot = Some(CheckResult { result: "Failed".into(), message: Some(truncate(&why, 1024)), signer: None, job });
        let message = format!("{} check failed, no traffic was moved: {why}", check.as_str());
        let reason = truncate(&message, 2048);
        self.record(&mut status, TrailRecord::Finish { uid: self.uid(), aborted: false, reason });
        self.transition(&mut status, Phase::Failed, message.clone());
        self.write_status(status).await?;
        self.event(EventType::Warning, "CheckFailed", message).await;
        Ok(Action::await_change())
    }

    /// The baseline's version label and current model URI. Errors are messages for the user.
    async fn resolve_baseline(&self) -> Result<(Option<String>, Option<String>), String> {
        let spec = &self.rollout.spec;
        let explicit = spec.baseline.as_ref().and_then(|b| b.version.clone());
        let needs_version = spec.steps.iter().any(|s| s.analysis.is_some());
        let (labelled, uri) = if let Some(deployment) = &spec.serving.deployment {
            let base = serving::baseline(&self.ctx.client, &self.namespace, &deployment.name).await.map_err(|err| {
                format!("{err}; create the baseline Deployment in namespace {}, then rampart retry", self.namespace)
            })?;
            if let Some(gateway) = spec.traffic.as_ref().and_then(|t| t.gateway_api.as_ref()) {
                let routes: Api<DynamicObject> =
                    Api::namespaced_with(self.ctx.client.clone(), &self.namespace, &traffic::httproute_resource());
                routes.get(&gateway.http_route).await.map_err(|err| {
                    format!("HTTPRoute {}/{} cannot be read: {err}", self.namespace, gateway.http_route)
                })?;
            }
            (base.labels().get(serving::VERSION_LABEL).cloned(), serving::current_uri(&base, deployment))
        } else if let Some(kserve) = &spec.serving.kserve {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.ctx.client.clone(), &self.namespace, &traffic::inference_service_resource());
            let isvc = api.get(&kserve.inference_service).await.map_err(|err| {
                format!("InferenceService {}/{} cannot be read: {err}", self.namespace, kserve.inference_service)
            })?;
            let uri =
                isvc.data.pointer("/spec/predictor/model/storageUri").and_then(|v| v.as_str()).map(str::to_string);
            (isvc.labels().get(serving::VERSION_LABEL).cloned(), uri)
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
        Ok((version, uri))
    }

    async fn progress(&self, mut status: ModelRolloutStatus) -> Result<Action, Error> {
        let steps = &self.rollout.spec.steps;
        let index = status.current_step.unwrap_or(0).max(0);
        let Some(step) = usize::try_from(index).ok().and_then(|i| steps.get(i)) else {
            return self.enter_promoting(status, "all steps completed".into()).await;
        };
        let Step { set_weight, pause, analysis } = step;
        if let Some(weight) = set_weight {
            self.apply_weight(*weight).await?;
            status.canary_weight = Some(*weight);
            self.record_step(&mut status, index, format!("setWeight {weight}"));
            self.begin_step(&mut status, index + 1);
            let message = format!("step {index}: canary weight set to {weight}%");
            self.transition(&mut status, Phase::Progressing, message.clone());
            self.write_status(status).await?;
            self.event(EventType::Normal, "WeightSet", message).await;
            return Ok(Action::requeue(Duration::from_millis(50)));
        }
        if let Some(pause) = pause {
            let Some(duration) = pause.duration.as_deref() else {
                if status.phase != Some(Phase::Paused) {
                    let message = format!("step {index}: paused until promoted (rampart promote {})", self.name);
                    self.transition(&mut status, Phase::Paused, message.clone());
                    self.write_status(status).await?;
                    self.event(EventType::Normal, "Paused", message).await;
                }
                return Ok(Action::await_change());
            };
            let duration = self.parse_duration(duration)?;
            let elapsed = self.elapsed(&status);
            if elapsed >= duration {
                self.record_step(&mut status, index, format!("pause {}", format_duration(duration)));
                self.begin_step(&mut status, index + 1);
                let message = format!("step {index}: pause of {} ended", format_duration(duration));
                self.transition(&mut status, Phase::Progressing, message.clone());
                self.write_status(status).await?;
                self.event(EventType::Normal, "PauseEnded", message).await;
                return Ok(Action::requeue(Duration::from_millis(50)));
            }
            if status.phase != Some(Phase::Paused) {
                let message = format!("step {index}: pausing for {}", format_duration(duration));
                self.transition(&mut status, Phase::Paused, message.clone());
                self.write_status(status).await?;
                self.event(EventType::Normal, "Paused", message).await;
            }
            return Ok(Action::requeue(duration - elapsed));
        }
        if let Some(analysis) = analysis {
            if status.phase == Some(Phase::Paused) {
                // Paused by the onInconclusive: pause policy; a person decides.
                return Ok(Action::await_change());
            }
            return self.analyze(status, index, analysis).await;
        }
        Err(Error::InvalidSpec { rollout: self.id(), message: format!("step {index} has no action") })
    }

    async fn apply_weight(&self, weight: i32) -> Result<(), Error> {
        let spec = &self.rollout.spec;
        if let Some(deployment) = &spec.serving.deployment {
            if weight > 0 {
                serving::ensure_canary(&self.ctx.client, self.rollout, deployment)
                    .await
                    .map_err(|err| Error::InvalidSpec { rollout: self.id(), message: err.to_string() })?;
            }
            let gateway =
                spec.traffic.as_ref().and_then(|t| t.gateway_api.as_ref()).ok_or_else(|| Error::InvalidSpec {
                    rollout: self.id(),
                    message: "spec.traffic.gatewayAPI is required with spec.serving.deployment".into(),
                })?;
            traffic::set_gateway_weight(&self.ctx.client, &self.namespace, gateway, weight)
                .await
                .map_err(|err| Error::InvalidSpec { rollout: self.id(), message: err.to_string() })?;
        } else if let Some(kserve) = &spec.serving.kserve {
            traffic::set_kserve(
                &self.ctx.client,
                &self.namespace,
                &kserve.inference_service,
                weight,
                Some(&spec.candidate.artifact.uri),
            )
            .await
            .map_err(|err| Error::InvalidSpec { rollout: self.id(), message: err.to_string() })?;
        }
        Ok(())
    }

    async fn analyze(&self, mut status: ModelRolloutStatus, index: i32, step: &AnalysisStep) -> Result<Action, Error> {
        let Some(spec_analysis) = &self.rollout.spec.analysis else {
            return Err(Error::InvalidSpec {
                rollout: self.id(),
                message: "analysis step without spec.analysis".into(),
            });
        };
        let duration = self.parse_duration(&step.duration)?;
        let interval = match &step.interval {
            Some(text) => self.parse_duration(text)?,
            None => self.ctx.config.default_analysis_interval,
        }
        .max(Duration::from_millis(200));
        let elapsed = self.elapsed(&status);
        let final_look = elapsed >= duration;
        // A new analysis step starts from nothing: looks, running p-value minima and the latency threshold belong to
        // the step they were taken in.
        let previous = status.analysis.clone().filter(|a| a.step == Some(index)).unwrap_or_default();
        let looks_done = u32::try_from(previous.looks.unwrap_or(0).max(0)).unwrap_or(0);
        // Counting starts once the new weight has settled; looks follow every interval after that.
        let settle = self.ctx.config.metrics_settle.min(duration / 2);
        let next_due = (settle + interval * (looks_done + 1)).min(duration);
        if !final_look && elapsed < next_due {
            return Ok(Action::requeue(next_due - elapsed));
        }

        let config =
            analysis_config(spec_analysis).map_err(|message| Error::InvalidSpec { rollout: self.id(), message })?;
        let step_started = parse_time(status.step_started_at.as_deref()).unwrap_or(self.now);
        let started = step_started.checked_add(settle).unwrap_or(step_started);
        let observation = self.observe(&status, started).await;
        let mut analysis = AnalysisStatus {
            step: Some(index),
            looks: Some(i32::try_from(looks_done + 1).unwrap_or(i32::MAX)),
            ..previous
        };

        let input = match observation {
            Ok((metrics, requests)) => StepInput {
                configured_canary_weight: f64::from(status.canary_weight.unwrap_or(0)) / 100.0,
                requests,
                metrics,
                final_look,
            },
            Err(err) => {
                let errors = analysis.provider_errors.unwrap_or(0) + 1;
                analysis.provider_errors = Some(errors);
                analysis.last_error = Some(truncate(&err.to_string(), 512));
                analysis.verdict = Some(Verdict::Continue.as_str().into());
                status.analysis = Some(analysis);
                if final_look {
                    let reason = format!(
                        "step {index}: analysis ended without a verdict: the metrics could not be read ({errors} looks \
                         in a row): {err}"
                    );
                    return self.inconclusive(status, index, reason).await;
                }
                self.write_status(status).await?;
                if errors == 1 {
                    self.event(
                        EventType::Warning,
                        "MetricsUnavailable",
                        format!("step {index}: {err}; never promoting while the metrics are unreadable"),
                    )
                    .await;
                }
                return Ok(Action::requeue(interval));
            }
        };

        let previous_state: Option<AnalysisState> =
            analysis.engine_state.as_deref().and_then(|text| serde_json::from_str(text).ok());
        let outcome = rampart_analysis::evaluate_step(&config, &input, previous_state.as_ref())
            .map_err(|source| Error::Analysis { rollout: self.id(), source })?;
        let verdict = outcome.verdict;
        for metric in &verdict.metrics {
            self.ctx.metrics.set_verdict(&self.namespace, &self.name, &metric.name, metric.verdict);
        }
        analysis.provider_errors = None;
        analysis.last_error = None;
        analysis.verdict = Some(verdict.verdict.as_str().into());
        analysis.metrics = Some(verdict.metrics.iter().map(metric_status).collect());
        analysis.srm = verdict.srm.as_ref().map(srm_status);
        analysis.engine_state = serde_json::to_string(&outcome.state).ok();
        let statistics = serde_json::json!({"metrics": analysis.metrics, "srm": analysis.srm});
        status.analysis = Some(analysis);
        self.record(
            &mut status,
            TrailRecord::Verdict {
                uid: self.uid(),
                verdict: rampart_registry::VerdictRecord {
                    step_index: u32::try_from(index).unwrap_or(0),
                    evaluation: looks_done,
                    verdict: verdict.verdict.as_str().to_lowercase(),
                    statistics,
                },
            },
        );

        match verdict.verdict {
            Verdict::Fail => {
                let failed_at = Instant::now();
                let reason = format!("step {index}: analysis failed: {}", describe_failure(&verdict));
                self.roll_back(status, reason, false, Some(failed_at)).await
            }
            Verdict::Pass => {
                self.record_step(&mut status, index, format!("analysis passed after {} looks", verdict.look));
                self.begin_step(&mut status, index + 1);
                let message = format!("step {index}: analysis passed: {}", verdict.reason);
                self.transition(&mut status, Phase::Progressing, message.clone());
                self.write_status(status).await?;
                self.event(EventType::Normal, "AnalysisPassed", message).await;
                Ok(Action::requeue(Duration::from_millis(50)))
            }
            Verdict::Inconclusive if final_look => {
                self.inconclusive(
                    status,
                    index,
                    format!("step {index}: analysis ended without a verdict: {}", verdict.reason),
                )
                .await
            }
            Verdict::Continue | Verdict::Inconclusive => {
                status.message = Some(format!("step {index}: analysing: {}", verdict.reason));
                self.write_status(status).await?;
                Ok(Action::requeue(interval))
            }
        }
    }

    /// Cumulative counts since the step started, per metric, and request counts for the split check.
    #[allow(clippy::type_complexity)]
    async fn observe(
        &self,
        status: &ModelRolloutStatus,
        started: Timestamp,
    ) -> Result<(Vec<MetricObservation>, Option<ArmPair<f64>>), Error> {
        let Some(spec_analysis) = &self.rollout.spec.analysis else { return Ok((vec![], None)) };
        let url = spec_analysis.prometheus_address.clone().unwrap_or_else(|| self.ctx.config.prometheus_url.clone());
        let prometheus = Prometheus::new(&url, self.ctx.config.prometheus_timeout)?;
        let canary = self.rollout.spec.candidate.version.clone();
        let baseline = status.baseline_version.clone().unwrap_or_default();
        let ns = self.namespace.clone();
        // Every query of one look is evaluated at the same instant: successes and trials read a moment apart would
        // come from different scrapes, and on a young step that skew alone can look like a large effect.
        let at = self.now;
        let increase = |template: String, version: String| {
            let prometheus = prometheus.clone();
            let ns = ns.clone();
            async move {
                let query = render(&template, &version, &ns);
                let now = prometheus.value(&query, Some(at)).await?;
                let before = prometheus.value(&query, Some(started)).await?;
                Ok::<f64, Error>(now - before)
            }
        };
        let mut observations = Vec::new();
        for metric in &spec_analysis.metrics {
            let q = &metric.queries;
            let missing = |what: &str| Error::InvalidSpec {
                rollout: self.id(),
                message: format!("metric {} needs queries.{what}", metric.name),
            };
            let arm = |version: String| {
                let q = q.clone();
                let increase = &increase;
                let prometheus = prometheus.clone();
                let ns = ns.clone();
                let missing = &missing;
                let kind = metric.kind;
                async move {
                    Ok::<ArmCounts, Error>(match kind {
                        MetricKind::Ratio => ArmCounts::Ratio {
                            successes: increase(q.success.clone().ok_or_else(|| missing("success"))?, version.clone())
                                .await?,
                            trials: increase(q.total.clone().ok_or_else(|| missing("total"))?, version).await?,
                        },
                        MetricKind::Mean => ArmCounts::Mean {
                            sum: increase(q.sum.clone().ok_or_else(|| missing("sum"))?, version.clone()).await?,
                            sum_sq: increase(
                                q.sum_of_squares.clone().ok_or_else(|| missing("sumOfSquares"))?,
                                version.clone(),
                            )
                            .await?,
                            count: increase(q.count.clone().ok_or_else(|| missing("count"))?, version).await?,
                        },
                        MetricKind::Latency => {
                            let query = render(&q.buckets.clone().ok_or_else(|| missing("buckets"))?, &version, &ns);
                            let now = prometheus.buckets(&query, Some(at)).await?;
                            let before = prometheus.buckets(&query, Some(started)).await?;
                            ArmCounts::Histogram { buckets: bucket_increase(&now, &before) }
                        }
                    })
                }
            };
            observations.push(MetricObservation {
                name: metric.name.clone(),
                canary: arm(canary.clone()).await?,
                baseline: arm(baseline.clone()).await?,
            });
        }
        let srm = spec_analysis.srm.clone().unwrap_or_default();
        let requests_query = srm.requests_query.clone().or_else(|| {
            spec_analysis.metrics.iter().find(|m| m.kind == MetricKind::Ratio).and_then(|m| m.queries.total.clone())
        });
        let requests = match (srm.enabled.unwrap_or(true), requests_query) {
            (true, Some(query)) => Some(ArmPair {
                canary: increase(query.clone(), canary).await?,
                baseline: increase(query, baseline).await?,
            }),
            _ => None,
        };
        Ok((observations, requests))
    }

    async fn inconclusive(&self, mut status: ModelRolloutStatus, index: i32, reason: String) -> Result<Action, Error> {
        let policy = self.rollout.spec.analysis.as_ref().and_then(|a| a.on_inconclusive).unwrap_or_default();
        if let Some(analysis) = status.analysis.as_mut() {
            analysis.verdict = Some(Verdict::Inconclusive.as_str().into());
        }
        match policy {
            OnInconclusive::Rollback => {
                self.roll_back(status, format!("{reason}; onInconclusive: rollback"), false, None).await
            }
            OnInconclusive::Promote => {
                self.record_step(&mut status, index, "analysis inconclusive, promoted by policy".into());
                self.begin_step(&mut status, index + 1);
                let message = format!("{reason}; onInconclusive: promote, carrying on");
                self.transition(&mut status, Phase::Progressing, message.clone());
                self.write_status(status).await?;
                self.event(EventType::Warning, "AnalysisInconclusive", message).await;
                Ok(Action::requeue(Duration::from_millis(50)))
            }
            OnInconclusive::Pause => {
                let message = format!("{reason}; onInconclusive: pause, waiting for rampart promote or rampart abort");
                self.transition(&mut status, Phase::Paused, message.clone());
                self.write_status(status).await?;
                self.event(EventType::Warning, "AnalysisInconclusive", message).await;
                Ok(Action::await_change())
            }
        }
    }

    /// Sends all traffic back to the baseline now, then records the rollback. Nothing here waits on Prometheus or
    /// Postgres.
    async fn roll_back(
        &self,
        mut status: ModelRolloutStatus,
        reason: String,
        aborted: bool,
        failed_at: Option<Instant>,
    ) -> Result<Action, Error> {
        self.route_all_to_baseline(&status).await?;
        if let Some(failed_at) = failed_at {
            let latency = failed_at.elapsed();
            self.ctx.metrics.rollback_latency.observe(latency.as_secs_f64());
            tracing::info!(rollout = %self.id(), latency_ms = latency.as_secs_f64() * 1000.0, "canary weight is 0 after a failing verdict");
        }
        status.canary_weight = Some(0);
        status.step_started_at = Some(self.now.to_string());
        if aborted {
            self.record(&mut status, TrailRecord::Finish { uid: self.uid(), aborted: true, reason: reason.clone() });
        } else {
            let statistics = serde_json::to_value(&status.analysis).unwrap_or_default();
            let statistics = serde_json::json!({
                "metrics": statistics.get("metrics"),
                "srm": statistics.get("srm"),
                "lastError": statistics.get("lastError"),
            });
            self.record(&mut status, TrailRecord::Rollback { uid: self.uid(), reason: reason.clone(), statistics });
        }
        let automatic = self.rollout.spec.rollback.as_ref().and_then(|r| r.on_failure).unwrap_or(true);
        if !aborted && !automatic {
            let message =
                format!("{reason}; canary at weight 0, rollback.onFailure is false: rampart abort or rampart promote");
            self.transition(&mut status, Phase::Paused, message.clone());
            self.write_status(status).await?;
            self.event(EventType::Warning, "Halted", message).await;
            return Ok(Action::await_change());
        }
        self.transition(&mut status, Phase::RollingBack, reason.clone());
        self.write_status(status).await?;
        self.event(EventType::Warning, "RollingBack", reason).await;
        Ok(Action::requeue(self.scale_down_delay()?))
    }

    async fn route_all_to_baseline(&self, status: &ModelRolloutStatus) -> Result<(), Error> {
        let spec = &self.rollout.spec;
        if spec.serving.deployment.is_some() {
            if let Some(gateway) = spec.traffic.as_ref().and_then(|t| t.gateway_api.as_ref()) {
                traffic::set_gateway_weight(&self.ctx.client, &self.namespace, gateway, 0)
                    .await
                    .map_err(|err| Error::InvalidSpec { rollout: self.id(), message: err.to_string() })?;
            }
        } else if let Some(kserve) = &spec.serving.kserve {
            traffic::set_kserve(
                &self.ctx.client,
                &self.namespace,
                &kserve.inference_service,
                0,
                status.stable_uri.as_deref(),
            )
            .await
            .map_err(|err| Error::InvalidSpec { rollout: self.id(), message: err.to_string() })?;
        }
        Ok(())
    }

    async fn finish_rollback(&self, mut status: ModelRolloutStatus) -> Result<Action, Error> {
        self.route_all_to_baseline(&status).await?;
        let delay = self.scale_down_delay()?;
        let elapsed = self.elapsed(&status);
        if elapsed < delay {
            return Ok(Action::requeue(delay - elapsed));
        }
        if let Some(deployment) = &self.rollout.spec.serving.deployment {
            serving::delete_canary(&self.ctx.client, &self.namespace, deployment)
                .await
                .map_err(|err| Error::InvalidSpec { rollout: self.id(), message: err.to_string() })?;
        }
        let reason = status.message.clone().unwrap_or_else(|| "rolled back".into());
        self.transition(&mut status, Phase::RolledBack, reason.clone());
        self.write_status(status).await?;
        self.event(EventType::Warning, "RolledBack", format!("all traffic is back on the baseline: {reason}")).await;
        Ok(Action::await_change())
    }

    async fn enter_promoting(&self, mut status: ModelRolloutStatus, message: String) -> Result<Action, Error> {
        self.transition(&mut status, Phase::Promoting, message.clone());
        self.write_status(status).await?;
        self.event(EventType::Normal, "Promoting", message).await;
        Ok(Action::requeue(Duration::from_millis(50)))
    }

    async fn promote(&self, mut status: ModelRolloutStatus) -> Result<Action, Error> {
        let spec = &self.rollout.spec;
        if let Some(waiting) = self.record_promotion(&mut status).await {
            let waiting = format!("promoting: waiting for the registry ({waiting}); promotion needs the record first");
            if status.message.as_deref() != Some(waiting.as_str()) {
                status.message = Some(waiting);
                self.write_status(status).await?;
            }
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        if let Some(deployment) = &spec.serving.deployment {
            let kube_err =
                |err: serving::ServingError| Error::InvalidSpec { rollout: self.id(), message: err.to_string() };
            serving::promote_baseline(&self.ctx.client, self.rollout, deployment).await.map_err(kube_err)?;
            let base =
                serving::baseline(&self.ctx.client, &self.namespace, &deployment.name).await.map_err(kube_err)?;
            if !serving::is_rolled_out(&base) {
                let waiting = format!(
                    "promoting: waiting for Deployment {} to roll out the candidate before traffic returns to it",
                    deployment.name
                );
                if status.message.as_deref() != Some(waiting.as_str()) {
                    status.message = Some(waiting);
                    self.write_status(status).await?;
                }
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            self.route_all_to_baseline(&status).await?;
            serving::delete_canary(&self.ctx.client, &self.namespace, deployment).await.map_err(kube_err)?;
        } else if let Some(kserve) = &spec.serving.kserve {
            traffic::set_kserve(
                &self.ctx.client,
                &self.namespace,
                &kserve.inference_service,
                100,
                Some(&spec.candidate.artifact.uri),
            )
            .await
            .map_err(|err| Error::InvalidSpec { rollout: self.id(), message: err.to_string() })?;
        }
        status.canary_weight = Some(0);
        let message = format!("{} {} is now the baseline", spec.model, spec.candidate.version);
        self.transition(&mut status, Phase::Succeeded, message.clone());
        self.write_status(status).await?;
        self.event(EventType::Normal, "Promoted", message).await;
        Ok(Action::await_change())
    }

    fn record_step(&self, status: &mut ModelRolloutStatus, index: i32, description: String) {
        let step = rampart_registry::StepRecord {
            index: u32::try_from(index).unwrap_or(0),
            canary_weight: u32::try_from(status.canary_weight.unwrap_or(0)).unwrap_or(0),
            description,
        };
        self.record(status, TrailRecord::Step { uid: self.uid(), step });
    }

    /// Writes the promotion to the registry before anything moves: the outbox must be empty and the `production`
    /// alias must move. Returns why it must wait, or None when promotion may go ahead. Unsigned (insecure) candidates
    /// are recorded as promoted without moving the alias.
    async fn record_promotion(&self, status: &mut ModelRolloutStatus) -> Option<String> {
        let connection = self.ctx.registry.as_ref()?;
        if status.outbox.as_ref().is_some_and(|o| !o.is_empty()) {
            return Some(format!("{} trail records not yet written", status.outbox.as_ref().map_or(0, Vec::len)));
        }
        let registry = match connection.get().await {
            Ok(registry) => registry,
            Err(err) => return Some(err),
        };
        let verified = status.checks.as_ref().and_then(|c| c.signature.as_ref()).is_some_and(|s| s.result == "Passed");
        let result = if verified {
            registry.record_promotion(&self.uid(), &self.ctx.config.identity).await.map(drop)
        } else {
            TrailRecord::PromotedUnverified {
                model: self.rollout.spec.model.clone(),
                uid: self.uid(),
                version: self.rollout.spec.candidate.version.clone(),
            }
            .apply(&registry)
            .await
        };
        result.err().map(|err| err.to_string())
    }

    async fn retry(&self, mut status: ModelRolloutStatus, value: String) -> Result<Action, Error> {
        // Old check Jobs would hand back their old verdicts: remove them so the checks run again.
        for check in [Check::Contract, Check::SmokeTraining] {
            let name = jobs::job_name(&self.name, check);
            let api: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
            match api.delete(&name, &kube::api::DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => {
                    return Err(Error::Kube {
                        rollout: self.id(),
                        action: format!("delete the old check Job {name}"),
                        source,
                    });
                }
            }
        }
        status.handled_retry = Some(value);
        status.current_step = Some(0);
        status.canary_weight = Some(0);
        status.analysis = None;
        status.checks = None;
        self.transition(
            &mut status,
            Phase::Pending,
            "retry requested (rampart retry): starting again from step 0".into(),
        );
        self.write_status(status).await?;
        self.event(EventType::Normal, "Retrying", "starting again from step 0".into()).await;
        Ok(Action::requeue(Duration::from_millis(50)))
    }

    // ----- helpers -----------------------------------------------------------------------------------------------

    fn parse_duration(&self, text: &str) -> Result<Duration, Error> {
        rampart_api::duration::parse_duration(text)
            .map_err(|err| Error::InvalidSpec { rollout: self.id(), message: err.to_string() })
    }

    fn scale_down_delay(&self) -> Result<Duration, Error> {
        match self.rollout.spec.rollback.as_ref().and_then(|r| r.scale_down_delay.as_deref()) {
            Some(text) => self.parse_duration(text),
            None => Ok(Duration::ZERO),
        }
    }

    /// Time since the current step started (zero when unknown or in the future).
    fn elapsed(&self, status: &ModelRolloutStatus) -> Duration {
        parse_time(status.step_started_at.as_deref())
            .map(|started| self.now.duration_since(started))
            .filter(|d| d.is_positive())
            .map(|d| d.unsigned_abs())
            .unwrap_or(Duration::ZERO)
    }
}

/// The status slot of one check Job's result.
fn check_slot(status: &mut ModelRolloutStatus, check: Check) -> &mut Option<CheckResult> {
    let checks = status.checks.get_or_insert_with(Default::default);
    match check {
        Check::Contract => &mut checks.contract,
        Check::SmokeTraining => &mut checks.smoke_training,
    }
}

fn parse_time(text: Option<&str>) -> Option<Timestamp> {
    text.and_then(|t| t.parse().ok())
}

fn set_condition(
    status: &mut ModelRolloutStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
    generation: Option<i64>,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let changed = conditions.iter().find(|c| c.type_ == type_).is_none_or(|c| c.status != value);
    let previous_time = conditions.iter().find(|c| c.type_ == type_).and_then(|c| c.last_transition_time.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(truncate(message, 1024)),
        last_transition_time: if changed { Some(now.to_string()) } else { previous_time },
        observed_generation: generation,
    });
}

/// The rollback reason: the metrics that failed with their numbers, or the traffic-split mismatch.
fn describe_failure(verdict: &rampart_analysis::StepVerdict) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(srm) = &verdict.srm
        && srm.verdict == Verdict::Fail
    {
        parts.push(srm.reason.clone());
    }
    for metric in verdict.metrics.iter().filter(|m| m.verdict == Verdict::Fail) {
        parts.push(format!("{}: {}", metric.name, metric.reason));
    }
    if parts.is_empty() { verdict.reason.clone() } else { parts.join("; ") }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 && secs.is_multiple_of(60) {
        format!("{}h{}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{:.1}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééééé", 7), "éé...");
    }

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_holds() {
        let mut status = ModelRolloutStatus::default();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        set_condition(&mut status, "Ready", "False", "Progressing", "a", t0, Some(1));
        set_condition(&mut status, "Ready", "False", "Paused", "b", t1, Some(1));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(c.last_transition_time.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(c.reason.as_deref(), Some("Paused"));
        set_condition(&mut status, "Ready", "True", "Promoted", "c", t1, Some(1));
        let c = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(c.last_transition_time.as_deref(), Some("2026-01-01T00:05:00Z"));
    }
}
