//! The plain data the registry takes and returns: versions, aliases, rollouts, events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Timestamps as stored (microsecond precision, UTC).
pub type Timestamp = DateTime<Utc>;

/// Where a version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    /// Registered; its signature has not been verified (yet).
    Unverified,
    /// Its signature and digest were verified; it may be aliased and promoted.
    Verified,
    /// Verification failed; it must not get traffic.
    Rejected,
    /// Taken out of use by an operator.
    Retired,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unverified => "unverified",
            Self::Verified => "verified",
            Self::Rejected => "rejected",
            Self::Retired => "retired",
        }
    }

    pub(crate) fn parse(text: &str) -> Self {
        match text {
            "verified" => Self::Verified,
            "rejected" => Self::Rejected,
            "retired" => Self::Retired,
            _ => Self::Unverified,
        }
    }
}

impl std::fmt::Display for VersionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version to register.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewVersion {
    pub model: String,
    pub version: String,
    pub uri: String,
    /// Model digest, `sha256:<64 hex>` (see `rampart_checks::signing::model_digest`).
    pub digest: String,
    pub size_bytes: Option<i64>,
    /// e.g. `onnx`, `safetensors`.
    pub format: Option<String>,
    /// The tensor contract (inputs/outputs with shapes and dtypes) as JSON.
    pub tensor_contract: Option<Value>,
    /// The signature bundle JSON, when the version is signed.
    pub signature_bundle: Option<String>,
}

/// A registered version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub model: String,
    pub version: String,
    pub uri: String,
    pub digest: String,
    pub size_bytes: Option<i64>,
    pub format: Option<String>,
    pub tensor_contract: Option<Value>,
    pub signature_bundle: Option<String>,
    /// Key id of the trusted key that signed it (set by [`crate::Registry::mark_verified`]).
    pub signer_key_id: Option<String>,
    pub verified_at: Option<Timestamp>,
    pub status: VersionStatus,
    /// Why it was rejected or retired.
    pub status_reason: Option<String>,
    pub created_at: Timestamp,
}

/// The result of a successful verification, to record on a version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Verification {
    /// The digest that was verified (`sha256:<hex>`); must equal the registered digest.
    pub digest: String,
    pub signer_key_id: String,
    /// The bundle that was verified (stored when the version had none).
    pub signature_bundle: Option<String>,
    /// The files fetched from the URI and checked against the signed manifest (empty when only the bundle was
    /// checked, e.g. by `rampart sign --register`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<VerifiedFile>,
    /// How serving pods load the bytes: `verified-copy` or `before-traffic-only` (see [`ServingVerification`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<ServingVerification>,
}

/// One file of a verified version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedFile {
    /// Path relative to the model root, as in the signed manifest (`.` for a single-file model).
    pub path: String,
    /// Hex sha256 of the bytes fetched, equal to the signed one.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// The object store's version id for the object that was read, when the store keeps versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_version: Option<String>,
}

/// How the serving pods of a verified version load its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServingVerification {
    /// Each serving pod loads only a copy its own init container fetched and verified.
    VerifiedCopy,
    /// Verified once before traffic; serving pods read the URI themselves (an explicit opt-out).
    BeforeTrafficOnly,
}

impl ServingVerification {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifiedCopy => "verified-copy",
            Self::BeforeTrafficOnly => "before-traffic-only",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "verified-copy" => Some(Self::VerifiedCopy),
            "before-traffic-only" => Some(Self::BeforeTrafficOnly),
            _ => None,
        }
    }
}

/// A request to point an alias at a version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AliasMove {
    pub model: String,
    /// e.g. `production`, `staging`.
    pub alias: String,
    pub version: String,
    /// Who moved it (`controller`, `rampart-cli:alice`...).
    pub actor: String,
    pub reason: String,
    /// Compare-and-set: only move when the alias points at this version now (`None`: move unconditionally).
    pub expected_current: Option<String>,
    /// The rollout that caused the move, if any.
    pub rollout_uid: Option<String>,
}

/// One recorded alias move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasMoveRecord {
    pub model: String,
    pub alias: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub moved_at: Timestamp,
    pub actor: String,
    pub reason: String,
    pub rollout_uid: Option<String>,
}

