//! `register`, `history` and `validate --baseline-from-registry` against a real throwaway Postgres: each test gets
//! its own database, seeded through the CLI itself or the registry API the controller uses.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use rampart_registry::{AliasMove, NewRollout, Outcome, Registry, StepRecord, VerdictRecord, VersionStatus};
use serde_json::json;
use support::{Outcome as Run, closed_port, command, key_pair, model_fixture, path_str, run_command};

fn database() -> String {
    rampart_testenv::shared_postgres().unwrap().new_database().unwrap()
}

/// Runs the binary with the registry URL in RAMPART_DATABASE_URL.
fn rampart(url: &str, args: &[&str]) -> Run {
    let mut command = command(args);
    command.env("RAMPART_DATABASE_URL", url);
    run_command(command)
}

/// Signs `model` with a fresh key in `dir` and registers it as MODEL VERSION; returns the public key path.
fn sign_and_register(url: &str, dir: &Path, model_name: &str, version: &str, model: &Path) -> Run {
    let (private, public) = key_pair(dir, &format!("signer-{version}"), 9);
    let bundle = dir.join(format!("{version}.sig"));
    let sign = ["sign", "--key", path_str(&private), "--out", path_str(&bundle), "--model-name", model_name];
    support::run(&[&sign[..], &[path_str(model)]].concat()).expect_code(0);
    rampart(
        url,
        &[
            "register",
            model_name,
            version,
            "--path",
            path_str(model),
            "--uri",
            &format!("s3://models/{model_name}/{version}/"),
            "--bundle",
            path_str(&bundle),
            "--key",
            path_str(&public),
        ],
    )
}

#[tokio::test]
async fn register_verifies_then_records_a_verified_version_with_its_contract() {
    let url = database();
    let dir = tempfile::tempdir().unwrap();
    let outcome = sign_and_register(&url, dir.path(), "fraud-detector", "v1", &model_fixture("residual_mlp.onnx"));
    outcome.expect_code(0);
    assert!(outcome.stdout.contains("registered fraud-detector v1 (sha256:"), "{}", outcome.stdout);

    let registry = Registry::connect(&url).await.unwrap();
    let version = registry.version("fraud-detector", "v1").await.unwrap();
    assert_eq!(version.status, VersionStatus::Verified);
    assert_eq!(version.uri, "s3://models/fraud-detector/v1/");
    assert!(version.signer_key_id.is_some());
    assert!(version.signature_bundle.is_some());
    assert_eq!(version.format.as_deref(), Some("onnx"));
    assert_eq!(version.tensor_contract.unwrap()["inputs"][0]["name"], "features");
}

#[tokio::test]
async fn register_with_a_bad_signature_writes_nothing_and_exits_1() {
    let url = database();
    let dir = tempfile::tempdir().unwrap();
    let (private, _) = key_pair(dir.path(), "stranger", 4);
    let (_, trusted) = key_pair(dir.path(), "team", 5);
    let model = model_fixture("residual_mlp.onnx");
    let bundle = dir.path().join("v1.sig");
    support::run(&["sign", "--key", path_str(&private), "--out", path_str(&bundle), path_str(&model)]).expect_code(0);
    let outcome = rampart(
        &url,
        &[
            "register",
            "fraud-detector",
            "v1",
            "--path",
            path_str(&model),
            "--uri",
            "s3://x/",
            "--bundle",
            path_str(&bundle),
            "--key",
            path_str(&trusted),
        ],
    );
    outcome.expect_code(1);
    assert!(outcome.stderr.contains("NOT VERIFIED"), "{}", outcome.stderr);
    let registry = Registry::connect(&url).await.unwrap();
    assert!(registry.versions("fraud-detector").await.is_err(), "nothing may be registered");
}

