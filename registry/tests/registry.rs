//! The registry against a real throwaway Postgres (rampart-testenv): versions, aliases, rollouts, the event chain and
//! its tamper detection, and concurrent writers.
#![allow(clippy::unwrap_used)]

use rampart_registry::{
    AliasMove, ChainBreakKind, EventKind, NewEvent, NewRollout, NewVersion, Outcome, PRODUCTION, Registry,
    RegistryError, StepRecord, VerdictRecord, Verification, VersionStatus,
};
use serde_json::json;

async fn fresh_registry() -> (Registry, String) {
    let url = rampart_testenv::shared_postgres().unwrap().new_database().unwrap();
    (Registry::connect(&url).await.unwrap(), url)
}

fn digest(n: u8) -> String {
    format!("sha256:{}", format!("{n:02x}").repeat(32))
}

fn new_version(model: &str, version: &str, n: u8) -> NewVersion {
    NewVersion {
        model: model.into(),
        version: version.into(),
        uri: format!("s3://models/{model}/{version}"),
        digest: digest(n),
        size_bytes: Some(1024),
        format: Some("onnx".into()),
        tensor_contract: Some(json!({"inputs": [{"name": "x", "shape": [-1, 16], "dtype": "float32"}]})),
        signature_bundle: Some("{\"mediaType\":\"...\"}".into()),
    }
}

async fn verified_version(registry: &Registry, model: &str, version: &str, n: u8) {
    registry.register_version(&new_version(model, version, n)).await.unwrap();
    let verification = Verification { digest: digest(n), signer_key_id: "key-1".into(), ..Default::default() };
    registry.mark_verified(model, version, &verification).await.unwrap();
}

fn note(n: usize) -> NewEvent {
    NewEvent {
        kind: EventKind::Other("note".into()),
        rollout_uid: None,
        payload: json!({"n": n}),
        idempotency_key: None,
    }
}

#[tokio::test]
async fn registering_the_same_version_again_is_idempotent_but_a_different_digest_is_refused() {
    let (registry, _) = fresh_registry().await;
    let first = registry.register_version(&new_version("fraud", "v1", 1)).await.unwrap();
    let again = registry.register_version(&new_version("fraud", "v1", 1)).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(first.status, VersionStatus::Unverified);

    let err = registry.register_version(&new_version("fraud", "v1", 2)).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestConflict { .. }), "{err}");
    assert_eq!(err.metric_label(), "digest_conflict");
    assert!(err.to_string().contains(&digest(1)) && err.to_string().contains(&digest(2)), "{err}");
    assert_eq!(registry.versions("fraud").await.unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_digest_is_refused_before_touching_the_database() {
    let (registry, _) = fresh_registry().await;
    let mut bad = new_version("fraud", "v1", 1);
    bad.digest = "md5:abc".into();
    let err = registry.register_version(&bad).await.unwrap_err();
    assert_eq!(err.metric_label(), "invalid_input");
}

#[tokio::test]
async fn an_alias_cannot_point_at_an_unverified_or_rejected_version() {
    let (registry, _) = fresh_registry().await;
    registry.register_version(&new_version("fraud", "v1", 1)).await.unwrap();
    let request = AliasMove {
        model: "fraud".into(),
        alias: PRODUCTION.into(),
        version: "v1".into(),
        actor: "test".into(),
        reason: "first".into(),
        ..AliasMove::default()
    };
    let err = registry.move_alias(&request).await.unwrap_err();
    assert!(matches!(err, RegistryError::VersionNotVerified { .. }), "{err}");
    assert!(err.to_string().contains("unverified"), "{err}");

    registry.mark_rejected("fraud", "v1", "signature by untrusted key abc").await.unwrap();
    let err = registry.move_alias(&request).await.unwrap_err();
    assert!(err.to_string().contains("rejected"), "{err}");
    assert!(registry.production("fraud").await.unwrap().is_none());
    assert!(registry.alias_history("fraud", PRODUCTION).await.unwrap().is_empty());
}

#[tokio::test]
async fn verification_with_another_digest_than_registered_is_refused() {
    let (registry, _) = fresh_registry().await;
    registry.register_version(&new_version("fraud", "v1", 1)).await.unwrap();
    let verification = Verification { digest: digest(9), signer_key_id: "k".into(), ..Default::default() };
    let err = registry.mark_verified("fraud", "v1", &verification).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestConflict { .. }), "{err}");
    assert_eq!(registry.version("fraud", "v1").await.unwrap().status, VersionStatus::Unverified);
}

