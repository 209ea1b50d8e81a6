//! Rollouts: what the controller records as a rollout runs (start, steps, verdicts, rollback, promotion) and what
//! the CLI reads back (rollouts with outcome, rollbacks with the statistics behind them).

use serde_json::{Value, json};
use sqlx::PgConnection;

use crate::aliases::move_alias_locked;
use crate::events::{append_locked, parse_payload};
use crate::owners::claim_or_check;
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
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT r.id, m.name AS model, r.uid, r.namespace, r.name, c.version AS candidate,
                b.version AS baseline, r.started_at, r.finished_at, r.outcome, r.outcome_reason, r.attempt
         FROM rollouts r
         JOIN models m ON m.id = r.model_id
         JOIN model_versions c ON c.id = r.candidate_version_id
         LEFT JOIN model_versions b ON b.id = r.baseline_version_id
         WHERE ($1::text IS NULL OR m.name = $1) AND ($2::text IS NULL OR r.uid = $2)
         ORDER BY r.started_at DESC, r.id DESC",
    )
    .bind(model)
    .bind(uid)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let outcome: Option<String> = row.try_get("outcome")?;
        out.push((
            row.try_get("id")?,
            RolloutRecord {
                model: row.try_get("model")?,
                uid: row.try_get("uid")?,
                namespace: row.try_get("namespace")?,
                name: row.try_get("name")?,
                candidate_version: row.try_get("candidate")?,
                baseline_version: row.try_get("baseline")?,
                started_at: row.try_get("started_at")?,
                finished_at: row.try_get("finished_at")?,
                outcome: outcome.as_deref().and_then(Outcome::parse),
                outcome_reason: row.try_get("outcome_reason")?,
                attempt: row.try_get("attempt")?,
            },
        ));
    }
    Ok(out)
}

/// The retry request that started each attempt of a rollout, by row id.
async fn retry_keys(conn: &mut PgConnection, uid: &str) -> Result<std::collections::HashMap<i64, Option<String>>> {
    let rows: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT id, retry_key FROM rollouts WHERE uid = $1").bind(uid).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().collect())
}

/// The newest attempt of a rollout (rows come newest first).
async fn latest_attempt(conn: &mut PgConnection, uid: &str) -> Result<Option<(i64, RolloutRecord)>> {
    Ok(fetch_rollouts(conn, None, Some(uid)).await?.into_iter().max_by_key(|(_, r)| r.attempt))
}

/// The idempotency key of a rollout event: `<uid>/<what>` for the first attempt (as before attempts existed),
/// `<uid>/attempt/<n>/<what>` for later ones, so a retried rollout's steps and ending are recorded again.
fn event_key(uid: &str, attempt: i32, what: &str) -> String {
    if attempt <= 1 { format!("{uid}/{what}") } else { format!("{uid}/attempt/{attempt}/{what}") }
}