#[tokio::test]
async fn register_refuses_a_bundle_signed_for_another_model_and_writes_nothing() {
    let url = database();
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = key_pair(dir.path(), "team", 6);
    let model = model_fixture("residual_mlp.onnx");
    let bundle = dir.path().join("v1.sig");
    let sign = ["sign", "--key", path_str(&private), "--out", path_str(&bundle), "--model-name", "churn"];
    support::run(&[&sign[..], &[path_str(&model)]].concat()).expect_code(0);
    let outcome = rampart(
        &url,
        &[
            "register",
            "fraud-detector",
            "v1",
            "--path",
            path_str(&model),
            "--uri",
            "s3://x/",
            "--bundle",
            path_str(&bundle),
            "--key",
            path_str(&public),
        ],
    );
    outcome.expect_code(1);
    assert!(
        outcome.stderr.contains(r#"the bundle signs model "churn", but this is model "fraud-detector""#),
        "{}",
        outcome.stderr
    );
    let registry = Registry::connect(&url).await.unwrap();
    assert!(registry.versions("fraud-detector").await.is_err(), "nothing may be registered");
}

#[tokio::test]
async fn register_with_an_unreachable_database_exits_2_after_verifying() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let url = format!("postgres://rampart:secret-password@127.0.0.1:{port}/rampart");
    let outcome = sign_and_register(&url, dir.path(), "fraud-detector", "v1", &model_fixture("residual_mlp.onnx"));
    outcome.expect_code(2);
    assert!(
        outcome.stderr.contains(&format!("cannot reach the registry database at 127.0.0.1:{port}/rampart")),
        "{}",
        outcome.stderr
    );
    assert!(outcome.stderr.contains("hint: check that Postgres is running"), "{}", outcome.stderr);
    assert!(!outcome.stderr.contains("secret-password"), "the password must not be printed: {}", outcome.stderr);
}

#[tokio::test]
async fn register_without_a_database_url_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = key_pair(dir.path(), "team", 5);
    let model = model_fixture("residual_mlp.onnx");
    let bundle = dir.path().join("v1.sig");
    let sign = ["sign", "--key", path_str(&private), "--out", path_str(&bundle), "--model-name", "m", path_str(&model)];
    support::run(&sign).expect_code(0);
    let args = ["register", "m", "v1", "--path", path_str(&model), "--uri", "s3://x/", "--bundle", path_str(&bundle)];
    let mut args = args.to_vec();
    args.extend(["--key", path_str(&public)]);
    let outcome = support::run(&args);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("hint: pass --database-url"), "{}", outcome.stderr);

    args.extend(["--database-url", "mysql://nope"]);
    let outcome = support::run(&args);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("--database-url is not a valid Postgres URL"), "{}", outcome.stderr);
}

/// v1 in production, v2 rolled back once (accuracy), then promoted by a second rollout.
async fn seed_history(url: &str) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    sign_and_register(url, dir.path(), "fraud-detector", "v1", &model_fixture("residual_mlp.onnx")).expect_code(0);
    sign_and_register(url, dir.path(), "fraud-detector", "v2", &model_fixture("residual_mlp_removed_output.onnx"))
        .expect_code(0);
    let registry = Registry::connect(url).await.unwrap();
    registry
        .move_alias(&AliasMove {
            model: "fraud-detector".into(),
            alias: "production".into(),
            version: "v1".into(),
            actor: "test".into(),
            reason: "first release".into(),
            expected_current: None,
            rollout_uid: None,
        })
        .await
        .unwrap();
    let rollout = |uid: &str, name: &str| NewRollout {
        model: "fraud-detector".into(),
        uid: uid.into(),
        namespace: "ml".into(),
        name: name.into(),
        candidate_version: "v2".into(),
        baseline_version: Some("v1".into()),
    };
    registry.start_rollout(&rollout("uid-1", "fraud-v2")).await.unwrap();
    registry
        .record_step("uid-1", &StepRecord { index: 0, canary_weight: 10, description: "setWeight 10".into() })
        .await
        .unwrap();
    let statistics = json!({"metrics": [{
        "name": "accuracy", "verdict": "Fail", "canary": "0.8500", "baseline": "0.9000",
        "effect": "-0.0500", "interval": "[-0.0909, -0.0154]"
    }]});
    registry
        .record_verdict(
            "uid-1",
            &VerdictRecord { step_index: 1, evaluation: 6, verdict: "Fail".into(), statistics: statistics.clone() },
        )
        .await
        .unwrap();
    registry.record_rollback("uid-1", "accuracy below the tolerance", &statistics).await.unwrap();
    registry.start_rollout(&rollout("uid-2", "fraud-v2-again")).await.unwrap();
    registry.record_promotion("uid-2", "rampart").await.unwrap();
    registry
}