#[tokio::test]
async fn records_rollouts_steps_verdicts_rollback_and_promotion_for_the_cli() {
    let (registry, _) = fresh_registry().await;
    verified_version(&registry, "fraud", "v1", 1).await;
    verified_version(&registry, "fraud", "v2", 2).await;
    verified_version(&registry, "fraud", "v3", 3).await;
    let first_production = AliasMove {
        model: "fraud".into(),
        alias: PRODUCTION.into(),
        version: "v1".into(),
        actor: "rampart-cli:alice".into(),
        reason: "initial".into(),
        ..AliasMove::default()
    };
    registry.move_alias(&first_production).await.unwrap();

    // A rollout of v2 that fails analysis and rolls back.
    let rollout = NewRollout {
        model: "fraud".into(),
        uid: "uid-2".into(),
        namespace: "ml".into(),
        name: "fraud-v2".into(),
        candidate_version: "v2".into(),
        baseline_version: Some("v1".into()),
    };
    registry.start_rollout(&rollout).await.unwrap();
    let again = registry.start_rollout(&rollout).await.unwrap();
    assert_eq!(again.outcome, None, "a restarted controller finds the same rollout");
    let step = StepRecord { index: 0, canary_weight: 10, description: "setWeight 10".into() };
    let first_step = registry.record_step("uid-2", &step).await.unwrap();
    let retried_step = registry.record_step("uid-2", &step).await.unwrap();
    assert_eq!(first_step.seq, retried_step.seq, "a retried step is recorded once");
    let statistics = json!({"accuracy": {"canary": 0.91, "baseline": 0.95, "upper": -0.02, "p": 0.001}});
    let verdict =
        VerdictRecord { step_index: 1, evaluation: 0, verdict: "fail".into(), statistics: statistics.clone() };
    registry.record_verdict("uid-2", &verdict).await.unwrap();
    let rolled_back = registry.record_rollback("uid-2", "accuracy below tolerance", &statistics).await.unwrap();
    assert_eq!(rolled_back.outcome, Some(Outcome::RolledBack));
    let err = registry.record_step("uid-2", &StepRecord { index: 2, canary_weight: 50, description: "x".into() }).await;
    assert_eq!(err.unwrap_err().metric_label(), "rollout_finished");
    let err = registry.record_promotion("uid-2", "controller").await.unwrap_err();
    assert!(matches!(err, RegistryError::RolloutFinished { .. }), "{err}");

    // A rollout of v3 that promotes.
    let rollout3 =
        NewRollout { uid: "uid-3".into(), name: "fraud-v3".into(), candidate_version: "v3".into(), ..rollout };
    registry.start_rollout(&rollout3).await.unwrap();
    registry
        .record_step("uid-3", &StepRecord { index: 0, canary_weight: 100, description: "setWeight 100".into() })
        .await
        .unwrap();
    let promoted = registry.record_promotion("uid-3", "controller").await.unwrap();
    assert_eq!(promoted.outcome, Some(Outcome::Promoted));
    assert_eq!(registry.record_promotion("uid-3", "controller").await.unwrap(), promoted, "retry is a no-op");

    // What the CLI reads.
    let versions = registry.versions("fraud").await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["v1", "v2", "v3"]);
    assert_eq!(registry.production("fraud").await.unwrap().unwrap().version, "v3");
    let rollouts = registry.rollouts("fraud").await.unwrap();
    assert_eq!(
        rollouts.iter().map(|r| (r.uid.as_str(), r.outcome)).collect::<Vec<_>>(),
        [("uid-3", Some(Outcome::Promoted)), ("uid-2", Some(Outcome::RolledBack))]
    );
    let rollbacks = registry.rollbacks("fraud").await.unwrap();
    assert_eq!(rollbacks.len(), 1);
    assert_eq!(rollbacks[0].reason, "accuracy below tolerance");
    assert_eq!(rollbacks[0].statistics, statistics);
    let history = registry.alias_history("fraud", PRODUCTION).await.unwrap();
    assert_eq!(
        history.iter().map(|m| (m.from_version.as_deref(), m.to_version.as_str())).collect::<Vec<_>>(),
        [(None, "v1"), (Some("v1"), "v3")]
    );
    assert_eq!(history[1].rollout_uid.as_deref(), Some("uid-3"));
    let trail = registry.rollout_events("uid-2").await.unwrap();
    assert_eq!(
        trail.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
        [EventKind::RolloutStarted, EventKind::StepApplied, EventKind::Verdict, EventKind::RolledBack]
    );
    assert_eq!(trail[2].payload["statistics"], statistics);
    let all = registry.model_history("fraud", 1000, None).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].seq == w[1].seq + 1), "newest first, no gaps");
    let report = registry.verify_chain("fraud").await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.rows_checked, u64::try_from(all.len()).unwrap());
}

