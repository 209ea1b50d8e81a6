//! The registry's error type: one variant per thing that can go wrong, each countable by `metric_label()`.

/// Errors of the registry. Messages name the model, version or rollout and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "the registry database is unreachable or not taking writes ({0}); the write can be retried when it is back"
    )]
    Unavailable(#[source] sqlx::Error),

    #[error("registry database error: {0}")]
    Database(#[source] sqlx::Error),

    #[error("applying the registry migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    #[error("model `{model}` is not in the registry; register a version of it first")]
    ModelNotFound { model: String },

    #[error("model `{model}` has no version `{version}`; register it first")]
    VersionNotFound { model: String, version: String },

    #[error("no rollout with uid `{uid}` is recorded; record its start first")]
    RolloutNotFound { uid: String },

    #[error(
        "version `{version}` of model `{model}` is already registered with digest {registered}, refusing digest {offered}: a version's content never changes, publish a new version instead"
    )]
    DigestConflict { model: String, version: String, registered: String, offered: String },

    #[error(
        "version `{version}` of model `{model}` is {status}, not verified: only a version whose signature was verified can be aliased"
    )]
    VersionNotVerified { model: String, version: String, status: String },

    #[error(
        "alias `{alias}` of model `{model}` points at {}, not at `{expected}` as expected: someone moved it meanwhile; re-read and retry",
        actual.as_deref().map(|v| format!("`{v}`")).unwrap_or_else(|| "nothing".into())
    )]
    AliasConflict { model: String, alias: String, expected: String, actual: Option<String> },

    #[error("rollout `{uid}` already finished as {outcome}; it cannot also be {attempted}")]
    RolloutFinished { uid: String, outcome: String, attempted: String },

    #[error("rollout `{uid}` is already recorded with a different {field} ({recorded} vs {offered})")]
    RolloutConflict { uid: String, field: &'static str, recorded: String, offered: String },

    #[error(
        "model `{model}` belongs to namespace `{owner}` in the registry (it registered the model first); a rollout in \
         namespace `{namespace}` cannot register, verify or roll out versions of it: use a model name of your own, or \
         ask an operator to move the model"
    )]
    ModelOwned { model: String, owner: String, namespace: String },

    #[error("invalid {field}: {problem}")]
    InvalidInput { field: &'static str, problem: String },
}

impl RegistryError {
    /// A short, stable label for metrics (`rampart_registry_errors_total{reason=...}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Database(_) => "database",
            Self::Migrate(_) => "migrate",
            Self::ModelNotFound { .. } => "model_not_found",
            Self::VersionNotFound { .. } => "version_not_found",
            Self::RolloutNotFound { .. } => "rollout_not_found",
            Self::DigestConflict { .. } => "digest_conflict",
            Self::VersionNotVerified { .. } => "version_not_verified",
            Self::AliasConflict { .. } => "alias_conflict",
            Self::RolloutFinished { .. } => "rollout_finished",
            Self::RolloutConflict { .. } => "rollout_conflict",
            Self::ModelOwned { .. } => "model_owned",
            Self::InvalidInput { .. } => "invalid_input",
        }
    }

    /// True when the same call may succeed later unchanged (database down or failing over, or a transient conflict).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database(sqlx::Error::Database(err)) => err.code().as_deref().is_some_and(transient_sqlstate),
            _ => false,
        }
    }
}

/// SQLSTATEs that say "try again", not "no": serialization failure and deadlock (40001, 40P01), and what a server
/// restart or a failover answers: the server shutting down (57P01 admin, 57P02 crash), not yet accepting connections
/// (57P03), a connection failure (class 08), or a read-only standby that has not been promoted yet (25006).
pub fn transient_sqlstate(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "25006") || code.starts_with("08")
}

impl From<sqlx::Error> for RegistryError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err),
            // A restarting or failing-over server: the write can be retried once it (or the new primary) answers.
            sqlx::Error::Database(db)
                if db.code().as_deref().is_some_and(|c| c != "40001" && c != "40P01" && transient_sqlstate(c)) =>
            {
                Self::Unavailable(sqlx::Error::Database(db))
            }
            other => Self::Database(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_sqlstates_are_transient_and_refusals_are_not() {
        for code in ["57P01", "57P02", "57P03", "25006", "08006", "08001", "40001", "40P01"] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "23514", "42P01", "P0001", "22P02"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
    }
}
