//! Abuse of a rollout's `prometheusAddress` on the real API server and Prometheus (finding 6 of the tenancy review):
//! an address off the controller's allow-list is refused before anything is queried or moved, and an allowed
//! endpoint that hangs or answers with hostile text holds a look only until the deadline and never writes its text
//! verbatim into status. And the leader lease (finding 9): a holder whose clock is skewed keeps the lease while it
//! renews, and loses it only a lease duration after its last renewal as this replica observed it. And the serving
//! target (finding 3): a rollout may set only the variable its Deployment opted in to, never `JAVA_TOOL_OPTIONS`. And
//! fair slots (finding 6): one team's slow rollouts take only their namespace's share of the reconcile slots. And a
//! counter reset (finding 9): a canary server restarted mid-analysis does not roll a good candidate back. The
//! hanging and hostile endpoints are small TCP servers in this test: they stand for an
//! attacker's server, a fault a real Prometheus does not produce.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_setting_a_variable_the_deployment_did_not_opt_in_to_changes_nothing() {
    let mut rig = Rig::new("optin", ModelServerConfig::new("v2").latency(Duration::from_millis(2), 0.3), None).await;
    let deployments: Api<Deployment> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let before = deployments.get("model").await.unwrap();
    rig.start_controller();
    // The attack as written: point the container's JVM options at the "model URI", i.e. at an agent jar.
    let mut attack = rollout("agent", json!([{"setWeight": 20}]), json!([accuracy_metric(0.05)]), json!({}));
    attack["spec"]["serving"]["deployment"]["modelEnv"] = json!("JAVA_TOOL_OPTIONS");
    attack["spec"]["candidate"]["artifact"]["uri"] = json!("/models/fraud/v2/agent.jar");
    rig.create_rollout(attack).await;
    let failed = rig.wait_for_phase("agent", &[Phase::Failed], Duration::from_secs(30)).await;
    let message = failed.status.clone().unwrap().message.unwrap_or_default();
    assert!(message.contains("lets rollouts set only MODEL_URI") && message.contains("JAVA_TOOL_OPTIONS"), "{message}");
    assert!(message.contains("no traffic was moved"), "{message}");
    assert_eq!(rig.route_canary_weight().await, None, "no canary backend was added to the route");
    assert!(deployments.get_opt("model-canary").await.unwrap().is_none(), "no canary was created");
    let after = deployments.get("model").await.unwrap();
    assert_eq!(after.spec, before.spec, "the baseline Deployment was not changed");
    rig.stop_controller().await;
}

fn last_error(rollout: &rampart_api::ModelRollout) -> String {
    rollout.status.as_ref().and_then(|s| s.analysis.as_ref()).and_then(|a| a.last_error.clone()).unwrap_or_default()
}

/// A renewal by a replica whose clock is `skew` off (negative: behind).
async fn renew_skewed(leases: &Api<Lease>, skew_seconds: i64) {
    let at = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(skew_seconds)).unwrap();
    let spec = LeaseSpec {
        holder_identity: Some("skewed-replica".into()),
        lease_duration_seconds: Some(4),
        renew_time: Some(MicroTime(at)),
        acquire_time: Some(MicroTime(at)),
        lease_transitions: Some(0),
        ..Default::default()
    };
    match leases.get_opt("rampart-controller").await.unwrap() {
        Some(mut lease) => {
            lease.spec = Some(spec);
            leases.replace("rampart-controller", &Default::default(), &lease).await.unwrap();
        }
        None => {
            let lease = Lease {
                metadata: kube::api::ObjectMeta { name: Some("rampart-controller".into()), ..Default::default() },
                spec: Some(spec),
            };
            leases.create(&Default::default(), &lease).await.unwrap();
        }
    }
}

