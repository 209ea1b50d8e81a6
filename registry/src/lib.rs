//! The Postgres registry of models, versions, aliases, rollouts and the audit log.
