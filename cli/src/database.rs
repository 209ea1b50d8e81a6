//! Reaching the registry: `--database-url` or `$RAMPART_DATABASE_URL`, a small pool with a short timeout, and errors
//! that name the server (never the password) and say what to do.

use std::str::FromStr;
use std::time::Duration;

use rampart_registry::{Registry, RegistryError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::args::GlobalArgs;
use crate::error::CliError;

/// An open registry and where it is, for messages.
pub struct Database {
    pub registry: Registry,
    pub location: String,
}

impl Database {
    /// Connects without touching the schema (read commands; works with a read-only database user).
    pub async fn connect(global: &GlobalArgs) -> Result<Self, CliError> {
        let Some(url) = global.database_url.as_deref().filter(|url| !url.trim().is_empty()) else {
            return Err(CliError::input(
                "no registry database given",
                Some("pass --database-url postgres://USER@HOST:5432/DB or set RAMPART_DATABASE_URL".into()),
            ));
        };
        let hint = || Some("use the form postgres://USER:PASSWORD@HOST:5432/DATABASE".to_string());
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(CliError::input(
                "--database-url is not a valid Postgres URL: it must start with postgres:// or postgresql://",
                hint(),
            ));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|err| CliError::input(format!("--database-url is not a valid Postgres URL: {err}"), hint()))?;
        let location =
            format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or(""));
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|err| unreachable(&location, &err.to_string()))?;
        Ok(Database { registry: Registry::from_pool(pool), location })
    }

    /// Connects and applies pending migrations (commands that write).
    pub async fn connect_for_writing(global: &GlobalArgs) -> Result<Self, CliError> {
        let database = Self::connect(global).await?;
        database.registry.migrate().await.map_err(|err| database.error(err))?;
        Ok(database)
    }

    /// Maps a registry error to a message and a hint.
    pub fn error(&self, err: RegistryError) -> CliError {
        match &err {
            RegistryError::Unavailable(source) => unreachable(&self.location, &source.to_string()),
            RegistryError::ModelNotFound { .. } | RegistryError::VersionNotFound { .. } => CliError::registry(
                err.to_string(),
                Some("check the spelling, or register it with `rampart register MODEL VERSION ...`".into()),
            ),
            RegistryError::RolloutNotFound { .. } => CliError::registry(
                err.to_string(),
                Some("the controller records a rollout when it starts; check the name and namespace".into()),
            ),
            RegistryError::Database(source) if source.to_string().contains("does not exist") => CliError::registry(
                format!("the registry at {} is not set up: {source}", self.location),
                Some("point --database-url at Rampart's registry, or run `rampart register` once to create it".into()),
            ),
            _ => CliError::registry(format!("registry at {}: {err}", self.location), None),
        }
    }
}

fn unreachable(location: &str, detail: &str) -> CliError {
    CliError::registry(
        format!("cannot reach the registry database at {location}: {detail}"),
        Some("check that Postgres is running and that --database-url / RAMPART_DATABASE_URL point at it".into()),
    )
}
