//! The registry as a tenant boundary, on a real Postgres: a model belongs to the namespace that registered it first
//! (another namespace's registration, verification or rollout of it is refused by name), every `rampart retry` is its
//! own recorded attempt, and the errors a restarting or failing-over server answers are retried, never dropped.
#![allow(clippy::unwrap_used)]

use rampart_registry::{
    NewRollout, NewVersion, Outcome, Registry, RegistryError, StepRecord, Verification, VersionStatus,
};
use serde_json::json;

async fn fresh_registry() -> (Registry, String) {
    let url = rampart_testenv::shared_postgres().unwrap().new_database().unwrap();
    (Registry::connect(&url).await.unwrap(), url)
}

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn version(model: &str, version: &str, n: u8) -> NewVersion {
    NewVersion {
        model: model.into(),
        version: version.into(),
        uri: format!("s3://models/{model}/{version}"),
        digest: digest(n),
        ..Default::default()
    }
}

fn verification(n: u8) -> Verification {
    Verification { digest: digest(n), signer_key_id: "key-1".into(), ..Default::default() }
}

fn rollout(uid: &str, namespace: &str, candidate: &str) -> NewRollout {
    NewRollout {
        model: "fraud".into(),
        uid: uid.into(),
        namespace: namespace.into(),
        name: "fraud-rollout".into(),
        candidate_version: candidate.into(),
        baseline_version: None,
    }
}

#[tokio::test]
async fn a_model_belongs_to_the_first_namespace_and_another_namespace_cannot_register_verify_or_roll_it_out() {
    let (registry, _) = fresh_registry().await;
    registry.register_version_for("team-b", &version("fraud", "v1", 1)).await.unwrap();
    assert_eq!(registry.model_owner("fraud").await.unwrap().as_deref(), Some("team-b"));

    // Team A, racing to take B's next version name with its own bytes, and to verify and roll out B's.
    let taken = registry.register_version_for("team-a", &version("fraud", "v2", 9)).await.unwrap_err();
    assert!(
        matches!(&taken, RegistryError::ModelOwned { owner, namespace, .. } if owner == "team-b" && namespace == "team-a")
    );
    assert_eq!(taken.metric_label(), "model_owned");
    let message = taken.to_string();
    assert!(
        message.contains("belongs to namespace `team-b`") && message.contains("model name of your own"),
        "{message}"
    );
    let verified = registry.mark_verified_for("team-a", "fraud", "v1", &verification(1)).await.unwrap_err();
    assert!(matches!(verified, RegistryError::ModelOwned { .. }), "{verified}");
    let started = registry.start_rollout_attempt(&rollout("uid-a", "team-a", "v1"), None).await.unwrap_err();
    assert!(matches!(started, RegistryError::ModelOwned { .. }), "{started}");

    // Nothing of A's landed: B's version is untouched, v2 is free for B, no rollout and no alias.
    let versions = registry.versions("fraud").await.unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].status, VersionStatus::Unverified);
    assert!(registry.rollouts("fraud").await.unwrap().is_empty());
    assert!(registry.production("fraud").await.unwrap().is_none());
    registry.register_version_for("team-b", &version("fraud", "v2", 2)).await.unwrap();
    registry.mark_verified_for("team-b", "fraud", "v2", &verification(2)).await.unwrap();
    registry.start_rollout_attempt(&rollout("uid-b", "team-b", "v2"), None).await.unwrap();
    registry.record_promotion("uid-b", "controller").await.unwrap();
    assert_eq!(registry.production("fraud").await.unwrap().unwrap().version, "v2");

    // The claim and the refusals leave the chain intact; an operator can move the model.
    assert!(registry.verify_chain("fraud").await.unwrap().first_break.is_none());
    registry.set_model_owner("fraud", "team-a", "rampart-cli:alice").await.unwrap();
    registry.register_version_for("team-a", &version("fraud", "v3", 3)).await.unwrap();
}

#[tokio::test]
async fn a_retry_after_a_rollback_is_a_second_attempt_that_can_promote_and_both_are_recorded() {
    let (registry, _) = fresh_registry().await;
    registry.register_version_for("ml", &version("fraud", "v2", 2)).await.unwrap();
    registry.mark_verified_for("ml", "fraud", "v2", &verification(2)).await.unwrap();
    let first = registry.start_rollout_attempt(&rollout("uid-1", "ml", "v2"), None).await.unwrap();
    assert_eq!(first.attempt, 1);
    registry
        .record_step("uid-1", &StepRecord { index: 0, canary_weight: 50, description: "setWeight 50".into() })
        .await
        .unwrap();
    registry.record_rollback("uid-1", "accuracy worse", &json!({})).await.unwrap();

    // rampart retry: the same uid starts again with the retry request's value.
    let second =
        registry.start_rollout_attempt(&rollout("uid-1", "ml", "v2"), Some("2026-12-01T08:00:00Z")).await.unwrap();
    assert_eq!((second.attempt, second.outcome), (2, None), "a fresh attempt, not the finished row");
    // A replay of either start (a controller restart before the outbox was trimmed) changes nothing.
    assert_eq!(registry.start_rollout_attempt(&rollout("uid-1", "ml", "v2"), None).await.unwrap().attempt, 1);
    let replay =
        registry.start_rollout_attempt(&rollout("uid-1", "ml", "v2"), Some("2026-12-01T08:00:00Z")).await.unwrap();
    assert_eq!(replay, second);
    registry
        .record_step("uid-1", &StepRecord { index: 0, canary_weight: 50, description: "setWeight 50".into() })
        .await
        .unwrap();
    let promoted = registry.record_promotion("uid-1", "controller").await.unwrap();
    assert_eq!((promoted.attempt, promoted.outcome), (2, Some(Outcome::Promoted)));
    assert_eq!(registry.production("fraud").await.unwrap().unwrap().version, "v2");

    let attempts = registry.rollout_attempts("uid-1").await.unwrap();
    let summary: Vec<(i32, Option<Outcome>)> = attempts.iter().map(|a| (a.attempt, a.outcome)).collect();
    assert_eq!(summary, [(2, Some(Outcome::Promoted)), (1, Some(Outcome::RolledBack))]);
    let kinds: Vec<String> =
        registry.rollout_events("uid-1").await.unwrap().into_iter().map(|e| e.kind.as_str().to_string()).collect();
    let steps = kinds.iter().filter(|k| *k == "step_applied").count();
    let starts = kinds.iter().filter(|k| *k == "rollout_started").count();
    assert_eq!((starts, steps), (2, 2), "each attempt's start and step are in the trail: {kinds:?}");
    assert!(registry.verify_chain("fraud").await.unwrap().first_break.is_none());
}

