//! Rollouts: what the controller records as a rollout runs (start, steps, verdicts, rollback, promotion) and what
//! the CLI reads back (rollouts with outcome, rollbacks with the statistics behind them).

use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::aliases::move_alias_locked;
use crate::events::{append_locked, parse_payload};
use crate::records::{
    AliasMove, EventKind, EventRecord, NewEvent, NewRollout, Outcome, RollbackRecord, RolloutRecord, StepRecord,
    VerdictRecord,
};
use crate::versions::fetch_version;
use crate::{LockedModel, PRODUCTION, Registry, RegistryError, Result, lock_model, now, validate_name};

/// A rollout row with its model's lock held.
struct LockedRollout {
    id: i64,
    record: RolloutRecord,
}

async fn fetch_rollouts(
    conn: &mut PgConnection,
    model: Option<&str>,
    uid: Option<&str>,
) -> Result<Vec<(i64, RolloutRecord)>> {
    let rows = sqlx::query!(
        r#"SELECT r.id, m.name AS model, r.uid, r.namespace, r.name, c.version AS candidate,
                  b.version AS "baseline?", r.started_at, r.finished_at, r.outcome, r.outcome_reason
           FROM rollouts r
           JOIN models m ON m.id = r.model_id
           JOIN model_versions c ON c.id = r.candidate_version_id
           LEFT JOIN model_versions b ON b.id = r.baseline_version_id
           WHERE ($1::text IS NULL OR m.name = $1) AND ($2::text IS NULL OR r.uid = $2)
           ORDER BY r.started_at DESC, r.id DESC"#,
        model,
        uid
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.id,
                RolloutRecord {
                    model: row.model,
                    uid: row.uid,
                    namespace: row.namespace,
                    name: row.name,
                    candidate_version: row.candidate,
                    baseline_version: row.baseline,
                    started_at: row.started_at,
                    finished_at: row.finished_at,
                    outcome: row.outcome.as_deref().and_then(Outcome::parse),
                    outcome_reason: row.outcome_reason,
                },
            )
        })
        .collect())
}

/// Finds the rollout's model, locks it, and reads the rollout under the lock.
async fn lock_rollout(conn: &mut PgConnection, uid: &str) -> Result<(LockedModel, LockedRollout)> {
    let model =
        sqlx::query_scalar!("SELECT m.name FROM rollouts r JOIN models m ON m.id = r.model_id WHERE r.uid = $1", uid)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.to_string() })?;
    let locked = lock_model(conn, &model).await?;
    let (id, record) = fetch_rollouts(conn, None, Some(uid))
        .await?
        .pop()
        .ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.to_string() })?;
    Ok((locked, LockedRollout { id, record }))
}

