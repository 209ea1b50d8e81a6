//! The Postgres registry of models, versions, aliases, rollouts and the audit log.
//!
//! [`Registry::connect`] applies the migrations in `migrations/` and returns a handle whose methods are what the
//! controller records (versions, verification, rollout start, steps, verdicts, rollback, promotion) and what the CLI
//! and a web view read (versions, rollouts with outcome, rollbacks with statistics, production, event trails). Every
//! write appends to the model's hash-chained event log in the same transaction; [`Registry::verify_chain`] checks it.
#![forbid(unsafe_code)]

mod aliases;
mod chain;
mod error;
mod events;
mod notifications;
mod owners;
mod records;
mod rollouts;
mod versions;

use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};

pub use chain::{ChainBreak, ChainBreakKind, ChainReport, GENESIS_HASH, canonical_json};
pub use error::RegistryError;
pub use notifications::{DeliveryRecord, NewNotification, PendingDelivery};
pub use records::{
    AliasMove, AliasMoveRecord, EventKind, EventRecord, NewEvent, NewRollout, NewVersion, Outcome, RollbackRecord,
    RolloutRecord, ServingVerification, StepRecord, Timestamp, VerdictRecord, Verification, VerifiedFile,
    VersionRecord, VersionStatus,
};

/// The alias that names the version serving production traffic.
pub const PRODUCTION: &str = "production";

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Result type of the registry.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A handle on the registry database. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct Registry {
    pool: PgPool,
    /// Writes on behalf of a namespace check and claim model ownership (see [`Registry::with_shared_models`]).
    owned_models: bool,
}

impl Registry {
    /// Connects (pool of up to 10 connections, 5 s acquire timeout) and applies pending migrations.
    pub async fn connect(database_url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect(database_url)
            .await?;
        let registry = Self { pool, owned_models: true };
        registry.migrate().await?;
        Ok(registry)
    }

    /// Wraps an existing pool (migrations are not applied; call [`Registry::migrate`]).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool, owned_models: true }
    }

    /// With `shared` true, models are not owned by namespaces: any namespace may register and roll out any model
    /// (single-team clusters, demos). By default the first namespace to write a model owns it.
    pub fn with_shared_models(mut self, shared: bool) -> Self {
        self.owned_models = !shared;
        self
    }

    /// Applies pending migrations (safe to call concurrently from several replicas: sqlx takes an advisory lock).
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The connection pool (for health checks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The row id of a rollout's latest attempt (events and alias moves by rollout uid attach to it).
pub(crate) const LATEST_ATTEMPT_ID: &str =
    "SELECT id FROM rollouts WHERE uid = $1 AND model_id = $2 ORDER BY attempt DESC LIMIT 1";

/// The model row, locked for this transaction: id and the head of its chain.
#[derive(Debug, Clone)]
pub(crate) struct LockedModel {
    pub id: i64,
    pub name: String,
    pub head_seq: i64,
    pub head_hash: Vec<u8>,
}

/// Locks the model row (`FOR UPDATE`): every write of one model is serialized behind it.
pub(crate) async fn lock_model(conn: &mut PgConnection, model: &str) -> Result<LockedModel> {
    let row = sqlx::query!("SELECT id, head_seq, head_hash FROM models WHERE name = $1 FOR UPDATE", model)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| RegistryError::ModelNotFound { model: model.to_string() })?;
    Ok(LockedModel { id: row.id, name: model.to_string(), head_seq: row.head_seq, head_hash: row.head_hash })
}

/// Creates the model row when missing, then locks it.
pub(crate) async fn ensure_and_lock_model(conn: &mut PgConnection, model: &str) -> Result<LockedModel> {
    validate_name("model", model)?;
    sqlx::query!("INSERT INTO models (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", model)
        .execute(&mut *conn)
        .await?;
    lock_model(conn, model).await
}

pub(crate) fn validate_name(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 253 {
        return Err(RegistryError::InvalidInput { field, problem: "must be 1 to 253 characters".into() });
    }
    if value.chars().any(char::is_control) {
        return Err(RegistryError::InvalidInput { field, problem: "must not contain control characters".into() });
    }
    Ok(())
}

/// Current time truncated to microseconds (what Postgres stores), so hashed and stored timestamps agree.
pub(crate) fn now() -> Timestamp {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