/// Finds the rollout's model, locks it, and reads the rollout's latest attempt under the lock.
async fn lock_rollout(conn: &mut PgConnection, uid: &str) -> Result<(LockedModel, LockedRollout)> {
    let model =
        sqlx::query_scalar!("SELECT m.name FROM rollouts r JOIN models m ON m.id = r.model_id WHERE r.uid = $1", uid)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.to_string() })?;
    let locked = lock_model(conn, &model).await?;
    let (id, record) =
        latest_attempt(conn, uid).await?.ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.to_string() })?;
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
    /// Records the start of a rollout attempt. Idempotent: recording the same attempt again (same uid and retry
    /// request) returns it (a restarted controller); the same uid with another model is refused. A start with a retry
    /// request this uid has not had yet is a new attempt (`rampart retry`): numbered one more than the last, which,
    /// if it never recorded an ending, is closed as aborted. The model must belong to the rollout's namespace
    /// ([`RegistryError::ModelOwned`]); a model nobody owns yet is claimed by it.
    pub async fn start_rollout(&self, new: &NewRollout) -> Result<RolloutRecord> {
        self.start_rollout_attempt(new, None).await
    }

    /// Records the start of the attempt that the retry request `retry` (the `rampart.dev/retry` value) began; `None`
    /// is the first attempt. See [`Registry::start_rollout`].
    pub async fn start_rollout_attempt(&self, new: &NewRollout, retry: Option<&str>) -> Result<RolloutRecord> {
        let retry = retry.map(str::to_string);
        validate_name("uid", &new.uid)?;
        validate_name("namespace", &new.namespace)?;
        validate_name("name", &new.name)?;
        if let Some(retry) = &retry {
            validate_name("retry", retry)?;
        }
        let mut tx = self.pool.begin().await?;
        let mut model = lock_model(&mut tx, &new.model).await?;
        if self.owned_models {
            claim_or_check(&mut tx, &mut model, &new.namespace).await?;
        }
        let attempts = fetch_rollouts(&mut tx, None, Some(&new.uid)).await?;
        if let Some((_, existing)) = attempts.first()
            && existing.model != new.model
        {
            return Err(RegistryError::RolloutConflict {
                uid: new.uid.clone(),
                field: "model",
                recorded: existing.model.clone(),
                offered: new.model.clone(),
            });
        }
        let retry_keys = retry_keys(&mut tx, &new.uid).await?;
        if let Some((_, existing)) = attempts.iter().find(|(id, _)| retry_keys.get(id) == Some(&retry)) {
            if existing.candidate_version != new.candidate_version {
                return Err(RegistryError::RolloutConflict {
                    uid: new.uid.clone(),
                    field: "candidate version",
                    recorded: existing.candidate_version.clone(),
                    offered: new.candidate_version.clone(),
                });
            }
            tx.commit().await?;
            return Ok(existing.clone());
        }
        fetch_version(&mut tx, &new.model, &new.candidate_version).await?;
        if let Some(baseline) = &new.baseline_version {
            fetch_version(&mut tx, &new.model, baseline).await?;
        }
        let previous = attempts.iter().max_by_key(|(_, r)| r.attempt);
        let attempt = previous.map_or(1, |(_, r)| r.attempt + 1);
        let mut events = Vec::new();
        if let Some((id, open)) = previous.filter(|(_, r)| r.outcome.is_none()) {
            let reason = format!("superseded by attempt {attempt} (rampart retry) before its ending was recorded");
            set_outcome(&mut tx, *id, Outcome::Aborted, &reason).await?;
            events.push(NewEvent {
                kind: EventKind::RolloutFinished,
                rollout_uid: Some(new.uid.clone()),
                payload: json!({"outcome": Outcome::Aborted.as_str(), "reason": reason, "attempt": open.attempt}),
                idempotency_key: Some(event_key(&new.uid, open.attempt, "finished")),
            });
            append_locked(&mut tx, &mut model, &events).await?;
        }
        sqlx::query(
            "INSERT INTO rollouts (model_id, uid, namespace, name, candidate_version_id, baseline_version_id, started_at,
                                   attempt, retry_key)
             VALUES ($1, $2, $3, $4,
                     (SELECT id FROM model_versions WHERE model_id = $1 AND version = $5),
                     (SELECT id FROM model_versions WHERE model_id = $1 AND version = $6),
                     $7, $8, $9)",
        )
        .bind(model.id)
        .bind(&new.uid)
        .bind(&new.namespace)
        .bind(&new.name)
        .bind(&new.candidate_version)
        .bind(&new.baseline_version)
        .bind(now())
        .bind(attempt)
        .bind(&retry)
        .execute(&mut *tx)
        .await?;
        let event = NewEvent {
            kind: EventKind::RolloutStarted,
            rollout_uid: Some(new.uid.clone()),
            payload: json!({
                "namespace": new.namespace, "name": new.name,
                "candidate": new.candidate_version, "baseline": new.baseline_version,
                "attempt": attempt,
            }),
            idempotency_key: Some(event_key(&new.uid, attempt, "started")),
        };
        append_locked(&mut tx, &mut model, &[event]).await?;
        let (_, record) = latest_attempt(&mut tx, &new.uid)
            .await?
            .ok_or_else(|| RegistryError::RolloutNotFound { uid: new.uid.clone() })?;
        tx.commit().await?;
        Ok(record)
    }

    /// Every attempt of a rollout, newest first.
    pub async fn rollout_attempts(&self, uid: &str) -> Result<Vec<RolloutRecord>> {
        let mut conn = self.pool.acquire().await?;
        let mut attempts: Vec<RolloutRecord> =
            fetch_rollouts(&mut conn, None, Some(uid)).await?.into_iter().map(|(_, r)| r).collect();
        attempts.sort_by_key(|r| std::cmp::Reverse(r.attempt));
        Ok(attempts)
    }

    /// Records a traffic step the controller applied. Recording the same step index twice returns the first event.
    pub async fn record_step(&self, uid: &str, step: &StepRecord) -> Result<EventRecord> {
        let event = NewEvent {
            kind: EventKind::StepApplied,
            rollout_uid: Some(uid.to_string()),
            payload: json!({"index": step.index, "canary_weight": step.canary_weight, "description": step.description}),
            idempotency_key: None,
        };
        self.append_to_running(uid, event, &format!("step/{}", step.index)).await
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
            idempotency_key: None,
        };
        self.append_to_running(uid, event, &format!("verdict/{}/{}", verdict.step_index, verdict.evaluation)).await
    }

    /// Appends an event to the rollout's latest attempt, keyed `key` within that attempt.
    async fn append_to_running(&self, uid: &str, mut event: NewEvent, key: &str) -> Result<EventRecord> {
        let mut tx = self.pool.begin().await?;
        let (mut model, rollout) = lock_rollout(&mut tx, uid).await?;
        event.idempotency_key = Some(event_key(uid, rollout.record.attempt, key));
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
            idempotency_key: Some(event_key(uid, rollout.record.attempt, "rolled_back")),
        };
        append_locked(&mut tx, &mut model, &[event]).await?;
        let record = latest_attempt(&mut tx, uid).await?.map(|(_, r)| r);
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
            idempotency_key: Some(event_key(uid, rollout.record.attempt, "promoted")),
        };
        append_locked(&mut tx, &mut model, &[event]).await?;
        let record = latest_attempt(&mut tx, uid).await?.map(|(_, r)| r);
        tx.commit().await?;
        record.ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.to_string() })
    }

    /// Records a rollback after promotion (a failing bake): `production` moves back to the version it named before
    /// this rollout's promotion, the rollout's outcome becomes `rolled_back` (the `promoted` event stays in the
    /// trail), and a `rolled_back` event with `"after_promotion": true`, the reason and the statistics is appended,
    /// all in one transaction. A rollout promoted without moving `production` (an unverified candidate) only gets
    /// the outcome and the event. Recording it again returns the rollout unchanged.
    pub async fn record_rollback_after_promotion(
        &self,
        uid: &str,
        reason: &str,
        statistics: &Value,
        actor: &str,
    ) -> Result<RolloutRecord> {
        let mut tx = self.pool.begin().await?;
        let (mut model, rollout) = lock_rollout(&mut tx, uid).await?;
        match rollout.record.outcome {
            None | Some(Outcome::Promoted) => {}
            Some(Outcome::RolledBack) => return Ok(rollout.record.clone()),
            Some(other) => {
                return Err(RegistryError::RolloutFinished {
                    uid: uid.to_string(),
                    outcome: other.to_string(),
                    attempted: "rolled back after promotion".into(),
                });
            }
        }
        // The version `production` named before this rollout's promotion moved it (none when nothing did).
        let previous: Option<String> = sqlx::query_scalar::<_, Option<String>>(
            "SELECT f.version FROM alias_moves am LEFT JOIN model_versions f ON f.id = am.from_version_id
             WHERE am.rollout_id = $1 AND am.alias = $2 AND am.to_version_id =
                   (SELECT id FROM model_versions WHERE model_id = am.model_id AND version = $3)
             ORDER BY am.id DESC LIMIT 1",
        )
        .bind(rollout.id)
        .bind(PRODUCTION)
        .bind(&rollout.record.candidate_version)
        .fetch_optional(&mut *tx)
        .await?
        .flatten();
        let restored = match &previous {
            Some(version) => {
                let request = AliasMove {
                    model: model.name.clone(),
                    alias: PRODUCTION.into(),
                    version: version.clone(),
                    actor: actor.to_string(),
                    reason: format!(
                        "rolled back after promotion by rollout {}/{}",
                        rollout.record.namespace, rollout.record.name
                    ),
                    expected_current: None,
                    rollout_uid: Some(uid.to_string()),
                };
                Some(move_alias_locked(&mut tx, &mut model, &request, Some(rollout.id)).await?.to_version)
            }
            None => None,
        };
        set_outcome(&mut tx, rollout.id, Outcome::RolledBack, reason).await?;
        let event = NewEvent {
            kind: EventKind::RolledBack,
            rollout_uid: Some(uid.to_string()),
            payload: json!({
                "reason": reason, "statistics": statistics, "after_promotion": true,
                "candidate": rollout.record.candidate_version, "baseline": rollout.record.baseline_version,
                "production": restored, "actor": actor,
            }),
            idempotency_key: Some(event_key(uid, rollout.record.attempt, "rolled_back_after_promotion")),
        };
        append_locked(&mut tx, &mut model, &[event]).await?;
        let record = latest_attempt(&mut tx, uid).await?.map(|(_, r)| r);
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
            idempotency_key: Some(event_key(uid, rollout.record.attempt, "finished")),
        };
        append_locked(&mut tx, &mut model, &[event]).await?;
        let record = latest_attempt(&mut tx, uid).await?.map(|(_, r)| r);
        tx.commit().await?;
        record.ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.to_string() })
    }

    /// One rollout (its latest attempt; [`Registry::rollout_attempts`] has them all).
    pub async fn rollout(&self, uid: &str) -> Result<RolloutRecord> {
        let mut conn = self.pool.acquire().await?;
        latest_attempt(&mut conn, uid)
            .await?
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