async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    leases.get("rampart-controller").await.unwrap().spec.and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_with_a_skewed_clock_keeps_the_lease_while_it_renews_and_loses_it_a_lease_after_it_stops() {
    let mut rig = Rig::new("skew", ModelServerConfig::new("v2").latency(Duration::from_millis(2), 0.3), None).await;
    let leases: Api<Lease> = Api::namespaced(rig.client.clone(), &rig.namespace);
    // Another replica, its clock an hour behind, holds the lease and renews it every second.
    renew_skewed(&leases, -3600).await;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let renewing = {
        let leases = leases.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => renew_skewed(&leases, -3600).await,
                    _ = stopped.changed() => return,
                }
            }
        })
    };
    rig.start_controller();
    let steps = json!([{"setWeight": 20}, {"pause": {}}]);
    rig.create_rollout(rollout("skew", steps, json!([accuracy_metric(0.05)]), json!({}))).await;
    // Its renewTime is an hour old by this replica's clock; comparing clocks would take the lease at once.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(lease_holder(&leases).await.as_deref(), Some("skewed-replica"), "a renewing holder keeps the lease");
    assert!(rig.rollouts().get("skew").await.unwrap().status.is_none(), "only the holder acts");

    // The holder dies right after a renewal written with its clock an hour ahead (comparing clocks would wait an hour).
    stop.send(true).unwrap();
    renewing.await.unwrap();
    renew_skewed(&leases, 3600).await;
    let last_renewal = Instant::now();
    let deadline = last_renewal + Duration::from_secs(20);
    while lease_holder(&leases).await.as_deref() != Some("in-process") {
        assert!(Instant::now() < deadline, "the lease was not taken over within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = last_renewal.elapsed();
    println!("takeover {:.1}s after the last renewal (lease duration 4s)", takeover.as_secs_f64());
    assert!(takeover >= Duration::from_secs(4), "not before a whole lease had passed: {takeover:?}");
    rig.wait_for_phase("skew", &[Phase::Paused], Duration::from_secs(30)).await;
    rig.stop_controller().await;
}

/// A baseline Deployment (opted in to `MODEL_URI`) and an HTTPRoute to it, both named `name`, in `namespace`.
async fn serving_target(client: &kube::Client, namespace: &str, name: &str) {
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}, "annotations": {"rampart.dev/model-uri-env": "MODEL_URI"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "server", "image": "registry.example.com/model-server:1",
                "env": [{"name": "MODEL_URI", "value": "s3://models/fraud/v1"}]}]},
        }},
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), namespace).create(&Default::default(), &deployment).await.unwrap();
    let route: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [{"name": name, "port": 8080}]}]},
    }))
    .unwrap();
    support::routes(client, namespace).create(&Default::default(), &route).await.unwrap();
}

