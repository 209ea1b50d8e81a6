//! Draining the registry outbox: the records a rollout queued in `status.outbox` are applied to Postgres in order and
//! dropped from the outbox. Bounded in time and paused for a while after a failure, so a Postgres outage never slows
//! a reconcile (a rollback least of all). Also the one registry write promotion waits for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rampart_api::v1alpha1::CheckOutcome;
use rampart_api::{ModelRolloutSpec, ModelRolloutStatus};

use crate::trail::{RegistryConnection, TrailRecord};

/// How long one flush may take.
const FLUSH_BUDGET: Duration = Duration::from_millis(1500);
/// How long flushes for a rollout pause after the registry failed it.
const BACKOFF: Duration = Duration::from_secs(5);

/// When the registry last failed each rollout's outbox (by uid).
#[derive(Default)]
pub struct Backoff {
    failed_at: Mutex<HashMap<String, Instant>>,
}

impl Backoff {
    fn waiting(&self, uid: &str) -> bool {
        let failed = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
        failed.get(uid).is_some_and(|at| at.elapsed() < BACKOFF)
    }

    fn failed(&self, uid: &str) {
        self.failed_at.lock().unwrap_or_else(|p| p.into_inner()).insert(uid.to_string(), Instant::now());
    }

    /// Forgets a rollout (it was deleted).
    pub fn forget(&self, uid: &str) {
        self.failed_at.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}

/// What a flush did.
#[derive(Debug, Default)]
pub struct Flushed {
    /// The outbox that remains, when at least one record was applied (the caller writes it with the reconcile's
    /// status); None when nothing changed.
    pub remaining: Option<Vec<String>>,
    /// The registry failed (it is skipped for a while).
    pub failed: bool,
}

/// Applies the queued records in order.
pub async fn flush(
    registry: &RegistryConnection,
    backoff: &Backoff,
    uid: &str,
    rollout: &str,
    outbox: &[String],
) -> Flushed {
    if outbox.is_empty() || backoff.waiting(uid) {
        return Flushed::default();
    }
    let applied = tokio::time::timeout(FLUSH_BUDGET, async {
        let registry = match registry.get().await {
            Ok(registry) => registry,
            Err(err) => return (0, Some(err)),
        };
        let mut applied = 0;
        for text in outbox {
            let Ok(record) = serde_json::from_str::<TrailRecord>(text) else {
                applied += 1;
                continue;
            };
            match record.apply(&registry).await {
                Ok(()) => applied += 1,
                Err(err) if err.is_retryable() => return (applied, Some(err.to_string())),
                Err(err) => {
                    tracing::warn!(%rollout, error = %err, "the registry refused a record; dropping it");
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
        tracing::warn!(%rollout, error = %err, pending = outbox.len() - applied, "registry unavailable; the trail waits in the outbox");
        backoff.failed(uid);
    }
    Flushed { remaining: (applied > 0).then(|| outbox[applied..].to_vec()), failed: failure.is_some() }
}

/// Records the promotion before anything moves: the outbox must be empty and the `production` alias must move.
/// Unsigned (insecure) candidates are recorded as promoted without moving the alias. `Err` says why promotion waits.
pub async fn record_promotion(
    registry: &RegistryConnection,
    spec: &ModelRolloutSpec,
    status: &ModelRolloutStatus,
    uid: &str,
    actor: &str,
) -> Result<(), String> {
    let pending = status.outbox.as_ref().map_or(0, Vec::len);
    if pending > 0 {
        return Err(format!("{pending} trail records not yet written"));
    }
    let registry = registry.get().await?;
    let verified =
        status.checks.as_ref().and_then(|c| c.signature.as_ref()).is_some_and(|s| s.result == CheckOutcome::Passed);
    let result = if verified {
        registry.record_promotion(uid, actor).await.map(drop)
    } else {
        TrailRecord::PromotedUnverified {
            model: spec.model.clone(),
            uid: uid.to_string(),
            version: spec.candidate.version.clone(),
        }
        .apply(&registry)
        .await
    };
    result.map_err(|err| err.to_string())
}
