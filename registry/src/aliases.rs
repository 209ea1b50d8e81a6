//! Aliases (`production`, ...): moves are atomic with their history row and their event, and only verified versions
//! can be aliased.

use serde_json::json;
use sqlx::PgConnection;

use crate::events::append_locked;
use crate::records::{AliasMove, AliasMoveRecord, EventKind, NewEvent, VersionRecord, VersionStatus};
use crate::versions::fetch_version;
use crate::{LATEST_ATTEMPT_ID, LockedModel, PRODUCTION, Registry, RegistryError, Result, lock_model, now};

/// Moves an alias inside a transaction that already holds the model lock.
pub(crate) async fn move_alias_locked(
    conn: &mut PgConnection,
    model: &mut LockedModel,
    request: &AliasMove,
    rollout_id: Option<i64>,
) -> Result<AliasMoveRecord> {
    if request.alias.is_empty() || request.alias.len() > 63 {
        return Err(RegistryError::InvalidInput { field: "alias", problem: "must be 1 to 63 characters".into() });
    }
    let target = fetch_version(conn, &model.name, &request.version).await?;
    if target.status != VersionStatus::Verified {
        return Err(RegistryError::VersionNotVerified {
            model: model.name.clone(),
            version: request.version.clone(),
            status: target.status.to_string(),
        });
    }
    let current = sqlx::query!(
        "SELECT a.version_id, v.version FROM aliases a JOIN model_versions v ON v.id = a.version_id
         WHERE a.model_id = $1 AND a.alias = $2",
        model.id,
        request.alias
    )
    .fetch_optional(&mut *conn)
    .await?;
    let current_version = current.as_ref().map(|row| row.version.clone());
    if let Some(expected) = &request.expected_current
        && current_version.as_deref() != Some(expected.as_str())
    {
        return Err(RegistryError::AliasConflict {
            model: model.name.clone(),
            alias: request.alias.clone(),
            expected: expected.clone(),
            actual: current_version,
        });
    }
    let target_id = sqlx::query_scalar!(
        "SELECT id FROM model_versions WHERE model_id = $1 AND version = $2",
        model.id,
        request.version
    )
    .fetch_one(&mut *conn)
    .await?;
    let moved_at = now();
    sqlx::query!(
        "INSERT INTO aliases (model_id, alias, version_id, moved_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (model_id, alias) DO UPDATE SET version_id = EXCLUDED.version_id, moved_at = EXCLUDED.moved_at",
        model.id,
        request.alias,
        target_id,
        moved_at
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO alias_moves (model_id, alias, from_version_id, to_version_id, moved_at, actor, reason, rollout_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        model.id,
        request.alias,
        current.as_ref().map(|row| row.version_id),
        target_id,
        moved_at,
        request.actor,
        request.reason,
        rollout_id
    )
    .execute(&mut *conn)
    .await?;
    let event = NewEvent {
        kind: EventKind::AliasMoved,
        rollout_uid: request.rollout_uid.clone(),
        payload: json!({
            "alias": request.alias, "from": current_version, "to": request.version,
            "actor": request.actor, "reason": request.reason,
        }),
        idempotency_key: None,
    };
    append_locked(conn, model, &[event]).await?;
    Ok(AliasMoveRecord {
        model: model.name.clone(),
        alias: request.alias.clone(),
        from_version: current_version,
        to_version: request.version.clone(),
        moved_at,
        actor: request.actor.clone(),
        reason: request.reason.clone(),
        rollout_uid: request.rollout_uid.clone(),
    })
}

impl Registry {
    /// Points an alias at a verified version, atomically with its history row and event. Concurrent moves of one
    /// model's aliases are serialized; with `expected_current` set, a move that lost the race fails with
    /// [`RegistryError::AliasConflict`] instead of overwriting.
    pub async fn move_alias(&self, request: &AliasMove) -> Result<AliasMoveRecord> {
        let mut tx = self.pool.begin().await?;
        let mut model = lock_model(&mut tx, &request.model).await?;
        let rollout_id = match &request.rollout_uid {
            None => None,
            Some(uid) => Some(
                sqlx::query_scalar::<_, i64>(LATEST_ATTEMPT_ID)
                    .bind(uid)
                    .bind(model.id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| RegistryError::RolloutNotFound { uid: uid.clone() })?,
            ),
        };
        let record = move_alias_locked(&mut tx, &mut model, request, rollout_id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The version an alias points at, if any.
    pub async fn alias(&self, model: &str, alias: &str) -> Result<Option<VersionRecord>> {
        let model_id = self.model_id(model).await?;
        let version = sqlx::query_scalar!(
            "SELECT v.version FROM aliases a JOIN model_versions v ON v.id = a.version_id
             WHERE a.model_id = $1 AND a.alias = $2",
            model_id,
            alias
        )
        .fetch_optional(&self.pool)
        .await?;
        match version {
            None => Ok(None),
            Some(version) => Ok(Some(self.version(model, &version).await?)),
        }
    }

    /// The version serving production (the `production` alias), if any.
    pub async fn production(&self, model: &str) -> Result<Option<VersionRecord>> {
        self.alias(model, PRODUCTION).await
    }

    /// Every move of an alias, oldest first.
    pub async fn alias_history(&self, model: &str, alias: &str) -> Result<Vec<AliasMoveRecord>> {
        let model_id = self.model_id(model).await?;
        let rows = sqlx::query!(
            r#"SELECT f.version AS "from_version?", t.version AS to_version, am.moved_at, am.actor, am.reason,
                      r.uid AS "rollout_uid?"
               FROM alias_moves am
               JOIN model_versions t ON t.id = am.to_version_id
               LEFT JOIN model_versions f ON f.id = am.from_version_id
               LEFT JOIN rollouts r ON r.id = am.rollout_id
               WHERE am.model_id = $1 AND am.alias = $2
               ORDER BY am.id"#,
            model_id,
            alias
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| AliasMoveRecord {
                model: model.to_string(),
                alias: alias.to_string(),
                from_version: row.from_version,
                to_version: row.to_version,
                moved_at: row.moved_at,
                actor: row.actor,
                reason: row.reason,
                rollout_uid: row.rollout_uid,
            })
            .collect())
    }
}
