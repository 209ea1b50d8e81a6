//! The rollout's state machine as a pure decision: given the spec, the status, the operator's intent (annotations),
//! the time and what was observed, say what to do. No I/O happens here; `crate::reconcile` carries decisions out.
//!
//! A reconcile asks [`decide`] first with nothing observed. When the decision needs to see something (a check Job,
//! the baseline, the metrics, the registry's promotion record), it answers [`Decision::Observe`] with what it needs;
//! the executor gathers exactly that and asks again. The second answer is always [`Decision::Act`]: effects to carry
//! out in order, the new status (written once, only when it changed), at most one Event, and when to come back.
//!
//! Each kind of ending lives once, in [`endings`]: advance to the next step, fail before traffic, roll back with a
//! typed [`RollbackCause`], enter promotion, pause.

mod analysis;
mod bake;
pub mod capacity;
pub mod endings;
mod gates;
mod promotion;
mod shadow;
pub mod steps;
#[cfg(test)]
mod tests;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use rampart_analysis::{ArmPair, MetricObservation};
use rampart_api::v1alpha1::HeaderRule;
use rampart_api::{ModelRolloutSpec, ModelRolloutStatus, Phase};

use crate::jobs::{Check, JobState};
use crate::verify::Signer;

pub use endings::RollbackCause;

/// What the controller's configuration contributes to decisions.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Records are queued for the registry (a database URL is configured).
    pub registry: bool,
    /// Time after a weight change before an analysis step counts.
    pub metrics_settle: Duration,
    /// Analysis look interval when the step names none.
    pub default_analysis_interval: Duration,
    /// A look whose verdict is still Continue writes status at most this often (each look is still taken; the status
    /// shows the latest written one). Zero writes every look.
    pub analysis_status_interval: Duration,
    /// Allowed smoke-training image prefixes (empty: none allowed).
    pub smoke_image_allow_list: Vec<String>,
    /// Seals the statistics engine's state kept in status, so a state written by anyone else is discarded (the
    /// analysis starts over) instead of trusted. None: the state is only checked for consistency.
    pub state_key: Option<rampart_analysis::StateKey>,
    /// The Prometheus servers a rollout may name in `prometheusAddress`.
    pub prometheus_allow: crate::prometheus::AllowList,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            registry: false,
            metrics_settle: Duration::from_secs(30),
            default_analysis_interval: Duration::from_secs(60),
            analysis_status_interval: Duration::ZERO,
            smoke_image_allow_list: Vec::new(),
            state_key: None,
            prometheus_allow: Default::default(),
        }
    }
}

/// The operator's intent, read from the rollout's annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intent {
    /// `rampart.dev/promote` is set: skip the remaining steps.
    pub promote: bool,
    /// `rampart.dev/abort` is set: roll back now.
    pub abort: bool,
    /// The value of `rampart.dev/retry`, when set.
    pub retry: Option<String>,
}

/// Everything a decision reads.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// The rollout's uid (registry records are keyed by it).
    pub uid: &'a str,
    /// The rollout's namespace.
    pub namespace: &'a str,
    /// The rollout's name (messages).
    pub name: &'a str,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The spec.
    pub spec: &'a ModelRolloutSpec,
    /// The status as read (after any outbox flush).
    pub status: &'a ModelRolloutStatus,
    /// The operator's intent.
    pub intent: &'a Intent,
    /// The controller's configuration.
    pub settings: &'a Settings,
    /// Now.
    pub now: Timestamp,
    /// When the rollout was deleted (`metadata.deletionTimestamp`), if it was.
    pub deleted_at: Option<Timestamp>,
    /// The rollout carries Rampart's finalizer.
    pub has_finalizer: bool,
    /// The registry refused a record that puts this rollout in it (e.g. the model belongs to another namespace):
    /// why. The rollout cannot be promoted, so it stops (see [`endings::registry_refused`]).
    pub registry_refused: Option<String>,
    /// Another live rollout holds one of this rollout's targets (see [`crate::claims`]): which, and who holds it.
    /// The rollout waits before traffic, and acts on no target, until the holder ends.
    pub target_holder: Option<String>,
    /// What was observed for this decision.
    pub observed: Observation,
    /// Why a canary pod's verifying init container refused the artifact, when one did (read on every reconcile while
    /// the canary exists, whatever the decision asks for).
    pub canary_refused: Option<String>,
    /// Whether the status read is Rampart's (see [`crate::seal`]).
    pub status_trust: crate::seal::Trust,
}

/// What the executor must look at before the decision can be made.
#[derive(Clone, Debug, PartialEq)]
pub enum Need {
    /// Verify the signature and read the baseline (starting a rollout).
    Start,
    /// One check Job: build it when `started` is false, read where it stands otherwise.
    Job { check: Check, started: bool },
    /// The metrics since `since` (one analysis look).
    Look { since: Timestamp },
    /// The shadow comparison's counts (pairs, agreements, responses per side) since `since`.
    ShadowLook { since: Timestamp },
    /// The registry's promotion record and the baseline's state.
    Promotion,
    /// The baseline's and the canary's replicas (a capacity-aware `setWeight` step).
    Capacity,
}

