//! End-to-end over real HTTP: KServe-style CloudEvents in (binary and structured mode), exact counters out of
//! `/metrics`, as the controller will read them.

use std::time::Duration;

use rampart_shadow::client::{Connection, Reply};
use rampart_shadow::{ShadowConfig, ShadowServer};
use serde_json::json;

const RESPONSE: &str = "org.kubeflow.serving.inference.response";
const REQUEST: &str = "org.kubeflow.serving.inference.request";

/// Posts a binary-mode event the way KServe's logger does.
async fn binary(conn: &mut Connection, id: &str, kind: &str, endpoint: &str, body: &str) -> Reply {
    let headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-type", kind),
        ("ce-source", "http://fraud-predictor.ml.svc/"),
        ("ce-inferenceservicename", "fraud"),
        ("ce-namespace", "ml"),
        ("ce-endpoint", endpoint),
        ("ce-component", "predictor"),
        ("content-type", "application/json"),
    ];
    conn.post("/", &headers, body.as_bytes()).await.expect("POST binary-mode event")
}

/// Posts a structured-mode event (attributes and data in one JSON object).
async fn structured(conn: &mut Connection, path: &str, id: &str, endpoint: &str, data: serde_json::Value) -> Reply {
    let event = json!({
        "specversion": "1.0", "id": id, "type": RESPONSE, "source": "/candidate",
        "inferenceservicename": "fraud", "namespace": "ml", "endpoint": endpoint,
        "datacontenttype": "application/json", "data": data,
    });
    conn.post(path, &[("content-type", "application/cloudevents+json")], event.to_string().as_bytes())
        .await
        .expect("POST structured-mode event")
}

/// The value of one exact series line in the exposition, or a failure showing the whole text.
fn series(text: &str, name_and_labels: &str) -> f64 {
    let prefix = format!("{name_and_labels} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no series {name_and_labels} in\n{text}"))
}

async fn scrape(conn: &mut Connection) -> String {
    let reply = conn.get("/metrics").await.expect("GET /metrics");
    assert_eq!(reply.status, 200);
    reply.text()
}

