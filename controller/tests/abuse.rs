//! Abuse of a rollout's `prometheusAddress` on the real API server and Prometheus (finding 6 of the tenancy review):
//! an address off the controller's allow-list is refused before anything is queried or moved, and an allowed
//! endpoint that hangs or answers with hostile text holds a look only until the deadline and never writes its text
//! verbatim into status. The hanging and hostile endpoints are small TCP servers in this test: they stand for an
//! attacker's server, a fault a real Prometheus does not produce.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use rampart_api::Phase;
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::json;
use support::{Rig, accuracy_metric, rollout};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server on 127.0.0.1 that counts connections and answers each with `answer` (None: never answers).
async fn endpoint(answer: Option<String>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                match answer {
                    Some(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(body.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(120)).await,
                }
            });
        }
    });
    (url, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_address_off_the_allow_list_is_refused_before_anything_is_queried_or_moved() {
    let mut rig =
        Rig::new("promallow", ModelServerConfig::new("v2").latency(Duration::from_millis(2), 0.3), None).await;
    // An address inside the cluster's network that the controller can reach and the author should not.
    let (internal, connections) =
        endpoint(Some(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into())).await;
    rig.start_controller();
    let steps = json!([{"setWeight": 20}, {"analysis": {"duration": "20s", "interval": "1s"}}]);
    let extra = json!({"prometheusAddress": format!("{internal}/api/v1/admin")});
    rig.create_rollout(rollout("nosy", steps, json!([accuracy_metric(0.05)]), extra)).await;
    let failed = rig.wait_for_phase("nosy", &[Phase::Failed], Duration::from_secs(30)).await;
    let status = failed.status.clone().unwrap();
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains("allow-list") && message.contains("no traffic was moved"), "{message}");
    let condition = status.conditions.unwrap().into_iter().find(|c| c.type_ == "MetricsSourceAllowed").unwrap();
    assert_eq!((condition.status.as_str(), condition.reason.as_deref()), ("False", Some("PrometheusNotAllowed")));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the address was never contacted");
    assert_eq!(rig.route_canary_weight().await, None, "no canary backend was added to the route");
    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    assert!(deployments.get_opt("model-canary").await.unwrap().is_none(), "no canary was created");
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_hostile_allowed_endpoint_holds_a_look_only_until_the_deadline_and_its_text_is_not_echoed() {
    let mut rig = Rig::new("promslow", ModelServerConfig::new("v2").latency(Duration::from_millis(2), 0.3), None).await;
    let (hanging, _) = endpoint(None).await;
    let hostile_text = format!("line one\nphase: Succeeded\r\n\u{1b}[2J{}END-OF-HOSTILE-TEXT", "x".repeat(20_000));
    let hostile_body = json!({"status": "error", "errorType": "bad_data", "error": hostile_text}).to_string();
    let (hostile, _) = endpoint(Some(hostile_body)).await;
    let (off_list, off_list_connections) = endpoint(None).await;
    rig.prometheus_allow = vec![hanging.clone(), hostile.clone()];
    // Each query may take 60 s; the look as a whole may take 1.5 s.
    rig.prometheus_timeout = Duration::from_secs(60);
    rig.prometheus_look_deadline = Duration::from_millis(1500);
    rig.start_controller();
    let steps = json!([{"setWeight": 10}, {"analysis": {"duration": "120s", "interval": "1s"}}]);
    let extra = json!({"prometheusAddress": hanging});
    rig.create_rollout(rollout("slow", steps, json!([accuracy_metric(0.05)]), extra)).await;
    let started = Instant::now();
    let cut = rig
        .wait_for("slow", Duration::from_secs(40), "a look cut at the deadline", |r| {
            last_error(r).contains("did not answer this look's queries within 1.5 s")
        })
        .await;
    let status = cut.status.unwrap();
    assert!(status.analysis.as_ref().unwrap().provider_errors.unwrap_or(0) >= 1);
    assert!(started.elapsed() < Duration::from_secs(40), "cut long before the 60 s query timeout");
    assert_ne!(status.phase, Some(Phase::Succeeded), "a look without metrics never promotes");

    // The endpoint answers with pages of text meant to fake lines in status: bounded, no control characters.
    let patch = json!({"spec": {"analysis": {"prometheusAddress": hostile}}});
    rig.rollouts().patch("slow", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let rejected = rig
        .wait_for("slow", Duration::from_secs(30), "the hostile answer", |r| last_error(r).contains("rejected query"))
        .await;
    let error = last_error(&rejected);
    assert!(!error.chars().any(char::is_control), "{error:?}");
    assert!(!error.contains("END-OF-HOSTILE-TEXT") && error.len() < 1024, "bounded: {} bytes", error.len());

    // Edited to an address off the list after the start gate: refused at the next look, never contacted.
    let patch = json!({"spec": {"analysis": {"prometheusAddress": off_list}}});
    rig.rollouts().patch("slow", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    rig.wait_for("slow", Duration::from_secs(30), "the edit refused", |r| last_error(r).contains("allow-list")).await;
    assert_eq!(off_list_connections.load(Ordering::SeqCst), 0);
    rig.annotate("slow", "rampart.dev/abort", Some("true")).await;
    rig.wait_for_phase("slow", &[Phase::RolledBack], Duration::from_secs(30)).await;
    rig.stop_controller().await;
}

fn last_error(rollout: &rampart_api::ModelRollout) -> String {
    rollout.status.as_ref().and_then(|s| s.analysis.as_ref()).and_then(|a| a.last_error.clone()).unwrap_or_default()
}