#[tokio::test]
async fn a_retry_closes_an_attempt_whose_ending_was_never_recorded() {
    let (registry, _) = fresh_registry().await;
    registry.register_version_for("ml", &version("fraud", "v2", 2)).await.unwrap();
    registry.start_rollout_attempt(&rollout("uid-1", "ml", "v2"), None).await.unwrap();
    let second = registry.start_rollout_attempt(&rollout("uid-1", "ml", "v2"), Some("again")).await.unwrap();
    assert_eq!(second.attempt, 2);
    let attempts = registry.rollout_attempts("uid-1").await.unwrap();
    assert_eq!(attempts[1].outcome, Some(Outcome::Aborted));
    assert!(attempts[1].outcome_reason.as_deref().unwrap_or_default().contains("superseded by attempt 2"));
}

/// Runs `sql` as the superuser on the shared test server.
fn admin(sql: &str) -> String {
    rampart_testenv::shared_postgres().unwrap().psql(sql).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_failing_over_server_answers_is_retryable_and_the_write_lands_afterwards() {
    let (registry, url) = fresh_registry().await;
    let database = url.rsplit('/').next().unwrap().to_string();
    registry.register_version_for("ml", &version("fraud", "v2", 2)).await.unwrap();

    // 25006: a demoted primary (or a standby) accepts connections but refuses writes.
    admin(&format!("ALTER DATABASE \"{database}\" SET default_transaction_read_only = on"));
    admin(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"));
    let mut read_only = None;
    for _ in 0..5 {
        match registry.start_rollout_attempt(&rollout("uid-1", "ml", "v2"), None).await {
            Err(err) if err.to_string().contains("read-only") => {
                read_only = Some(err);
                break;
            }
            // The pool first notices the terminated connections (57P01 or a closed socket): retryable too.
            Err(err) => assert!(err.is_retryable(), "terminated connection not retryable: {err:?}"),
            Ok(_) => panic!("a read-only database took the write"),
        }
    }
    let read_only = read_only.expect("the write reached the read-only database");
    println!("a read-only server answered: {read_only}");
    assert!(read_only.is_retryable(), "25006 must be retried: {read_only:?}");
    assert_eq!(read_only.metric_label(), "unavailable");

    // The new primary: the same write lands, once.
    admin(&format!("ALTER DATABASE \"{database}\" RESET default_transaction_read_only"));
    admin(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"));
    let mut landed = None;
    for _ in 0..5 {
        match registry.start_rollout_attempt(&rollout("uid-1", "ml", "v2"), None).await {
            Ok(record) => {
                landed = Some(record);
                break;
            }
            Err(err) => assert!(err.is_retryable(), "{err:?}"),
        }
    }
    assert_eq!(landed.expect("the write never landed").attempt, 1);
    assert_eq!(registry.rollouts("fraud").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutting_down_mid_transaction_answers_57p01_and_it_is_retryable() {
    let (registry, url) = fresh_registry().await;
    let database = url.rsplit('/').next().unwrap().to_string();
    registry.register_version_for("ml", &version("fraud", "v2", 2)).await.unwrap();
    // A transaction that holds the model lock, then the administrator's shutdown of every backend of the database
    // (what a fast shutdown or a failover does to open sessions).
    let mut tx = registry.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_sleep(0)").execute(&mut *tx).await.unwrap();
    admin(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"));
    let err = sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap_err();
    let code = match &err {
        sqlx::Error::Database(db) => db.code().map(|c| c.to_string()),
        _ => None,
    };
    let err = RegistryError::from(err);
    println!("a terminated session answered {code:?}: {err}");
    assert!(err.is_retryable(), "{code:?}: {err:?}");
    if let Some(code) = code {
        assert_eq!(code, "57P01", "the server's answer to a terminated session");
        assert_eq!(err.metric_label(), "unavailable");
    }
    drop(tx);
    // The registry recovers on its own: the pool replaces the dead connections.
    registry.start_rollout_attempt(&rollout("uid-1", "ml", "v2"), None).await.unwrap();
    assert_eq!(registry.rollouts("fraud").await.unwrap().len(), 1);
}
