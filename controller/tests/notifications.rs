//! Notifications end to end on the real API server, Postgres and Prometheus: a receiver built with the CloudEvents
//! Python SDK (PyPI `cloudevents`) validates every event of a promoted and of a rolled-back rollout, in binary mode
//! (a namespace's Secret) and structured mode (the controller-wide sink), with the analysis detail; a Slack-style
//! receiver gets text and blocks; and a receiver that is down for 30 s, across a controller restart and with a second
//! sink that never answers, still gets every event afterwards, each once by id, while the rollback is not delayed;
//! a rollback that ended while nothing was notifying is announced by the next leader's sweep; and one that happened
//! while Postgres was down (with a controller restart in between) is announced once Postgres is back.
//!
//! The Python receiver is `support/cloudevents_receiver.py`, run by `RAMPART_CLOUDEVENTS_PYTHON` (set by scripts/test)
//! or `target/ce-venv/bin/python` (installed by scripts/ci-deps).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use rampart_api::Phase;
use rampart_controller::notify::event::{Transition, event_id};
use rampart_controller::notify::render::ContentMode;
use rampart_controller::notify::sinks::NotifyConfig;
use rampart_registry::Registry;
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::{Value, json};
use support::{Rig, accuracy_metric, rollout};

const QUICK: Duration = Duration::from_millis(2);

/// The CloudEvents SDK receiver, a real Python process; killed when dropped.
struct Receiver {
    child: std::process::Child,
    out: PathBuf,
}

impl Receiver {
    fn python() -> PathBuf {
        let python = std::env::var_os("RAMPART_CLOUDEVENTS_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| rampart_testenv::repo_root().join("target/ce-venv/bin/python"));
        assert!(
            python.exists(),
            "no Python with the CloudEvents SDK at {}: run scripts/ci-deps (it installs cloudevents==2.2.0 into \
             target/ce-venv) or set RAMPART_CLOUDEVENTS_PYTHON",
            python.display()
        );
        python
    }

    /// Starts the receiver on `port`, appending to `out`; returns once it listens.
    fn start(port: u16, out: &Path) -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/cloudevents_receiver.py");
        let mut child = std::process::Command::new(Self::python())
            .arg(script)
            .arg(port.to_string())
            .arg(out)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the receiver did not start");
        Receiver { child, out: out.to_path_buf() }
    }

    /// Every line the receiver wrote.
    fn records(&self) -> Vec<Value> {
        read_records(&self.out)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A Slack-style incoming webhook: records every JSON body it is sent.
async fn slack_receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    let app = axum::Router::new().route(
        "/slack",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, received)
}

/// A sink that accepts connections and never answers (a hung webhook).
async fn silent_sink() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    port
}