/// Finding 6, fair slots: one team's rollouts that are slow to reconcile (their allowed metrics endpoint hangs until
/// the look deadline) take at most their namespace's share of the controller's reconcile slots; another team's
/// rollout runs through its steps meanwhile. The controller here watches every namespace, with two slots and one per
/// namespace. It also meets the rollouts earlier tests of this binary left behind; their controllers held other
/// status keys, so it finds their statuses forged and returns their traffic, which takes a few reconciles of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teams_slow_rollouts_take_only_their_namespaces_share_of_reconcile_slots() {
    let mut rig = Rig::new("fair-a", ModelServerConfig::new("v2").latency(Duration::from_millis(2), 0.3), None).await;
    let (hanging, hung) = endpoint(None).await;
    rig.prometheus_allow = vec![hanging.clone()];
    rig.prometheus_look_deadline = Duration::from_secs(4);
    // Team B's namespace: its own baseline Deployment and HTTPRoute, and a stand-in kubelet there.
    let env = rampart_testenv::shared().unwrap();
    let team_b = env.namespace(&rig.client, "fair-b").await.unwrap();
    serving_target(&rig.client, &team_b, "model").await;
    let kubelet = tokio::spawn(support::kubelet::play(rig.client.clone(), team_b.clone()));

    let controller_with = |per_namespace: u16| {
        let mut config = rig.controller_config("fair");
        config.namespace = None;
        config.max_concurrent_reconciles = 2;
        config.max_reconciles_per_namespace = per_namespace;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        (stop, tokio::spawn(rampart_controller::run(rig.client.clone(), config, Default::default(), stopped)))
    };
    // First without a bound per namespace: the attack as written.
    let (stop, controller) = controller_with(0);

    // Team A: six rollouts (each on its own model Deployment and route) whose every look waits the whole deadline on
    // the hanging endpoint.
    let steps = json!([{"setWeight": 10}, {"analysis": {"duration": "300s", "interval": "1s"}}]);
    for i in 0..6 {
        let target = format!("model-{i}");
        serving_target(&rig.client, &rig.namespace, &target).await;
        let extra = json!({"prometheusAddress": hanging});
        let mut object = rollout(&format!("slow-{i}"), steps.clone(), json!([accuracy_metric(0.05)]), extra);
        object["spec"]["serving"]["deployment"]["name"] = json!(target);
        object["spec"]["traffic"]["gatewayAPI"] = json!({"httpRoute": target, "baselineBackend": target,
            "canaryBackend": format!("{target}-canary"), "port": 8080});
        rig.create_rollout(object).await;
    }
    // All six in their analysis step, past the settle time, each look hanging until the deadline.
    for i in 0..6 {
        rig.wait_for(&format!("slow-{i}"), Duration::from_secs(90), "in its analysis step", |r| {
            r.status.as_ref().and_then(|s| s.current_step) == Some(1)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(hung.load(Ordering::SeqCst) >= 2, "team A's looks reach the hanging endpoint");
    // Team B's rollouts, while team A's looks hang: one now, one once the bound is on.
    serving_target(&rig.client, &team_b, "second").await;
    let team_b_rollouts: Api<rampart_api::ModelRollout> = Api::namespaced(rig.client.clone(), &team_b);
    let run_b = |name: &'static str, target: &'static str, limit: Duration| {
        let api = team_b_rollouts.clone();
        let namespace = team_b.clone();
        async move {
            let steps = json!([{"setWeight": 50}, {"setWeight": 100}]);
            let mut object = rollout(name, steps, json!([accuracy_metric(0.05)]), json!({}));
            object["metadata"]["namespace"] = json!(namespace);
            object["spec"]["serving"]["deployment"]["name"] = json!(target);
            object["spec"]["traffic"]["gatewayAPI"] = json!({"httpRoute": target, "baselineBackend": target,
                "canaryBackend": format!("{target}-canary"), "port": 8080});
            let started = Instant::now();
            api.create(&Default::default(), &serde_json::from_value(object).unwrap()).await.unwrap();
            loop {
                let phase = api.get(name).await.unwrap().status.and_then(|s| s.phase);
                if phase.is_some_and(|p| p.is_terminal()) || started.elapsed() > limit {
                    return (phase, started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // Given 30 s at most: starved, it may not even start (its phase then stays unset).
    let (phase, unfair) = run_b("first", "model", Duration::from_secs(30)).await;
    println!("without a bound per namespace: team B's rollout {phase:?} after {:.1} s", unfair.as_secs_f64());
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;

    // Then with one slot per namespace (of two).
    let (stop, controller) = controller_with(1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (phase, fair) = run_b("second", "second", Duration::from_secs(60)).await;
    println!("with one slot per namespace: team B's rollout {phase:?} in {:.1} s", fair.as_secs_f64());
    assert_eq!(phase, Some(Phase::Succeeded), "team B's rollout after {fair:?}");
    assert!(fair * 3 < unfair, "with the bound team B took {fair:?}, without it {unfair:?}");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    kubelet.abort();
    for i in 0..6 {
        rig.annotate(&format!("slow-{i}"), "rampart.dev/abort", Some("true")).await;
    }
}

/// Finding 9, counter resets: the candidate's model server restarts mid-analysis, so its counters start again from
/// zero (a real reset, as Prometheus records it). The counts never go down and the good candidate is promoted, not
/// rolled back as inconclusive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_server_restarted_mid_analysis_resets_its_counters_and_the_good_candidate_is_still_promoted() {
    let canary = ModelServerConfig::new("v2").accuracy(0.9).latency(Duration::from_millis(2), 0.3);
    let mut rig = Rig::new("reset", canary.clone(), None).await;
    rig.start_controller();
    let steps = json!([{"setWeight": 50}, {"analysis": {"duration": "120s", "interval": "1s"}}, {"setWeight": 100}]);
    // The split check is off: the requests the canary served after Prometheus last scraped it and before it stopped
    // are lost with the process (as with any restart), which a short window's split check sees as a real imbalance.
    let extra = json!({"minSamples": 400, "srm": {"enabled": false}});
    rig.create_rollout(rollout("restarted", steps, json!([accuracy_metric(0.05)]), extra)).await;
    let looking = rig
        .wait_for("restarted", Duration::from_secs(60), "an analysis look", |r| {
            r.status.as_ref().and_then(|s| s.analysis.as_ref()).and_then(|a| a.looks).unwrap_or(0) >= 1
        })
        .await;
    assert_eq!(looking.status.and_then(|s| s.current_step), Some(1), "still analysing when the server restarts");
    // The restart: the same address, every counter from zero.
    let port = rig.canary.addr().port();
    let stand_in =
        rampart_testenv::model_server::ModelServer::spawn(canary.clone().namespace(&rig.namespace)).await.unwrap();
    let old = std::mem::replace(&mut rig.canary, stand_in);
    old.shutdown().await;
    let restarted =
        rampart_testenv::model_server::ModelServer::spawn(canary.port(port).namespace(&rig.namespace)).await.unwrap();
    std::mem::replace(&mut rig.canary, restarted).shutdown().await;

    let done = rig
        .wait_for_phase("restarted", &[Phase::Succeeded, Phase::RolledBack, Phase::Paused], Duration::from_secs(120))
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
    // Prometheus saw the reset.
    let query =
        format!("resets(model_predictions_labelled_total{{namespace=\"{}\",version=\"v2\"}}[10m])", rig.namespace);
    let answer: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", rig.prometheus_url))
        .query(&[("query", query.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resets: f64 =
        answer.pointer("/data/result/0/value/1").and_then(|v| v.as_str()).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert!(resets >= 1.0, "Prometheus recorded the counter reset: {answer}");
    rig.stop_controller().await;
}