#[tokio::test]
async fn a_rollback_after_promotion_moves_production_back_and_keeps_the_promotion_in_the_trail() {
    let (registry, _) = fresh_registry().await;
    verified_version(&registry, "fraud", "v1", 1).await;
    verified_version(&registry, "fraud", "v2", 2).await;
    let first = AliasMove {
        model: "fraud".into(),
        alias: PRODUCTION.into(),
        version: "v1".into(),
        actor: "test".into(),
        reason: "initial".into(),
        ..AliasMove::default()
    };
    registry.move_alias(&first).await.unwrap();
    let rollout = NewRollout {
        model: "fraud".into(),
        uid: "uid-bake".into(),
        namespace: "ml".into(),
        name: "fraud-v2".into(),
        candidate_version: "v2".into(),
        baseline_version: Some("v1".into()),
    };
    registry.start_rollout(&rollout).await.unwrap();
    registry.record_promotion("uid-bake", "controller").await.unwrap();
    assert_eq!(registry.production("fraud").await.unwrap().unwrap().version, "v2");

    let statistics = json!({"metrics": [{"name": "accuracy", "verdict": "Fail"}]});
    let reason = "rolled back after promotion to v1: bake failed: accuracy";
    let rolled_back = registry.record_rollback_after_promotion("uid-bake", reason, &statistics, "bake").await.unwrap();
    assert_eq!(rolled_back.outcome, Some(Outcome::RolledBack));
    let again = registry.record_rollback_after_promotion("uid-bake", reason, &statistics, "bake").await.unwrap();
    assert_eq!(again, rolled_back, "a retried record is a no-op");

    assert_eq!(registry.production("fraud").await.unwrap().unwrap().version, "v1");
    let history = registry.alias_history("fraud", PRODUCTION).await.unwrap();
    assert_eq!(
        history.iter().map(|m| (m.from_version.as_deref(), m.to_version.as_str())).collect::<Vec<_>>(),
        [(None, "v1"), (Some("v1"), "v2"), (Some("v2"), "v1")]
    );
    assert_eq!(history[2].actor, "bake");
    assert_eq!(history[2].rollout_uid.as_deref(), Some("uid-bake"));
    let kinds: Vec<EventKind> =
        registry.rollout_events("uid-bake").await.unwrap().iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            EventKind::RolloutStarted,
            EventKind::AliasMoved,
            EventKind::Promoted,
            EventKind::AliasMoved,
            EventKind::RolledBack
        ]
    );
    let rollbacks = registry.rollbacks("fraud").await.unwrap();
    assert_eq!(rollbacks.len(), 1);
    assert_eq!(rollbacks[0].reason, reason);
    assert_eq!(rollbacks[0].statistics, statistics);
    // A rollout that ended otherwise cannot be rolled back after promotion.
    let failed = NewRollout { uid: "uid-failed".into(), name: "fraud-v2-again".into(), ..rollout };
    registry.start_rollout(&failed).await.unwrap();
    registry.finish_rollout("uid-failed", Outcome::Failed, "contract").await.unwrap();
    let err = registry.record_rollback_after_promotion("uid-failed", reason, &statistics, "bake").await.unwrap_err();
    assert!(matches!(err, RegistryError::RolloutFinished { .. }), "{err}");
    assert_eq!(registry.production("fraud").await.unwrap().unwrap().version, "v1");
    assert!(registry.verify_chain("fraud").await.unwrap().is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_concurrent_writers_never_fork_the_chain_and_lose_nothing() {
    let (registry, _) = fresh_registry().await;
    registry.register_version(&new_version("busy", "v1", 1)).await.unwrap();
    let before = registry.model_history("busy", 10, None).await.unwrap().len();
    let mut writers = Vec::new();
    for writer in 0..8 {
        let registry = registry.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..50 {
                let event = NewEvent {
                    kind: EventKind::Other("note".into()),
                    rollout_uid: None,
                    payload: json!({"writer": writer, "i": i}),
                    idempotency_key: None,
                };
                if i % 10 == 0 {
                    registry.append_events("busy", &[event.clone(), event]).await.unwrap();
                } else {
                    registry.append_event("busy", &event).await.unwrap();
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let history = registry.model_history("busy", 10_000, None).await.unwrap();
    assert_eq!(history.len(), before + 8 * 55, "every append is in the log");
    for writer in 0..8 {
        let mine = history.iter().filter(|e| e.payload["writer"] == writer).count();
        assert_eq!(mine, 55, "writer {writer} lost events");
    }
    let report = registry.verify_chain("busy").await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.rows_checked, u64::try_from(history.len()).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_alias_moves_serialize_and_both_are_in_history() {
    let (registry, _) = fresh_registry().await;
    verified_version(&registry, "fraud", "v1", 1).await;
    verified_version(&registry, "fraud", "v2", 2).await;
    let request = |version: &str| AliasMove {
        model: "fraud".into(),
        alias: PRODUCTION.into(),
        version: version.into(),
        actor: format!("mover-{version}"),
        reason: "race".into(),
        ..AliasMove::default()
    };
    let (a, b) = tokio::join!(
        {
            let registry = registry.clone();
            let request = request("v1");
            tokio::spawn(async move { registry.move_alias(&request).await })
        },
        {
            let registry = registry.clone();
            let request = request("v2");
            tokio::spawn(async move { registry.move_alias(&request).await })
        }
    );
    a.unwrap().unwrap();
    b.unwrap().unwrap();
    let history = registry.alias_history("fraud", PRODUCTION).await.unwrap();
    assert_eq!(history.len(), 2, "both moves are in history");
    // Serialized: the second move starts from where the first left the alias; the winner is the last one.
    assert_eq!(history[0].from_version, None);
    assert_eq!(history[1].from_version.as_deref(), Some(history[0].to_version.as_str()));
    let production = registry.production("fraud").await.unwrap().unwrap();
    assert_eq!(production.version, history[1].to_version);
    assert!(registry.verify_chain("fraud").await.unwrap().is_intact());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_alias_moves_let_exactly_one_of_two_racers_win() {
    let (registry, _) = fresh_registry().await;
    for (version, n) in [("v1", 1), ("v2", 2), ("v3", 3)] {
        verified_version(&registry, "fraud", version, n).await;
    }
    let base = AliasMove {
        model: "fraud".into(),
        alias: PRODUCTION.into(),
        version: "v1".into(),
        actor: "t".into(),
        reason: "start".into(),
        ..AliasMove::default()
    };
    registry.move_alias(&base).await.unwrap();
    let racer = |version: &str| {
        let registry = registry.clone();
        let request = AliasMove { version: version.into(), expected_current: Some("v1".into()), ..base.clone() };
        tokio::spawn(async move { registry.move_alias(&request).await })
    };
    let (a, b) = tokio::join!(racer("v2"), racer("v3"));
    let results = [a.unwrap(), b.unwrap()];
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(loser.metric_label(), "alias_conflict", "{loser}");
    assert_eq!(registry.alias_history("fraud", PRODUCTION).await.unwrap().len(), 2);
}

async fn chain_with_rows(rows: usize) -> (Registry, sqlx::PgPool) {
    let (registry, url) = fresh_registry().await;
    registry.register_version(&new_version("audited", "v1", 1)).await.unwrap();
    let events: Vec<NewEvent> = (0..rows).map(note).collect();
    registry.append_events("audited", &events).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only").execute(&pool).await.unwrap();
    (registry, pool)
}

#[tokio::test]
async fn the_event_log_refuses_updates_and_deletes() {
    let (registry, url) = fresh_registry().await;
    registry.register_version(&new_version("audited", "v1", 1)).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let update = sqlx::query("UPDATE events SET payload = '{}'").execute(&pool).await.unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = sqlx::query("DELETE FROM events").execute(&pool).await.unwrap_err();
    assert!(delete.to_string().contains("append-only"), "{delete}");
}

#[tokio::test]
async fn verify_chain_finds_an_edited_row() {
    let (registry, pool) = chain_with_rows(5).await;
    sqlx::query("UPDATE events SET payload = '{\"n\":999}' WHERE seq = 4").execute(&pool).await.unwrap();
    let found = registry.verify_chain("audited").await.unwrap().first_break.unwrap();
    assert_eq!((found.seq, found.kind), (4, ChainBreakKind::Edited), "{found:?}");
    assert!(found.reason.contains("edited"), "{}", found.reason);
}

#[tokio::test]
async fn verify_chain_finds_an_edited_timestamp() {
    let (registry, pool) = chain_with_rows(3).await;
    sqlx::query("UPDATE events SET occurred_at = occurred_at - interval '1 hour' WHERE seq = 2")
        .execute(&pool)
        .await
        .unwrap();
    let found = registry.verify_chain("audited").await.unwrap().first_break.unwrap();
    assert_eq!((found.seq, found.kind), (2, ChainBreakKind::Edited), "{found:?}");
}

#[tokio::test]
async fn verify_chain_finds_a_deleted_row_in_the_middle_and_at_the_end() {
    let (registry, pool) = chain_with_rows(5).await;
    sqlx::query("DELETE FROM events WHERE seq = 3").execute(&pool).await.unwrap();
    let found = registry.verify_chain("audited").await.unwrap().first_break.unwrap();
    assert_eq!((found.seq, found.kind), (3, ChainBreakKind::Deleted), "{found:?}");

    let (registry, pool) = chain_with_rows(5).await;
    sqlx::query("DELETE FROM events WHERE seq = (SELECT max(seq) FROM events)").execute(&pool).await.unwrap();
    let found = registry.verify_chain("audited").await.unwrap().first_break.unwrap();
    assert_eq!(found.kind, ChainBreakKind::Deleted, "{found:?}");
    assert!(found.reason.contains("missing"), "{}", found.reason);
}

#[tokio::test]
async fn verify_chain_finds_reordered_rows() {
    let (registry, pool) = chain_with_rows(5).await;
    // Swap the positions of rows 3 and 4 (through a free seq, since (model, seq) is unique).
    for sql in [
        "UPDATE events SET seq = 1000 WHERE seq = 3",
        "UPDATE events SET seq = 3 WHERE seq = 4",
        "UPDATE events SET seq = 4 WHERE seq = 1000",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let found = registry.verify_chain("audited").await.unwrap().first_break.unwrap();
    assert_eq!((found.seq, found.kind), (3, ChainBreakKind::Reordered), "{found:?}");
    assert!(found.reason.contains("reordered"), "{}", found.reason);
}

#[tokio::test]
async fn migrations_apply_once_and_reconnecting_is_harmless() {
    let (_, url) = fresh_registry().await;
    let again = Registry::connect(&url).await.unwrap();
    again.register_version(&new_version("m", "v1", 1)).await.unwrap();
    assert_eq!(again.versions("m").await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_unreachable_database_is_reported_as_unavailable_and_retryable() {
    let mut postgres = rampart_testenv::Postgres::start().unwrap();
    let url = postgres.new_database().unwrap();
    let registry = Registry::connect(&url).await.unwrap();
    registry.register_version(&new_version("m", "v1", 1)).await.unwrap();
    postgres.stop();
    let err = registry.versions("m").await.unwrap_err();
    assert_eq!(err.metric_label(), "unavailable", "{err}");
    assert!(err.is_retryable());
    postgres.restart().unwrap();
    // The pool reconnects by itself once the server is back.
    let mut attempts = 0;
    loop {
        match registry.versions("m").await {
            Ok(versions) => {
                assert_eq!(versions.len(), 1);
                break;
            }
            Err(err) if attempts < 20 => {
                attempts += 1;
                let _ = err;
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(err) => panic!("registry did not recover: {err}"),
        }
    }
}

#[tokio::test]
async fn unknown_model_and_rollout_give_not_found_errors() {
    let (registry, _) = fresh_registry().await;
    assert_eq!(registry.versions("nope").await.unwrap_err().metric_label(), "model_not_found");
    assert_eq!(registry.rollout_events("nope").await.unwrap_err().metric_label(), "rollout_not_found");
    assert_eq!(registry.verify_chain("nope").await.unwrap_err().metric_label(), "model_not_found");
}

#[tokio::test]
async fn a_notification_is_queued_once_per_sink_claimed_by_one_caller_and_retried_until_delivered() {
    use std::time::Duration;
    let (registry, _) = fresh_registry().await;
    let notification = rampart_registry::NewNotification {
        event_id: "e1".into(),
        namespace: "ml".into(),
        rollout: "fraud".into(),
        event: json!({"id": "e1"}),
    };
    let sinks = vec!["namespace/cloudevents".to_string(), "controller/slack".to_string()];
    assert_eq!(registry.enqueue_notification(&notification, &sinks).await.unwrap(), 2);
    assert_eq!(registry.enqueue_notification(&notification, &sinks).await.unwrap(), 0, "same id: not queued again");

    let claimed = registry.claim_notifications(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(registry.claim_notifications(10, Duration::from_secs(60)).await.unwrap().is_empty(), "leased");

    registry.mark_notification_delivered("e1", "controller/slack").await.unwrap();
    registry.mark_notification_failed("e1", "namespace/cloudevents", "refused", Some(Duration::ZERO)).await.unwrap();
    assert_eq!(registry.notification_backlog().await.unwrap(), 1);
    let again = registry.claim_notifications(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(again.len(), 1, "the failed row is due again");
    assert_eq!((again[0].sink.as_str(), again[0].attempts), ("namespace/cloudevents", 1));

    registry.mark_notification_failed("e1", "namespace/cloudevents", "gave up", None).await.unwrap();
    assert_eq!(registry.notification_backlog().await.unwrap(), 0);
    let rows = registry.notification_deliveries("ml", "fraud").await.unwrap();
    let abandoned = rows.iter().find(|r| r.sink == "namespace/cloudevents").unwrap();
    assert!(abandoned.abandoned_at.is_some() && abandoned.delivered_at.is_none());
    assert_eq!((abandoned.attempts, abandoned.last_error.as_deref()), (2, Some("gave up")));
    let delivered = rows.iter().find(|r| r.sink == "controller/slack").unwrap();
    assert!(delivered.delivered_at.is_some() && delivered.attempts == 1);
}