/// What the executor observed, answering a [`Need`].
#[derive(Clone, Debug)]
pub enum Observation {
    /// Nothing yet.
    Nothing,
    /// The start: signature verification and the baseline.
    Start(StartObservation),
    /// A check Job that is to be created (the Job as built, or why it cannot be).
    JobToCreate { check: Check, job: Result<Box<Job>, String> },
    /// A running check Job's state.
    Job {
        check: Check,
        state: JobState,
        /// A smoke run's loss curve from its termination message (empty for other checks).
        curve: Vec<rampart_api::v1alpha1::LossPoint>,
    },
    /// One analysis look's counts, or why they could not be read.
    Look(Result<LookCounts, String>),
    /// Where promotion stands.
    Promotion(PromotionObservation),
    /// The baseline's and the canary's replicas, or why they cannot be read.
    Capacity(Result<capacity::CapacityObservation, String>),
}

/// What starting a rollout observed.
#[derive(Clone, Debug)]
pub struct StartObservation {
    /// `Ok(Some)`: signed by a trusted key; `Ok(None)`: signature checking skipped (allowed); `Err`: why not.
    pub signature: Result<Option<Signer>, String>,
    /// The baseline, or why it cannot be used.
    pub baseline: Result<BaselineFacts, String>,
}

/// What the baseline serves before the rollout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BaselineFacts {
    /// Its version label (or `spec.baseline.version`).
    pub version: Option<String>,
    /// Its current model URI.
    pub uri: Option<String>,
    /// Its `spec.replicas` (Deployment backend).
    pub replicas: Option<i32>,
    /// GPUs one of its pods asks for, or why they cannot be counted (Deployment backend).
    pub gpus_per_pod: Option<Result<i32, String>>,
}

/// The counts of one analysis look: per metric, cumulative since the step's counting started, and the request counts
/// for the traffic-split check.
#[derive(Clone, Debug, Default)]
pub struct LookCounts {
    /// One observation per metric.
    pub metrics: Vec<MetricObservation>,
    /// Requests per arm, when the split is checked.
    pub requests: Option<ArmPair<f64>>,
}

/// Where promotion stands.
#[derive(Clone, Debug, PartialEq)]
pub struct PromotionObservation {
    /// `Ok`: the registry recorded the promotion (or no registry is configured); `Err`: why it must wait.
    pub registry: Result<(), String>,
    /// The baseline Deployment, for the deployment backend.
    pub baseline: BaselineState,
    /// Both Deployments' replicas, for capacity-aware steps (read once the registry recorded the promotion).
    pub capacity: Option<Result<capacity::CapacityObservation, String>>,
    /// The baseline Deployment's replicas (deployment backend; a bake scaling it to `previousReplicas` keeps them).
    pub baseline_replicas: Option<i32>,
}

/// The baseline Deployment during promotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineState {
    /// Not a Deployment backend (KServe), or not read.
    NotApplicable,
    /// Its template does not serve the candidate yet.
    ServesPrevious,
    /// It serves the candidate but has not rolled it out.
    RollingOut,
    /// It serves the candidate, rolled out.
    RolledOut,
}

/// When to reconcile again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// After this long (or sooner, on a change).
    After(Duration),
    /// Only when something changes (the rollout, or a watched object).
    OnChange,
}

/// One Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Warning rather than Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What happened.
    pub message: String,
}

/// Something to change in the cluster, carried out in order before status is written. Each is idempotent, so a
/// reconcile that fails half-way and runs again does no harm.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Create a check Job (already built), unless it exists.
    CreateCheckJob(Box<Job>),
    /// Delete the check Jobs of an earlier attempt (retry).
    DeleteCheckJobs,
    /// Send `weight` percent of traffic to the canary, and every request of the `cohort` (header rules) when there
    /// is one; `mirror` copies the baseline's requests to the canary (a shadow step); `create_canary` first creates
    /// the canary Deployment.
    SetWeight { weight: i32, create_canary: bool, cohort: Option<Vec<HeaderRule>>, mirror: bool },
    /// All traffic back to the baseline. `after_failing_verdict` times the rollback for the latency metric.
    RouteAllToBaseline { after_failing_verdict: bool },
    /// Delete the canary Deployment.
    DeleteCanary,
    /// Set the baseline Deployment's replicas (capacity-aware steps; a bake keeps the previous version at
    /// `previousReplicas`).
    ScaleBaseline { replicas: i32 },
    /// Set the canary Deployment's replicas, creating it with that many when it does not exist yet (capacity-aware
    /// steps; zero leaves a missing canary missing).
    ScaleCanary { replicas: i32 },
    /// Point the baseline Deployment at the candidate.
    PromoteBaseline,
    /// KServe: the candidate takes all traffic as the new default.
    PromoteKServe,
    /// Add Rampart's finalizer, so that deleting the rollout first returns traffic to the baseline.
    AddFinalizer,
    /// Remove Rampart's finalizer: the rollout may go.
    ReleaseFinalizer,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq)]