#[tokio::test]
async fn history_lists_rollouts_with_outcome_rollbacks_with_statistics_and_production() {
    let url = database();
    seed_history(&url).await;
    let outcome = rampart(&url, &["history", "fraud-detector"]);
    outcome.expect_code(0);
    let text = &outcome.stdout;
    assert!(text.contains("model fraud-detector: production is v2 (sha256:"), "{text}");
    let first = text.lines().find(|line| line.starts_with("ml/fraud-v2 ")).unwrap();
    assert!(first.contains("rolled_back") && first.contains("v1"), "{first}");
    let second = text.lines().find(|line| line.starts_with("ml/fraud-v2-again")).unwrap();
    assert!(second.contains("promoted"), "{second}");
    assert!(text.contains("accuracy below the tolerance"), "{text}");
    assert!(
        text.contains("accuracy: Fail (canary 0.8500, baseline 0.9000, effect -0.0500, interval [-0.0909, -0.0154])"),
        "{text}"
    );
    assert!(text.contains("event log of fraud-detector: hash chain intact"), "{text}");

    let limited = rampart(&url, &["history", "fraud-detector", "--limit", "1", "--format", "json"]);
    limited.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&limited.stdout).unwrap();
    assert_eq!(value["production"]["version"], "v2");
    assert_eq!(value["rollouts"].as_array().unwrap().len(), 1);
    assert_eq!(value["totalRollouts"], 2);
    assert_eq!(value["rollouts"][0]["name"], "fraud-v2-again", "newest first");
    assert_eq!(value["chain"]["intact"], true);

    let all = rampart(&url, &["history", "fraud-detector", "--format", "json"]);
    let value: serde_json::Value = serde_json::from_str(&all.stdout).unwrap();
    let rolled_back = value["rollouts"].as_array().unwrap().iter().find(|r| r["name"] == "fraud-v2").unwrap();
    assert_eq!(rolled_back["outcome"], serde_json::to_value(Outcome::RolledBack).unwrap());
    assert_eq!(rolled_back["rollback"]["statistics"]["metrics"][0]["canary"], "0.8500");
}