/// How a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The candidate became `production`.
    Promoted,
    /// Traffic went back to the baseline because the candidate failed a check.
    RolledBack,
    /// The rollout could not run (bad spec, check Job failed...), no traffic decision was needed.
    Failed,
    /// An operator aborted it.
    Aborted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "promoted" => Some(Self::Promoted),
            "rolled_back" => Some(Self::RolledBack),
            "failed" => Some(Self::Failed),
            "aborted" => Some(Self::Aborted),
            _ => None,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rollout to record (from a ModelRollout).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewRollout {
    pub model: String,
    /// The ModelRollout's `metadata.uid`.
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub candidate_version: String,
    /// `None`: the model has no production version yet (first rollout).
    pub baseline_version: Option<String>,
}

/// A recorded rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub model: String,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub candidate_version: String,
    pub baseline_version: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub outcome: Option<Outcome>,
    pub outcome_reason: Option<String>,
    /// Which attempt of the ModelRollout this is: 1, then one more per `rampart retry`.
    #[serde(default = "first_attempt")]
    pub attempt: i32,
}

fn first_attempt() -> i32 {
    1
}

/// A rollback with the numbers the decision was made on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub rollout: RolloutRecord,
    pub reason: String,
    /// The analysis statistics at the moment of decision (as the controller passed them).
    pub statistics: Value,
    pub decided_at: Timestamp,
}

/// A traffic step the controller applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    /// Index into `spec.steps`.
    pub index: u32,
    /// Canary traffic weight after the step, percent.
    pub canary_weight: u32,
    /// e.g. `setWeight 20`, `pause 5m`, `analysis 10m`.
    pub description: String,
}

/// An analysis verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub step_index: u32,
    /// Which evaluation within the step (0, 1, ... per analysis interval).
    pub evaluation: u32,
    /// `pass`, `fail`, `continue`, `inconclusive`.
    pub verdict: String,
    /// Per-metric estimates, bounds, p-values... as produced by the analysis.
    pub statistics: Value,
}

/// What kind of event a log row records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    VersionRegistered,
    VersionVerified,
    VersionRejected,
    AliasMoved,
    RolloutStarted,
    StepApplied,
    Verdict,
    RolledBack,
    Promoted,
    RolloutFinished,
    /// Anything else (free-form, e.g. an operator note).
    Other(String),
}

impl EventKind {
    pub fn as_str(&self) -> &str {
        match self {
            Self::VersionRegistered => "version_registered",
            Self::VersionVerified => "version_verified",
            Self::VersionRejected => "version_rejected",
            Self::AliasMoved => "alias_moved",
            Self::RolloutStarted => "rollout_started",
            Self::StepApplied => "step_applied",
            Self::Verdict => "verdict",
            Self::RolledBack => "rolled_back",
            Self::Promoted => "promoted",
            Self::RolloutFinished => "rollout_finished",
            Self::Other(other) => other,
        }
    }

    pub(crate) fn parse(text: &str) -> Self {
        match text {
            "version_registered" => Self::VersionRegistered,
            "version_verified" => Self::VersionVerified,
            "version_rejected" => Self::VersionRejected,
            "alias_moved" => Self::AliasMoved,
            "rollout_started" => Self::RolloutStarted,
            "step_applied" => Self::StepApplied,
            "verdict" => Self::Verdict,
            "rolled_back" => Self::RolledBack,
            "promoted" => Self::Promoted,
            "rollout_finished" => Self::RolloutFinished,
            other => Self::Other(other.to_string()),
        }
    }
}

/// An event to append to a model's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewEvent {
    pub kind: EventKind,
    /// The rollout it belongs to (its uid), if any.
    pub rollout_uid: Option<String>,
    pub payload: Value,
    /// When set, appending the same key again for this model returns the first event instead of adding one (safe
    /// retries after an outage).
    pub idempotency_key: Option<String>,
}

/// One row of a model's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub model: String,
    /// Position in the model's chain, from 1.
    pub seq: i64,
    pub rollout_uid: Option<String>,
    pub kind: EventKind,
    pub occurred_at: Timestamp,
    pub payload: Value,
    pub idempotency_key: Option<String>,
    /// Hex sha256 of the previous row (64 zeros for the first).
    pub prev_hash: String,
    /// Hex sha256 of this row.
    pub hash: String,
}
