//! The registry trail: every registration, rollout start, step, verdict, rollback and ending the controller records in
//! the Postgres registry. Records are first written into the rollout's `status.outbox` (so they live in the cluster
//! and survive a controller restart), then applied to Postgres in order and removed from the outbox. A Postgres outage
//! therefore never delays a rollback and loses nothing: the outbox drains when the database is back.

use std::time::Duration;

use rampart_registry::{
    NewRollout, NewVersion, Outcome, Registry, RegistryError, StepRecord, VerdictRecord, Verification,
};
use serde::{Deserialize, Serialize};

/// Most records kept in the outbox; beyond it the oldest `Continue` verdicts are dropped first (they carry the least).
pub const OUTBOX_LIMIT: usize = 200;

/// Who moves `production` back when a bake fails (the alias history's actor).
pub const BAKE_ACTOR: &str = "rampart (bake after promotion)";

/// One record for the registry.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(tag = "record", rename_all = "camelCase")]
pub enum TrailRecord {
    /// Register the candidate version (idempotent; a different digest for the same version is refused).
    RegisterVersion { version: NewVersion },
    /// The candidate's signature verified against a trusted key.
    MarkVerified { model: String, version: String, verification: Verification },
    /// The rollout started.
    StartRollout { rollout: NewRollout },
    /// A step completed.
    Step { uid: String, step: StepRecord },
    /// An analysis look's verdict, with its statistics.
    Verdict { uid: String, verdict: VerdictRecord },
    /// Traffic went back to the baseline.
    Rollback { uid: String, reason: String, statistics: serde_json::Value },
    /// A bake after promotion failed: traffic went back to the previous version, and `production` goes back to it.
    RollbackAfterPromotion { uid: String, reason: String, statistics: serde_json::Value },
    /// The rollout ended without a traffic decision (a check failed) or was aborted.
    Finish { uid: String, aborted: bool, reason: String },
    /// The candidate was promoted without a verified signature (`insecureSkipSignature`): the production alias does
    /// not move, since the registry never points an alias at an unverified version.
    PromotedUnverified { model: String, uid: String, version: String },
}

impl TrailRecord {
    /// True for the records that put the rollout in the registry (its version, verification and start): when the
    /// registry refuses one, the rollout can never be promoted.
    pub fn establishes_rollout(&self) -> bool {
        matches!(
            self,
            TrailRecord::RegisterVersion { .. } | TrailRecord::MarkVerified { .. } | TrailRecord::StartRollout { .. }
        )
    }

    /// True for a `Continue` verdict, the first thing dropped when the outbox overflows.
    pub fn is_continue_verdict(&self) -> bool {
        matches!(self, TrailRecord::Verdict { verdict, .. } if verdict.verdict == "continue")
    }

    /// Applies the record. Every registry call used here is idempotent, so applying a record twice (a crash between
    /// applying and trimming the outbox) records it once.
    pub async fn apply(&self, registry: &Registry) -> Result<(), RegistryError> {
        self.apply_from(registry, &Origin::default()).await
    }

    /// Applies a record from a rollout's outbox: writes that establish the model and version are made on behalf of
    /// the rollout's namespace (which must own the model), and a start is the attempt the retry request began.
    pub async fn apply_from(&self, registry: &Registry, origin: &Origin<'_>) -> Result<(), RegistryError> {
        match self {
            TrailRecord::RegisterVersion { version } => match origin.namespace {
                Some(namespace) => registry.register_version_for(namespace, version).await.map(drop),
                None => registry.register_version(version).await.map(drop),
            },
            TrailRecord::MarkVerified { model, version, verification } => match origin.namespace {
                Some(namespace) => registry.mark_verified_for(namespace, model, version, verification).await.map(drop),
                None => registry.mark_verified(model, version, verification).await.map(drop),
            },
            TrailRecord::StartRollout { rollout } => {
                let mut rollout = rollout.clone();
                // A baseline the registry has never seen (serving before Rampart) is recorded as "none".
                if let Some(baseline) = &rollout.baseline_version {
                    match registry.version(&rollout.model, baseline).await {
                        Ok(_) => {}
                        Err(RegistryError::VersionNotFound { .. }) => rollout.baseline_version = None,
                        Err(err) => return Err(err),
                    }
                }
                registry.start_rollout_attempt(&rollout, origin.retry).await.map(drop)
            }
            TrailRecord::Step { uid, step } => registry.record_step(uid, step).await.map(drop),
            TrailRecord::Verdict { uid, verdict } => registry.record_verdict(uid, verdict).await.map(drop),
            TrailRecord::Rollback { uid, reason, statistics } => {
                registry.record_rollback(uid, reason, statistics).await.map(drop)
            }
            TrailRecord::RollbackAfterPromotion { uid, reason, statistics } => {
                registry.record_rollback_after_promotion(uid, reason, statistics, BAKE_ACTOR).await.map(drop)
            }
            TrailRecord::Finish { uid, aborted, reason } => {
                let outcome = if *aborted { Outcome::Aborted } else { Outcome::Failed };
                registry.finish_rollout(uid, outcome, reason).await.map(drop)
            }
            TrailRecord::PromotedUnverified { model, uid, version } => registry
                .append_event(
                    model,
                    &rampart_registry::NewEvent {
                        kind: rampart_registry::EventKind::Other("promoted_unverified".into()),
                        rollout_uid: Some(uid.clone()),
                        payload: serde_json::json!({
                            "candidate": version,
                            "note": "promoted with insecureSkipSignature: the production alias was not moved",
                        }),
                        idempotency_key: Some(format!("{uid}/promoted_unverified")),
                    },
                )
                .await
                .map(drop),
        }
    }
}