#[tokio::test]
async fn history_of_one_rollout_shows_every_event_with_the_chain_verified() {
    let url = database();
    seed_history(&url).await;
    let outcome = rampart(&url, &["history", "--rollout", "ml/fraud-v2"]);
    outcome.expect_code(0);
    let text = &outcome.stdout;
    assert!(text.contains("rollout ml/fraud-v2 (uid uid-1): model fraud-detector v1 -> v2"), "{text}");
    assert!(text.contains("rolled_back: accuracy below the tolerance"), "{text}");
    for kind in ["rollout_started", "step_applied", "verdict", "rolled_back"] {
        assert!(text.contains(kind), "trail lacks {kind}: {text}");
    }
    assert!(text.contains("hash chain intact"), "{text}");

    let json = rampart(&url, &["history", "--rollout", "ml/fraud-v2", "--format", "json"]);
    json.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let kinds: Vec<&str> = value["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"rollout_started"));
    assert!(kinds.contains(&"rolled_back"), "{kinds:?}");
}

#[tokio::test]
async fn history_exits_1_when_the_event_log_was_tampered_with() {
    let url = database();
    seed_history(&url).await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only").execute(&pool).await.unwrap();
    sqlx::query("UPDATE events SET payload = '{\"reason\": \"nothing to see\"}' WHERE kind = 'rolled_back'")
        .execute(&pool)
        .await
        .unwrap();
    let outcome = rampart(&url, &["history", "--rollout", "ml/fraud-v2"]);
    outcome.expect_code(1);
    assert!(outcome.stdout.contains("HASH CHAIN BROKEN at event #"), "{}", outcome.stdout);
    let outcome = rampart(&url, &["history", "fraud-detector", "--format", "json"]);
    outcome.expect_code(1);
    let value: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(value["chain"]["intact"], false);
}

#[tokio::test]
async fn history_of_unknown_model_or_rollout_exits_2_with_a_hint() {
    let url = database();
    seed_history(&url).await;
    let outcome = rampart(&url, &["history", "no-such-model"]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("model `no-such-model` is not in the registry"), "{}", outcome.stderr);

    let outcome = rampart(&url, &["history", "--rollout", "ml/ghost"]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("no rollout ml/ghost is recorded in the registry"), "{}", outcome.stderr);

    let outcome = rampart(&url, &["history", "--rollout", "just-a-name"]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains("--rollout takes NAMESPACE/NAME"), "{}", outcome.stderr);
}

#[tokio::test]
async fn history_with_an_unreachable_database_exits_2() {
    let port = closed_port();
    let outcome = support::run(&[
        "history",
        "fraud-detector",
        "--database-url",
        &format!("postgres://postgres@127.0.0.1:{port}/rampart"),
    ]);
    outcome.expect_code(2);
    assert!(outcome.stderr.contains(&format!("cannot reach the registry database at 127.0.0.1:{port}")));
}

#[tokio::test]
async fn validate_against_the_registry_uses_the_production_contract() {
    let url = database();
    seed_history(&url).await; // production is v2: residual_mlp without the "embedding" output
    let same = rampart(
        &url,
        &[
            "validate",
            "--candidate",
            path_str(&model_fixture("residual_mlp_removed_output.onnx")),
            "--baseline-from-registry",
            "fraud-detector",
        ],
    );
    same.expect_code(0);
    assert!(same.stdout.contains("baseline: fraud-detector v2 (production)"), "{}", same.stdout);

    let renamed = rampart(
        &url,
        &[
            "validate",
            "--candidate",
            path_str(&model_fixture("residual_mlp_renamed_input.onnx")),
            "--baseline-from-registry",
            "fraud-detector",
        ],
    );
    renamed.expect_code(1);
    assert!(renamed.stdout.contains("input \"features\" is missing from the candidate"), "{}", renamed.stdout);

    let unknown = rampart(
        &url,
        &["validate", "--candidate", path_str(&model_fixture("residual_mlp.onnx")), "--baseline-from-registry", "nope"],
    );
    unknown.expect_code(2);
    assert!(unknown.stderr.contains("model `nope` is not in the registry"), "{}", unknown.stderr);
}

#[tokio::test]
async fn history_lists_each_attempt_of_a_retried_rollout() {
    let url = database();
    let registry = Registry::connect(&url).await.unwrap();
    let version = rampart_registry::NewVersion {
        model: "fraud-detector".into(),
        version: "v2".into(),
        uri: "s3://models/fraud-detector/v2/".into(),
        digest: format!("sha256:{}", "2".repeat(64)),
        ..Default::default()
    };
    registry.register_version(&version).await.unwrap();
    let rollout = NewRollout {
        model: "fraud-detector".into(),
        uid: "uid-1".into(),
        namespace: "ml".into(),
        name: "fraud-v2".into(),
        candidate_version: "v2".into(),
        baseline_version: None,
    };
    registry.start_rollout(&rollout).await.unwrap();
    registry.record_rollback("uid-1", "accuracy below the tolerance", &json!({})).await.unwrap();
    registry.start_rollout_attempt(&rollout, Some("2026-12-01T09:00:00Z")).await.unwrap();

    let json_run = rampart(&url, &["history", "fraud-detector", "--format", "json"]);
    json_run.expect_code(0);
    let value: serde_json::Value = serde_json::from_str(&json_run.stdout).unwrap();
    let attempts: Vec<(i64, serde_json::Value)> = value["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["attempt"].as_i64().unwrap(), r["outcome"].clone()))
        .collect();
    assert_eq!(attempts, [(2, serde_json::Value::Null), (1, serde_json::to_value(Outcome::RolledBack).unwrap())]);
    let table = rampart(&url, &["history", "fraud-detector"]);
    table.expect_code(0);
    assert!(table.stdout.contains("ml/fraud-v2 (attempt 2)"), "{}", table.stdout);
}