#[tokio::test]
async fn binary_and_structured_responses_pair_by_id_and_are_counted_exactly() {
    let server = ShadowServer::spawn(ShadowConfig::default()).await.unwrap();
    assert!(server.url().starts_with("http://127.0.0.1:"));
    let mut baseline = Connection::open(server.addr()).await.unwrap();
    let mut candidate = Connection::open(server.addr()).await.unwrap();

    for i in 0..20 {
        let id = format!("req-{i}");
        assert_eq!(binary(&mut baseline, &id, REQUEST, "default", r#"{"instances": [[1, 2]]}"#).await.status, 202);
        assert_eq!(binary(&mut candidate, &id, REQUEST, "canary", r#"{"instances": [[1, 2]]}"#).await.status, 202);
        let reply = binary(&mut baseline, &id, RESPONSE, "default", r#"{"predictions": [[0.2, 0.8]]}"#).await;
        assert_eq!(reply.status, 202, "{}", reply.text());
        // 3 of 20 candidate answers pick the other class; the rest differ in scores only.
        let scores = if i % 7 == 3 { json!([[0.6, 0.4]]) } else { json!([[0.3, 0.7]]) };
        let path = if i % 2 == 0 { "/" } else { "/events" };
        let reply = structured(&mut candidate, path, &id, "canary", json!({"predictions": scores})).await;
        assert_eq!(reply.status, 202, "{}", reply.text());
    }
    // A baseline answer whose mirrored copy has not come back yet.
    binary(&mut baseline, "req-late", RESPONSE, "default", r#"{"predictions": [1]}"#).await;
    // The same baseline answer logged twice.
    let dup = binary(&mut baseline, "req-late", RESPONSE, "default", r#"{"predictions": [1]}"#).await;
    assert_eq!(dup.status, 400);
    assert!(dup.text().contains("duplicate"), "{}", dup.text());

    let text = scrape(&mut baseline).await;
    let model = r#"namespace="ml",model="fraud""#;
    assert_eq!(series(&text, &format!("rampart_shadow_pairs_total{{{model}}}")), 20.0);
    assert_eq!(series(&text, &format!("rampart_shadow_agreements_total{{{model}}}")), 17.0);
    // Every well-formed event counts, the refused duplicate included (it is also counted as invalid).
    for (side, responses) in [("baseline", 22.0), ("candidate", 20.0)] {
        let events = format!("rampart_shadow_events_total{{{model},side=\"{side}\"");
        assert_eq!(series(&text, &format!("{events},type=\"request\"}}")), 20.0);
        assert_eq!(series(&text, &format!("{events},type=\"response\"}}")), responses);
        assert_eq!(series(&text, &format!("rampart_shadow_unpaired_total{{{model},side=\"{side}\"}}")), 0.0);
    }
    assert_eq!(series(&text, "rampart_shadow_pending"), 1.0);
    assert_eq!(series(&text, r#"rampart_shadow_invalid_events_total{reason="duplicate"}"#), 1.0);
    assert_eq!(series(&text, r#"rampart_shadow_invalid_events_total{reason="malformed_json"}"#), 0.0);

    server.shutdown().await;
}

#[tokio::test]
async fn invalid_events_get_400_or_413_with_a_reason_and_are_counted() {
    let config = ShadowConfig { max_event_bytes: 4096, max_models: 1, ..ShadowConfig::default() };
    let server = ShadowServer::spawn(config).await.unwrap();
    let mut conn = Connection::open(server.addr()).await.unwrap();

    let plain = conn.post("/", &[("content-type", "application/json")], b"{}").await.unwrap();
    assert_eq!(plain.status, 400);
    let reason: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(reason["reason"], "not_cloudevent");
    assert!(reason["error"].as_str().unwrap().contains("ce-specversion"));

    let broken = conn.post("/", &[("content-type", "application/cloudevents+json")], b"{\"id\":").await.unwrap();
    assert_eq!(broken.status, 400);
    let big = format!(r#"{{"predictions": ["{}"]}}"#, "x".repeat(5000));
    let too_large = binary(&mut conn, "big", RESPONSE, "default", &big).await;
    assert_eq!(too_large.status, 413);
    let unknown = binary(&mut conn, "t", "com.example.other", "default", "{}").await;
    assert_eq!(unknown.status, 400);
    // With the default path the whole body is the last resort, so only an empty (null) body has no prediction.
    let empty = binary(&mut conn, "e", RESPONSE, "default", "null").await;
    assert_eq!(empty.status, 400);
    assert!(empty.text().contains("no_prediction"), "{}", empty.text());
    let other_model = conn
        .post(
            "/",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "o"),
                ("ce-type", RESPONSE),
                ("ce-source", "s"),
                ("ce-model", "another"),
            ],
            br#"{"predictions": [1]}"#,
        )
        .await
        .unwrap();
    assert_eq!(other_model.status, 400);
    assert!(other_model.text().contains("too_many_models"), "{}", other_model.text());

    // The connection is still usable after refusals (keep-alive), including after a 413.
    let text = scrape(&mut conn).await;
    for (reason, count) in [
        ("not_cloudevent", 1.0),
        ("malformed_json", 1.0),
        ("too_large", 1.0),
        ("unknown_type", 1.0),
        ("no_prediction", 1.0),
        ("too_many_models", 1.0),
        ("duplicate", 0.0),
    ] {
        assert_eq!(series(&text, &format!("rampart_shadow_invalid_events_total{{reason=\"{reason}\"}}")), count);
    }
    assert!(!text.contains(r#"model="another""#), "a refused model must not create series");
    let health = conn.get("/healthz").await.unwrap();
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    server.shutdown().await;
}

#[tokio::test]
async fn responses_whose_partner_never_comes_are_counted_unpaired_for_their_side() {
    let config = ShadowConfig { pair_timeout: Duration::from_millis(200), ..ShadowConfig::default() };
    let server = ShadowServer::spawn(config).await.unwrap();
    let mut conn = Connection::open(server.addr()).await.unwrap();
    // 10 requests; the candidate dropped 2 mirrored copies; one candidate log has no baseline partner.
    for i in 0..10 {
        let id = format!("r{i}");
        binary(&mut conn, &id, RESPONSE, "default", r#"{"predictions": [3]}"#).await;
        if i >= 2 {
            binary(&mut conn, &id, RESPONSE, "shadow", r#"{"predictions": [3]}"#).await;
        }
    }
    binary(&mut conn, "orphan", RESPONSE, "candidate", r#"{"predictions": [3]}"#).await;
    assert_eq!(series(&scrape(&mut conn).await, "rampart_shadow_pending"), 3.0);

    // The background sweep expires them without further events.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let text = scrape(&mut conn).await;
    let model = r#"namespace="ml",model="fraud""#;
    assert_eq!(series(&text, &format!("rampart_shadow_pairs_total{{{model}}}")), 8.0);
    assert_eq!(series(&text, &format!("rampart_shadow_unpaired_total{{{model},side=\"baseline\"}}")), 2.0);
    assert_eq!(series(&text, &format!("rampart_shadow_unpaired_total{{{model},side=\"candidate\"}}")), 1.0);
    assert_eq!(series(&text, "rampart_shadow_pending"), 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn oldest_unpaired_response_is_evicted_at_max_pending() {
    let config = ShadowConfig { max_pending: 5, ..ShadowConfig::default() };
    let server = ShadowServer::spawn(config).await.unwrap();
    let mut conn = Connection::open(server.addr()).await.unwrap();
    for i in 0..8 {
        binary(&mut conn, &format!("b{i}"), RESPONSE, "default", r#"{"predictions": [1]}"#).await;
    }
    let text = scrape(&mut conn).await;
    assert_eq!(series(&text, "rampart_shadow_pending"), 5.0);
    assert_eq!(series(&text, "rampart_shadow_evicted_total"), 3.0);
    assert_eq!(series(&text, r#"rampart_shadow_unpaired_total{namespace="ml",model="fraud",side="baseline"}"#), 3.0);
    server.shutdown().await;
}

/// The Python interpreter with the CloudEvents SDK (scripts/ci-deps installs it into target/ce-venv).
fn cloudevents_python() -> std::path::PathBuf {
    let python = std::env::var_os("RAMPART_CLOUDEVENTS_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ce-venv/bin/python"));
    assert!(
        python.exists(),
        "no Python with the CloudEvents SDK at {}: run scripts/ci-deps (it installs cloudevents==2.2.0 into \
         target/ce-venv) or set RAMPART_CLOUDEVENTS_PYTHON",
        python.display()
    );
    python
}

#[tokio::test]
async fn events_encoded_by_the_cloudevents_sdk_pair_in_both_content_modes() {
    let server = ShadowServer::spawn(ShadowConfig::default()).await.unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/cloudevents_sender.py");
    let output = tokio::process::Command::new(cloudevents_python())
        .arg(script)
        .arg(server.url())
        .arg("50")
        .output()
        .await
        .expect("run the CloudEvents SDK sender");
    assert!(output.status.success(), "sender failed: {}", String::from_utf8_lossy(&output.stderr));
    let sent: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the sender's summary");
    assert_eq!(sent, json!({"pairs": 50, "disagree": 5, "requests": 50}));

    let mut conn = Connection::open(server.addr()).await.unwrap();
    let text = scrape(&mut conn).await;
    let model = r#"namespace="ml",model="fraud""#;
    assert_eq!(series(&text, &format!("rampart_shadow_pairs_total{{{model}}}")), 50.0, "{text}");
    assert_eq!(series(&text, &format!("rampart_shadow_agreements_total{{{model}}}")), 45.0);
    assert_eq!(series(&text, "rampart_shadow_pending"), 0.0, "every SDK-encoded id (with a space) paired");
    let baseline_requests = format!("rampart_shadow_events_total{{{model},side=\"baseline\",type=\"request\"}}");
    assert_eq!(series(&text, &baseline_requests), 50.0);
    server.shutdown().await;
}