/// Where a record comes from: the namespace of the rollout whose outbox held it, and the retry request (the
/// `rampart.dev/retry` value) of the attempt that queued it. Default: an operator's write, first attempt.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    /// The rollout's namespace (ownership of the model is checked against it).
    pub namespace: Option<&'a str>,
    /// The retry request that began the attempt; None for the first attempt.
    pub retry: Option<&'a str>,
}

/// The field of a queued record naming the retry request of the attempt that queued it (absent for the first).
pub const RETRY_FIELD: &str = "retry";

/// Adds `record` to the outbox, trimming it to [`OUTBOX_LIMIT`].
pub fn push(outbox: &mut Vec<String>, record: &TrailRecord) {
    push_for_attempt(outbox, record, None);
}

/// Adds `record`, queued by the attempt that the retry request `retry` began, to the outbox (see [`push`]).
pub fn push_for_attempt(outbox: &mut Vec<String>, record: &TrailRecord, retry: Option<&str>) {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let (Some(retry), Some(object)) = (retry, value.as_object_mut()) {
        // Annotation values can be long; the registry keeps at most 253 characters of an attempt's key.
        let key = if retry.len() > 253 { crate::labels::label_value(retry) } else { retry.to_string() };
        object.insert(RETRY_FIELD.into(), serde_json::Value::String(key));
    }
    if let Ok(text) = serde_json::to_string(&value) {
        outbox.push(text);
    }
    while outbox.len() > OUTBOX_LIMIT {
        let droppable = outbox.iter().position(|text| {
            serde_json::from_str::<TrailRecord>(text).map(|r| r.is_continue_verdict()).unwrap_or(true)
        });
        match droppable {
            Some(index) => {
                outbox.remove(index);
            }
            None => {
                outbox.remove(0);
            }
        }
    }
}

/// A lazily opened connection to the registry: Postgres may be down when the controller starts.
pub struct RegistryConnection {
    url: String,
    registry: tokio::sync::Mutex<Option<Registry>>,
    shared_models: bool,
}

impl RegistryConnection {
    /// A connection to `url`, opened on first use.
    pub fn new(url: &str) -> Self {
        Self { url: url.to_string(), registry: tokio::sync::Mutex::new(None), shared_models: false }
    }

    /// Models are not owned by namespaces (see [`Registry::with_shared_models`]).
    pub fn with_shared_models(mut self, shared: bool) -> Self {
        self.shared_models = shared;
        self
    }

    /// The registry, connecting (and applying migrations) if needed. Fails fast when Postgres is unreachable.
    pub async fn get(&self) -> Result<Registry, String> {
        let mut guard = self.registry.lock().await;
        if let Some(registry) = guard.as_ref() {
            return Ok(registry.clone());
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(3))
            .connect(&self.url);
        let pool = tokio::time::timeout(Duration::from_secs(5), pool)
            .await
            .map_err(|_| "connecting to the registry timed out".to_string())?
            .map_err(|err| format!("cannot connect to the registry: {err}"))?;
        let registry = Registry::from_pool(pool).with_shared_models(self.shared_models);
        registry.migrate().await.map_err(|err| format!("cannot migrate the registry: {err}"))?;
        *guard = Some(registry.clone());
        Ok(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(v: &str, evaluation: u32) -> TrailRecord {
        TrailRecord::Verdict {
            uid: "u".into(),
            verdict: VerdictRecord { step_index: 1, evaluation, verdict: v.into(), statistics: serde_json::json!({}) },
        }
    }

    #[test]
    fn an_overflowing_outbox_drops_continue_verdicts_before_anything_else() {
        let mut outbox = Vec::new();
        push(&mut outbox, &TrailRecord::Finish { uid: "u".into(), aborted: false, reason: "first".into() });
        for i in 0..OUTBOX_LIMIT as u32 {
            push(&mut outbox, &verdict("continue", i));
        }
        push(&mut outbox, &verdict("fail", 9999));
        assert_eq!(outbox.len(), OUTBOX_LIMIT);
        assert!(outbox[0].contains("first"), "the oldest non-Continue record is kept");
        assert!(outbox.last().unwrap().contains("\"fail\""));
    }

    #[test]
    fn records_round_trip_through_json() {
        let record = TrailRecord::Step {
            uid: "u".into(),
            step: StepRecord { index: 2, canary_weight: 25, description: "setWeight 25".into() },
        };
        let text = serde_json::to_string(&record).unwrap();
        let back: TrailRecord = serde_json::from_str(&text).unwrap();
        assert!(matches!(back, TrailRecord::Step { step, .. } if step.canary_weight == 25));
    }
}