async fn set_outcome(conn: &mut PgConnection, rollout_id: i64, outcome: Outcome, reason: &str) -> Result<()> {
    sqlx::query!(
        "UPDATE rollouts SET outcome = $2, outcome_reason = $3, finished_at = $4 WHERE id = $1",
        rollout_id,
        outcome.as_str(),
        reason,
        now()
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An already finished rollout: same outcome again is a no-op (retries), another outcome is refused.
fn check_unfinished(rollout: &RolloutRecord, attempted: Outcome) -> Result<Option<RolloutRecord>> {
    match rollout.outcome {
        None => Ok(None),
        Some(outcome) if outcome == attempted => Ok(Some(rollout.clone())),
        Some(outcome) => Err(RegistryError::RolloutFinished {
            uid: rollout.uid.clone(),
            outcome: outcome.to_string(),
            attempted: attempted.to_string(),
        }),
    }
}

impl Registry {
    /// Records the start of a rollout. Idempotent by uid: recording the same rollout again returns it (a restarted
    /// controller); the same uid with another model or candidate is refused.
    pub async fn start_rollout(&self, new: &NewRollout) -> Result<RolloutRecord> {
        validate_name("uid", &new.uid)?;
        validate_name("namespace", &new.namespace)?;
        validate_name("name", &new.name)?;
        let mut tx = self.pool.begin().await?;
        let mut model = lock_model(&mut tx, &new.model).await?;
        if let Some((_, existing)) = fetch_rollouts(&mut tx, None, Some(&new.uid)).await?.pop() {
            for (field, recorded, offered) in [
                ("model", existing.model.as_str(), new.model.as_str()),
                ("candidate version", existing.candidate_version.as_str(), new.candidate_version.as_str()),
            ] {
                if recorded != offered {
                    return Err(RegistryError::RolloutConflict {
                        uid: new.uid.clone(),
                        field,
                        recorded: recorded.to_string(),
                        offered: offered.to_string(),
                    });
                }
            }
            return Ok(existing);
        }
        fetch_version(&mut tx, &new.model, &new.candidate_version).await?;
        if let Some(baseline) = &new.baseline_version {
            fetch_version(&mut tx, &new.model, baseline).await?;
        }
        sqlx::query!(
            "INSERT INTO rollouts (model_id, uid, namespace, name, candidate_version_id, baseline_version_id, started_at)
             VALUES ($1, $2, $3, $4,
                     (SELECT id FROM model_versions WHERE model_id = $1 AND version = $5),
                     (SELECT id FROM model_versions WHERE model_id = $1 AND version = $6),
                     $7)",
            model.id,
            new.uid,
            new.namespace,
            new.name,
            new.candidate_version,
            new.baseline_version,
            now()
        )
        .execute(&mut *tx)
        .await?;
        let event = NewEvent {
            kind: EventKind::RolloutStarted,
            rollout_uid: Some(new.uid.clone()),
            payload: json!({
                "namespace": new.namespace, "name": new.name,
                "candidate": new.candidate_version, "baseline": new.baseline_version,
            }),
            idempotency_key: Some(format!("{}/started", new.uid)),
        };
        append_locked(&mut tx, &mut model, &[event]).await?;
        let (_, record) = fetch_rollouts(&mut tx, None, Some(&new.uid))
            .await?
            .pop()
            .ok_or_else(|| RegistryError::RolloutNotFound { uid: new.uid.clone() })?;
        tx.commit().await?;
        Ok(record)
    }

    /// Records a traffic step the controller applied. Recording the same step index twice returns the first event.
    pub async fn record_step(&self, uid: &str, step: &StepRecord) -> Result<EventRecord> {
        let event = NewEvent {
            kind: EventKind::StepApplied,
            rollout_uid: Some(uid.to_string()),
            payload: json!({"index": step.index, "canary_weight": step.canary_weight, "description": step.description}),
            idempotency_key: Some(format!("{uid}/step/{}", step.index)),
        };
        self.append_to_running(uid, event).await
    }

    /// Records an analysis verdict with its statistics. Idempotent per (step, evaluation).
    pub async fn record_verdict(&self, uid: &str, verdict: &VerdictRecord) -> Result<EventRecord> {
        let event = NewEvent {
            kind: EventKind::Verdict,
            rollout_uid: Some(uid.to_string()),
            payload: json!({
                "step_index": verdict.step_index, "evaluation": verdict.evaluation,
                "verdict": verdict.verdict, "statistics": verdict.statistics,
            }),
            idempotency_key: Some(format!("{uid}/verdict/{}/{}", verdict.step_index, verdict.evaluation)),
        };
        self.append_to_running(uid, event).await
    }

    async fn append_to_running(&self, uid: &str, event: NewEvent) -> Result<EventRecord> {
        let mut tx = self.pool.begin().await?;
        let (mut model, rollout) = lock_rollout(&mut tx, uid).await?;
        if let Some(outcome) = rollout.record.outcome {
            return Err(RegistryError::RolloutFinished {
                uid: uid.to_string(),
                outcome: outcome.to_string(),
                attempted: format!("given a new {}", event.kind.as_str()),
            });
        }
        let mut records = append_locked(&mut tx, &mut model, &[event]).await?;
        tx.commit().await?;
        records.pop().ok_or_else(|| RegistryError::InvalidInput { field: "event", problem: "nothing appended".into() })
    }

    /// Records a rollback with its reason and the statistics at the moment of decision. Recording it again returns
    /// the rollout unchanged.
    pub async fn record_rollback(&self, uid: &str, reason: &str, statistics: &Value) -> Result<RolloutRecord> {
        let mut tx = self.pool.begin().await?;
        let (mut model, rollout) = lock_rollout(&mut tx, uid).await?;
        if let Some(done) = check_unfinished(&rollout.record, Outcome::RolledBack)? {
            return Ok(done);
        }
        set_outcome(&mut tx, rollout.id, Outcome::RolledBack, reason).await?;
        let event = NewEvent {
            kind: EventKind::RolledBack,
            rollout_uid: Some(uid.to_string()),
            payload: json!({
                "reason": reason, "statistics": statistics,
                "candidate": rollout.record.candidate_version, "baseline": rollout.record.baseline_version,
            }),
            idempotency_key: Some(format!("{uid}/rolled_back")),
        };
        append_locked(&mut tx, &mut model, &[event]).await?;
        let record = fetch_rollouts(&mut tx, None, Some(uid)).await?.pop().map(|(_, r)| r);
        tx.commit().await?;
        record.ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.to_string() })
    }

    /// Promotes the rollout's candidate: moves `production` to it, records the move in the alias history, marks the
    /// rollout promoted and appends the events, all in one transaction. The candidate must be verified. Recording it
    /// again returns the rollout unchanged.
    pub async fn record_promotion(&self, uid: &str, actor: &str) -> Result<RolloutRecord> {
        let mut tx = self.pool.begin().await?;
        let (mut model, rollout) = lock_rollout(&mut tx, uid).await?;
        if let Some(done) = check_unfinished(&rollout.record, Outcome::Promoted)? {
            return Ok(done);
        }
        let request = AliasMove {
            model: model.name.clone(),
            alias: PRODUCTION.into(),
            version: rollout.record.candidate_version.clone(),
            actor: actor.to_string(),
            reason: format!("promoted by rollout {}/{}", rollout.record.namespace, rollout.record.name),
            expected_current: None,
            rollout_uid: Some(uid.to_string()),
        };
        let moved = move_alias_locked(&mut tx, &mut model, &request, Some(rollout.id)).await?;
        set_outcome(&mut tx, rollout.id, Outcome::Promoted, &request.reason).await?;
        let event = NewEvent {
            kind: EventKind::Promoted,
            rollout_uid: Some(uid.to_string()),
            payload: json!({"candidate": moved.to_version, "previous_production": moved.from_version, "actor": actor}),
            idempotency_key: Some(format!("{uid}/promoted")),
        };
        append_locked(&mut tx, &mut model, &[event]).await?;
        let record = fetch_rollouts(&mut tx, None, Some(uid)).await?.pop().map(|(_, r)| r);
        tx.commit().await?;
        record.ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.to_string() })
    }

    /// Ends a rollout that neither promoted nor rolled back (`Failed` or `Aborted`) with a reason.
    pub async fn finish_rollout(&self, uid: &str, outcome: Outcome, reason: &str) -> Result<RolloutRecord> {
        if matches!(outcome, Outcome::Promoted | Outcome::RolledBack) {
            return Err(RegistryError::InvalidInput {
                field: "outcome",
                problem: "use record_promotion or record_rollback for promoted and rolled_back".into(),
            });
        }
        let mut tx = self.pool.begin().await?;
        let (mut model, rollout) = lock_rollout(&mut tx, uid).await?;
        if let Some(done) = check_unfinished(&rollout.record, outcome)? {
            return Ok(done);
        }
        set_outcome(&mut tx, rollout.id, outcome, reason).await?;
        let event = NewEvent {
            kind: EventKind::RolloutFinished,
            rollout_uid: Some(uid.to_string()),
            payload: json!({"outcome": outcome.as_str(), "reason": reason}),
            idempotency_key: Some(format!("{uid}/finished")),
        };
        append_locked(&mut tx, &mut model, &[event]).await?;
        let record = fetch_rollouts(&mut tx, None, Some(uid)).await?.pop().map(|(_, r)| r);
        tx.commit().await?;
        record.ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.to_string() })
    }

    /// One rollout.
    pub async fn rollout(&self, uid: &str) -> Result<RolloutRecord> {
        let mut conn = self.pool.acquire().await?;
        fetch_rollouts(&mut conn, None, Some(uid))
            .await?
            .pop()
            .map(|(_, record)| record)
            .ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.to_string() })
    }

    /// A model's rollouts with their outcome, newest first.
    pub async fn rollouts(&self, model: &str) -> Result<Vec<RolloutRecord>> {
        self.model_id(model).await?;
        let mut conn = self.pool.acquire().await?;
        Ok(fetch_rollouts(&mut conn, Some(model), None).await?.into_iter().map(|(_, record)| record).collect())
    }

    /// A model's rollbacks with reason and the statistics the decision was made on, newest first.
    pub async fn rollbacks(&self, model: &str) -> Result<Vec<RollbackRecord>> {
        self.model_id(model).await?;
        let mut conn = self.pool.acquire().await?;
        let rollouts = fetch_rollouts(&mut conn, Some(model), None).await?;
        let decisions = sqlx::query!(
            "SELECT e.rollout_id AS \"rollout_id!\", e.payload, e.occurred_at
             FROM events e JOIN models m ON m.id = e.model_id
             WHERE m.name = $1 AND e.kind = 'rolled_back' AND e.rollout_id IS NOT NULL",
            model
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::new();
        for (id, rollout) in rollouts {
            if rollout.outcome != Some(Outcome::RolledBack) {
                continue;
            }
            let Some(decision) = decisions.iter().find(|row| row.rollout_id == id) else { continue };
            let payload = parse_payload(&decision.payload);
            out.push(RollbackRecord {
                reason: payload
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| rollout.outcome_reason.clone())
                    .unwrap_or_default(),
                statistics: payload.get("statistics").cloned().unwrap_or(Value::Null),
                decided_at: decision.occurred_at,
                rollout,
            });
        }
        Ok(out)
    }
}
