//! Models owned by a namespace: the first namespace to register a model (or roll one out) owns it, and writes made
//! on behalf of a rollout in another namespace are refused with [`RegistryError::ModelOwned`], so one team cannot
//! take another team's model name, version or `production` alias. Checked under the model's row lock, in the same
//! transaction as the write it guards.

use serde_json::json;
use sqlx::PgConnection;

use crate::events::append_locked;
use crate::records::{EventKind, NewEvent};
use crate::{LockedModel, Registry, RegistryError, Result, lock_model, validate_name};

/// Checks that `namespace` owns the locked model, claiming it (with an event in the model's log) when nobody does.
pub(crate) async fn claim_or_check(conn: &mut PgConnection, model: &mut LockedModel, namespace: &str) -> Result<()> {
    validate_name("namespace", namespace)?;
    let owner: Option<String> = sqlx::query_scalar("SELECT namespace FROM model_owners WHERE model_id = $1")
        .bind(model.id)
        .fetch_optional(&mut *conn)
        .await?;
    match owner {
        Some(owner) if owner == namespace => Ok(()),
        Some(owner) => {
            Err(RegistryError::ModelOwned { model: model.name.clone(), owner, namespace: namespace.to_string() })
        }
        None => {
            sqlx::query("INSERT INTO model_owners (model_id, namespace) VALUES ($1, $2)")
                .bind(model.id)
                .bind(namespace)
                .execute(&mut *conn)
                .await?;
            let event = NewEvent {
                kind: EventKind::Other("model_claimed".into()),
                rollout_uid: None,
                payload: json!({"namespace": namespace}),
                idempotency_key: Some(format!("owner/{namespace}")),
            };
            append_locked(conn, model, &[event]).await?;
            Ok(())
        }
    }
}

impl Registry {
    /// The namespace that owns a model, if one does.
    pub async fn model_owner(&self, model: &str) -> Result<Option<String>> {
        let model_id = self.model_id(model).await?;
        Ok(sqlx::query_scalar("SELECT namespace FROM model_owners WHERE model_id = $1")
            .bind(model_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Gives a model to another namespace (an operator's decision, recorded in the model's log).
    pub async fn set_model_owner(&self, model: &str, namespace: &str, actor: &str) -> Result<()> {
        validate_name("namespace", namespace)?;
        let mut tx = self.pool.begin().await?;
        let mut locked = lock_model(&mut tx, model).await?;
        let previous: Option<String> = sqlx::query_scalar("SELECT namespace FROM model_owners WHERE model_id = $1")
            .bind(locked.id)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO model_owners (model_id, namespace) VALUES ($1, $2)
             ON CONFLICT (model_id) DO UPDATE SET namespace = EXCLUDED.namespace, claimed_at = now()",
        )
        .bind(locked.id)
        .bind(namespace)
        .execute(&mut *tx)
        .await?;
        let event = NewEvent {
            kind: EventKind::Other("model_owner_set".into()),
            rollout_uid: None,
            payload: json!({"namespace": namespace, "previous": previous, "actor": actor}),
            idempotency_key: None,
        };
        append_locked(&mut tx, &mut locked, &[event]).await?;
        tx.commit().await?;
        Ok(())
    }
}