/// Creates the namespace's `rampart-notifications` Secret.
async fn notification_secret(rig: &Rig, data: &[(&str, String)]) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "rampart-notifications"},
        "stringData": data.iter().cloned().collect::<BTreeMap<_, _>>(),
    }))
    .unwrap();
    Api::<Secret>::namespaced(rig.client.clone(), &rig.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// Waits until `count()` reaches `want`, then a little longer to catch duplicates; returns how long it took.
async fn wait_for_count(what: &str, want: usize, timeout: Duration, count: impl Fn() -> usize) -> Duration {
    let started = Instant::now();
    while count() < want {
        assert!(started.elapsed() < timeout, "{what}: {} of {want} within {timeout:?}", count());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    took
}

fn ids_by_type(records: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records {
        by_type
            .entry(record["type"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(record["id"].as_str().unwrap_or_default().to_string());
    }
    by_type
}

/// Runs one rollout to its end with every kind of sink, and checks what each received.
async fn every_event_is_validated(canary_accuracy: f64, tolerance: f64, ending: Phase, prefix: &str) {
    let canary = ModelServerConfig::new("v2").accuracy(canary_accuracy).latency(QUICK, 0.3);
    let mut rig = Rig::new(prefix, canary, None).await;
    rig.database_url = Some(rampart_testenv::shared_postgres().unwrap().new_database().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let port = rampart_testenv::free_port().unwrap();
    let receiver = Receiver::start(port, &dir.path().join("events.jsonl"));
    let (slack_port, slack) = slack_receiver().await;
    notification_secret(
        &rig,
        &[
            ("cloudevents-url", format!("http://127.0.0.1:{port}/namespace")),
            ("slack-webhook-url", format!("http://127.0.0.1:{slack_port}/slack")),
        ],
    )
    .await;
    rig.notifications = NotifyConfig {
        cloudevents_url: Some(format!("http://127.0.0.1:{port}/controller")),
        cloudevents_mode: ContentMode::Structured,
        allowed_hosts: vec!["127.0.0.1".into()],
        ..NotifyConfig::default()
    };
    rig.start_controller();
    let steps = json!([{"setWeight": 25}, {"analysis": {"duration": "90s", "interval": "1s"}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("fraud", steps, json!([accuracy_metric(tolerance)]), json!({}))).await;
    let done = rig.wait_for_phase("fraud", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(150)).await;
    assert_eq!(done.status.as_ref().and_then(|s| s.phase), Some(ending), "{:?}", done.status);
    let uid = done.uid().unwrap();
    let last = if ending == Phase::Succeeded { Transition::Upgraded } else { Transition::RolledBack };
    let expected: Vec<(Transition, String)> =
        [Transition::Deployed, last].into_iter().map(|t| (t, event_id(&uid, None, t))).collect();

    // Two events, each to two CloudEvents sinks (binary and structured) and one Slack sink.
    let _ = wait_for_count("CloudEvents received", 4, Duration::from_secs(30), || receiver.records().len()).await;
    let records = receiver.records();
    let invalid: Vec<&Value> = records.iter().filter(|r| r.get("invalid").is_some()).collect();
    assert!(invalid.is_empty(), "the SDK receiver refused events: {invalid:?}");
    for (path, mode) in [("/namespace", "binary"), ("/controller", "structured")] {
        let sent: Vec<Value> = records.iter().filter(|r| r["path"] == json!(path)).cloned().collect();
        assert!(sent.iter().all(|r| r["mode"] == json!(mode)), "{path} should be {mode}: {sent:?}");
        let by_type = ids_by_type(&sent);
        assert_eq!(by_type.len(), 2, "{path}: {by_type:?}");
        for (transition, id) in &expected {
            assert_eq!(by_type.get(transition.cdevents_type()), Some(&vec![id.clone()]), "{path}: {by_type:?}");
        }
    }
    // The analysis detail travels with the event: the last analysis's metric with its estimates and interval.
    let final_event = records.iter().find(|r| r["id"] == json!(expected[1].1)).unwrap();
    let rampart = &final_event["data"]["customData"]["rampart"];
    let metric = &rampart["analysis"]["metrics"][0];
    assert_eq!(metric["name"], json!("accuracy"), "{rampart}");
    for field in ["canary", "baseline", "interval", "reason"] {
        assert!(metric[field].as_str().is_some_and(|v| !v.is_empty()), "{field} missing: {metric}");
    }
    let verdict = if ending == Phase::Succeeded { "Pass" } else { "Fail" };
    assert_eq!(metric["verdict"], json!(verdict));
    assert_eq!(final_event["data"]["subject"]["content"]["artifactId"], json!("pkg:generic/fraud@v2"));
    println!("{prefix}: final event {}", serde_json::to_string_pretty(&final_event["data"]).unwrap());

    let _ = wait_for_count("Slack messages", 2, Duration::from_secs(10), || slack.lock().unwrap().len()).await;
    let messages = slack.lock().unwrap().clone();
    assert_eq!(messages.len(), 2, "{messages:?}");
    for message in &messages {
        assert!(message["text"].as_str().is_some_and(|t| t.contains("fraud v2")), "{message}");
        assert!(message["blocks"].as_array().is_some_and(|b| b.len() >= 3), "{message}");
    }
    let last_message = serde_json::to_string(&messages[1]).unwrap();
    let words = if ending == Phase::Succeeded { "promoted" } else { "rolled back" };
    assert!(last_message.contains(words) && last_message.contains("canary 0."), "{last_message}");

    // The queue agrees: every row delivered on the first attempt.
    let registry = Registry::connect(rig.database_url.as_deref().unwrap()).await.unwrap();
    let rows = registry.notification_deliveries(&rig.namespace, "fraud").await.unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(rows.iter().all(|r| r.delivered_at.is_some() && r.attempts == 1), "{rows:?}");
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudevents_sdk_receiver_validates_every_event_of_a_promoted_rollout() {
    every_event_is_validated(0.9, 0.05, Phase::Succeeded, "notify-promoted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudevents_sdk_receiver_validates_every_event_of_a_rolled_back_rollout() {
    every_event_is_validated(0.85, 0.01, Phase::RolledBack, "notify-rolledback").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_30_seconds_gets_every_event_afterwards_once_by_id() {
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("notify-down", canary, None).await;
    let database_url = rampart_testenv::shared_postgres().unwrap().new_database().unwrap();
    rig.database_url = Some(database_url.clone());
    let dir = tempfile::tempdir().unwrap();
    let port = rampart_testenv::free_port().unwrap();
    notification_secret(&rig, &[("cloudevents-url", format!("http://127.0.0.1:{port}/namespace"))]).await;
    // A second, controller-wide sink that accepts connections and never answers: it must not hold anything up.
    let silent = silent_sink().await;
    rig.notifications = NotifyConfig {
        slack_webhook_url: Some(format!("http://127.0.0.1:{silent}/hook")),
        allowed_hosts: vec!["127.0.0.1".into()],
        retry_max: Duration::from_secs(4),
        timeout: Duration::from_secs(5),
        ..NotifyConfig::default()
    };
    rig.start_controller();
    let down_since = Instant::now();
    let steps = json!([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("fraud", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    rig.wait_for_phase("fraud", &[Phase::Paused], Duration::from_secs(30)).await;

    // Abort while both sinks fail: the rollback takes as long as without notifications.
    let aborted = Instant::now();
    rig.annotate("fraud", rampart_api::ANNOTATION_ABORT, Some("true")).await;
    let done = rig.wait_for_phase("fraud", &[Phase::RolledBack], Duration::from_secs(10)).await;
    let rollback_took = aborted.elapsed();
    println!("abort to RolledBack with both sinks failing: {:.2}s", rollback_took.as_secs_f64());
    assert!(rollback_took < Duration::from_secs(3), "the rollback waited for a sink: {rollback_took:?}");
    assert_eq!(rig.route_canary_weight().await, Some(0));
    let uid = done.uid().unwrap();

    // Both events are queued and failing; then the controller restarts (a new process's worth of state).
    let registry = Registry::connect(&database_url).await.unwrap();
    // (Rows of one sink go in order: the later one waits, untried, behind the first.)
    let queued = |rows: &[rampart_registry::DeliveryRecord]| {
        let sent = rows.iter().filter(|r| r.sink == "namespace/cloudevents").collect::<Vec<_>>();
        sent.len() == 2 && sent.iter().any(|r| r.attempts >= 1)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !queued(&registry.notification_deliveries(&rig.namespace, "fraud").await.unwrap()) {
        assert!(Instant::now() < deadline, "the events were not queued and tried");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rig.stop_controller().await;
    rig.start_controller();

    // The receiver comes up 30 s after it went down.
    let down_for = Duration::from_secs(30);
    tokio::time::sleep(down_for.saturating_sub(down_since.elapsed())).await;
    let receiver = Receiver::start(port, &dir.path().join("events.jsonl"));
    let took =
        wait_for_count("events after the receiver came back", 2, Duration::from_secs(30), || receiver.records().len())
            .await;
    println!(
        "receiver down {:.1}s; every event delivered {:.1}s after it came back",
        down_since.elapsed().as_secs_f64() - took.as_secs_f64() - 3.0,
        took.as_secs_f64()
    );

    let records = receiver.records();
    assert!(records.iter().all(|r| r.get("invalid").is_none()), "{records:?}");
    let mut ids: Vec<String> = records.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    let mut expected = vec![event_id(&uid, None, Transition::Deployed), event_id(&uid, None, Transition::RolledBack)];
    expected.sort();
    assert_eq!(ids, expected, "each event exactly once, with its stable id");
    let rows = registry.notification_deliveries(&rig.namespace, "fraud").await.unwrap();
    let sent: Vec<_> = rows.iter().filter(|r| r.sink == "namespace/cloudevents").collect();
    assert!(sent.iter().all(|r| r.delivered_at.is_some()), "{sent:?}");
    assert!(sent.iter().any(|r| r.attempts > 2), "it failed while the receiver was down, then succeeded: {sent:?}");
    // The silent sink is still being retried, not abandoned, and it never held the CloudEvents sink up.
    assert!(rows.iter().filter(|r| r.sink == "controller/slack").all(|r| r.delivered_at.is_none()
        && r.abandoned_at.is_none()
        && r.last_error.as_deref().is_some_and(|e| e.contains("in time"))));
    let metrics = rig.metrics.encode();
    assert!(metrics.contains("rampart_notification_failures_total{sink=\"namespace/cloudevents\",reason=\"connect\"}"));
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_that_ended_while_nothing_was_notifying_is_announced_by_the_next_leader() {
    // The hand-over from the reconcile is lost (here: the first controller had no sinks at all, as after a crash
    // between the status write and the queue); the next leader looks at every rollout and queues what they owe.
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("notify-sweep", canary, None).await;
    rig.database_url = Some(rampart_testenv::shared_postgres().unwrap().new_database().unwrap());
    rig.start_controller();
    let steps = json!([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("fraud", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    rig.wait_for_phase("fraud", &[Phase::Paused], Duration::from_secs(30)).await;
    rig.annotate("fraud", rampart_api::ANNOTATION_ABORT, Some("true")).await;
    let done = rig.wait_for_phase("fraud", &[Phase::RolledBack], Duration::from_secs(10)).await;
    rig.stop_controller().await;

    let dir = tempfile::tempdir().unwrap();
    let port = rampart_testenv::free_port().unwrap();
    let receiver = Receiver::start(port, &dir.path().join("events.jsonl"));
    rig.notifications =
        NotifyConfig { cloudevents_url: Some(format!("http://127.0.0.1:{port}/")), ..NotifyConfig::default() };
    rig.start_controller();
    let _ = wait_for_count("events from the sweep", 1, Duration::from_secs(30), || receiver.records().len()).await;
    let records = receiver.records();
    // Only the rollback: a "deployed" event is derived while the canary has traffic, and that moment has passed.
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["id"], json!(event_id(&done.uid().unwrap(), None, Transition::RolledBack)));
    assert_eq!(records[0]["type"], json!("dev.cdevents.service.rolledback.0.2.0"));
    assert!(records[0]["data"]["customData"]["rampart"]["reason"].as_str().unwrap().contains("abort"));
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_while_postgres_is_down_is_not_delayed_and_is_announced_once_postgres_is_back() {
    let mut postgres = rampart_testenv::Postgres::start().unwrap();
    let database_url = postgres.new_database().unwrap();
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(QUICK, 0.3);
    let mut rig = Rig::new("notify-pgdown", canary, None).await;
    rig.database_url = Some(database_url);
    let dir = tempfile::tempdir().unwrap();
    let port = rampart_testenv::free_port().unwrap();
    let receiver = Receiver::start(port, &dir.path().join("events.jsonl"));
    rig.notifications =
        NotifyConfig { cloudevents_url: Some(format!("http://127.0.0.1:{port}/")), ..NotifyConfig::default() };
    rig.start_controller();
    let steps = json!([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("fraud", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    rig.wait_for_phase("fraud", &[Phase::Paused], Duration::from_secs(30)).await;
    let _ = wait_for_count("the deployed event", 1, Duration::from_secs(20), || receiver.records().len()).await;

    postgres.stop();
    let aborted = Instant::now();
    rig.annotate("fraud", rampart_api::ANNOTATION_ABORT, Some("true")).await;
    while rig.route_canary_weight().await != Some(0) {
        assert!(aborted.elapsed() < Duration::from_secs(10), "the canary kept its traffic");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = aborted.elapsed();
    // RolledBack itself follows once the registry outbox's bounded flush gives up (1.5 s), as without notifications.
    let done = rig.wait_for_phase("fraud", &[Phase::RolledBack], Duration::from_secs(10)).await;
    println!(
        "abort to canary weight 0 with Postgres down and notifications on: {:.2}s (RolledBack after {:.2}s)",
        took.as_secs_f64(),
        aborted.elapsed().as_secs_f64()
    );
    assert!(took < Duration::from_secs(2), "the rollback waited: {took:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.records().len(), 1, "nothing can be queued while Postgres is down");

    // The controller restarts while Postgres is still down (what it held in memory is gone), then Postgres returns.
    rig.stop_controller().await;
    rig.start_controller();
    tokio::time::sleep(Duration::from_secs(3)).await;
    postgres.restart().unwrap();
    let _ = wait_for_count("the rolled-back event", 2, Duration::from_secs(40), || receiver.records().len()).await;
    let records = receiver.records();
    let uid = done.uid().unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        vec![event_id(&uid, None, Transition::Deployed), event_id(&uid, None, Transition::RolledBack)],
        "each event once, in order: {records:?}"
    );
    rig.stop_controller().await;
}