pub struct Act {
    /// Changes to make, in order, before status is written.
    pub effects: Vec<Effect>,
    /// The new status; written only when it differs from the one read.
    pub status: ModelRolloutStatus,
    /// The Event for this transition, if any.
    pub event: Option<Note>,
    /// When to come back.
    pub requeue: Requeue,
}

/// The answer of [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Observe this, then decide again.
    Observe(Need),
    /// Act.
    Act(Box<Act>),
}

/// Why no decision can be made: the spec passed admission but cannot be acted on, or the statistics engine refused.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// The spec cannot be acted on.
    #[error("{0}")]
    Spec(String),
    /// The analysis engine refused the configuration or the counts.
    #[error("analysis failed: {0}")]
    Analysis(#[from] rampart_analysis::AnalysisError),
}

/// Rampart's finalizer on a ModelRollout.
pub const FINALIZER: &str = "rampart.dev/return-traffic";

/// The state machine: one decision for one rollout.
pub fn decide(facts: &Facts<'_>) -> Result<Decision, DecideError> {
    if facts.deleted_at.is_some() {
        return Ok(endings::release(facts));
    }
    let mut decision = decide_phase(facts)?;
    // A rollout that can still move traffic carries the finalizer, so deleting it returns traffic first.
    let active = !facts.status.phase.unwrap_or(Phase::Pending).is_terminal();
    if let Decision::Act(act) = &mut decision
        && !facts.has_finalizer
        && (active || act.status.phase.is_some_and(|p| !p.is_terminal()))
    {
        act.effects.insert(0, Effect::AddFinalizer);
    }
    Ok(decision)
}

fn decide_phase(facts: &Facts<'_>) -> Result<Decision, DecideError> {
    let status = facts.status;
    let phase = status.phase.unwrap_or(Phase::Pending);

    if facts.status_trust == crate::seal::Trust::Forged {
        return Ok(endings::status_forged(facts));
    }
    if phase == Phase::Baking {
        // Promoted already: an abort, a deletion or a failing look rolls back after promotion (see `bake`).
        return bake::bake(facts);
    }
    if let Some(why) = &facts.registry_refused
        && !phase.is_terminal()
    {
        return Ok(endings::registry_refused(facts, why));
    }
    if phase.is_terminal() {
        if let Some(retry) = &facts.intent.retry
            && status.handled_retry.as_ref() != Some(retry)
        {
            return Ok(endings::retry(facts, retry.clone()));
        }
        return Ok(endings::stay(facts, Requeue::OnChange));
    }
    if facts.intent.abort && phase != Phase::RollingBack {
        return Ok(endings::roll_back(facts, facts.status.clone(), RollbackCause::Aborted));
    }
    // An abort still ends a waiting rollout (the executor leaves targets it never took alone).
    if let Some(holder) = &facts.target_holder
        && phase != Phase::RollingBack
    {
        return Ok(endings::wait_for_target(facts, holder));
    }
    match phase {
        Phase::Pending | Phase::Verifying => gates::start(facts),
        Phase::Checking => gates::checks(facts),
        Phase::Progressing | Phase::Paused => {
            if let Some(reason) = &facts.canary_refused {
                return Ok(endings::roll_back(
                    facts,
                    facts.status.clone(),
                    RollbackCause::ArtifactRefused(reason.clone()),
                ));
            }
            if facts.intent.promote {
                let message = "promoted by the rampart.dev/promote annotation (rampart promote): skipping the \
                               remaining steps";
                return Ok(endings::enter_promotion(facts, facts.status.clone(), message.into()));
            }
            steps::progress(facts)
        }
        Phase::Promoting => promotion::promote(facts),
        Phase::Baking => bake::bake(facts),
        Phase::RollingBack => Ok(endings::finish_rollback(facts)),
        Phase::Succeeded | Phase::RolledBack | Phase::Failed => Ok(endings::stay(facts, Requeue::OnChange)),
    }
}

/// Time since the current step started (zero when unknown or in the future).
pub fn step_elapsed(status: &ModelRolloutStatus, now: Timestamp) -> Duration {
    crate::status::parse_time(status.step_started_at.as_deref())
        .map(|started| now.duration_since(started))
        .filter(|d| d.is_positive())
        .map(|d| d.unsigned_abs())
        .unwrap_or(Duration::ZERO)
}

/// A duration from the spec.
pub fn parse_duration(text: &str) -> Result<Duration, DecideError> {
    rampart_api::duration::parse_duration(text).map_err(|err| DecideError::Spec(err.to_string()))
}
