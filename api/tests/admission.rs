//! The ModelRollout API on a real kube-apiserver: the examples are accepted, invalid rollouts are rejected at admission
//! with a message a person can act on, `spec.candidate` is immutable, and a watch sees the lifecycle.
#![allow(clippy::unwrap_used)]

use futures::{StreamExt, TryStreamExt};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Resource};
use rampart_api::{ModelRollout, ModelRolloutStatus, Phase};
use serde_json::{Value, json};

/// A valid rollout in JSON, the starting point every invalid case edits.
fn valid_rollout(name: &str) -> Value {
    json!({
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": name},
        "spec": {
            "model": "fraud-detector",
            "candidate": {"version": "v8", "artifact": {
                "uri": "s3://models/fraud/v8/",
                "digest": format!("sha256:{}", "ab".repeat(32)),
                "signature": {"bundle": "{}"}
            }},
            "serving": {"deployment": {"name": "fraud", "modelEnv": "MODEL_URI"}},
            "traffic": {"gatewayAPI": {"httpRoute": "fraud", "baselineBackend": "fraud", "canaryBackend": "fraud-canary"}},
            "steps": [{"setWeight": 10}, {"analysis": {"duration": "5m", "interval": "30s"}}, {"setWeight": 100}],
            "analysis": {"alpha": 0.05, "metrics": [
                {"name": "accuracy", "kind": "ratio", "direction": "higherIsBetter", "tolerance": {"absolute": 0.01},
                 "queries": {"success": "sum(ok{version=\"{{version}}\"})", "total": "sum(all{version=\"{{version}}\"})"}},
                {"name": "latency", "kind": "latency", "direction": "lowerIsBetter", "tolerance": {"relative": 0.1},
                 "queries": {"buckets": "sum by (le) (lat_bucket{version=\"{{version}}\"})"}}
            ]}
        }
    })
}

fn dynamic_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<ModelRollout>(&());
    Api::namespaced_with(client, namespace, &resource)
}

async fn create(api: &Api<DynamicObject>, object: Value) -> Result<DynamicObject, kube::Error> {
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await
}

/// Sets the field at `pointer`, creating it when its parent object exists.
fn set(object: &mut Value, pointer: &str, value: Value) {
    if let Some(field) = object.pointer_mut(pointer) {
        *field = value;
        return;
    }
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = object.pointer_mut(parent).unwrap_or_else(|| panic!("no object at {parent}"));
    parent.as_object_mut().unwrap().insert(key.to_string(), value);
}

fn remove(object: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    object.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key).unwrap();
}

#[tokio::test]
async fn the_examples_are_accepted_by_the_api_server() {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, "examples").await.unwrap();
    let api: Api<ModelRollout> = Api::namespaced(client, &namespace);
    let examples = rampart_testenv::repo_root().join("examples");
    for file in ["deployment-gateway.yaml", "kserve.yaml", "cohort.yaml", "shadow.yaml", "capacity.yaml", "bake.yaml"] {
        let text = std::fs::read_to_string(examples.join(file)).unwrap();
        let rollout: ModelRollout = serde_saphyr::from_str(&text).unwrap();
        let created = api
            .create(&PostParams::default(), &rollout)
            .await
            .unwrap_or_else(|err| panic!("examples/{file} was rejected: {err}"));
        assert_eq!(created.spec, rollout.spec, "examples/{file} changed on the way through the API server");
    }
}

#[tokio::test]
async fn invalid_rollouts_are_rejected_with_actionable_messages() {
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "short digest",
            |o| set(o, "/spec/candidate/artifact/digest", json!("sha256:abc123")),
            "digest must be 'sha256:' followed by 64 lowercase hex digits",
        ),
        (
            "digest with another algorithm",
            |o| set(o, "/spec/candidate/artifact/digest", json!(format!("md5:{}", "a".repeat(64)))),
            "digest must be 'sha256:' followed by 64 lowercase hex digits",
        ),
        (
            "weight above 100",
            |o| set(o, "/spec/steps/0/setWeight", json!(150)),
            "setWeight is a percentage of traffic: use a value from 0 to 100",
        ),
        (
            "negative weight",
            |o| set(o, "/spec/steps/0/setWeight", json!(-5)),
            "setWeight is a percentage of traffic: use a value from 0 to 100",
        ),
        (
            "two serving backends",
            |o| set(o, "/spec/serving/kserve", json!({"inferenceService": "fraud"})),
            "spec.serving needs exactly one backend: deployment or kserve",
        ),
        ("no serving backend", |o| set(o, "/spec/serving", json!({})), "spec.serving needs exactly one backend"),
        ("no steps", |o| set(o, "/spec/steps", json!([])), "should have at least 1 items"),
        (
            "steps that never send traffic to the canary",
            |o| set(o, "/spec/steps", json!([{"pause": {"duration": "1m"}}])),
            "spec.steps must contain at least one setWeight above 0",
        ),
        (
            "a step with two actions",
            |o| set(o, "/spec/steps/0", json!({"setWeight": 10, "pause": {}})),
            "each step needs exactly one of setWeight, pause, analysis, cohort or shadow",
        ),
        (
            "alpha of 0.7",
            |o| set(o, "/spec/analysis/alpha", json!(0.7)),
            "spec.analysis.alpha must be above 0 and below 0.5",
        ),
        (
            "alpha of 0",
            |o| set(o, "/spec/analysis/alpha", json!(0.0)),
            "spec.analysis.alpha must be above 0 and below 0.5",
        ),
        (
            "negative tolerance",
            |o| set(o, "/spec/analysis/metrics/0/tolerance/absolute", json!(-0.01)),
            "tolerance.absolute must be 0 or more",
        ),
        (
            "duplicate metric names",
            |o| set(o, "/spec/analysis/metrics/1/name", json!("accuracy")),
            "spec.analysis.metrics names must be unique",
        ),
        (
            "missing signature",
            |o| remove(o, "/spec/candidate/artifact/signature"),
            "spec.candidate.artifact.signature is required",
        ),
        (
            "ratio metric without a total query",
            |o| remove(o, "/spec/analysis/metrics/0/queries/total"),
            "a ratio metric needs queries.success and queries.total",
        ),
        (
            "a metric with neither a preset nor kind and queries",
            |o| set(o, "/spec/analysis/metrics/0", json!({"name": "ttft", "tolerance": {"absolute": 0.05}})),
            "a metric needs kind, direction and queries, or a preset such as vllm-time-to-first-token",
        ),
        (
            "a preset metric that also sets its kind",
            |o| {
                let metric = json!({"name": "ttft", "preset": "vllm-time-to-first-token", "kind": "latency"});
                set(o, "/spec/analysis/metrics/0", metric)
            },
            "a preset metric takes its kind, direction and queries from the preset",
        ),
        (
            "an unknown preset",
            |o| set(o, "/spec/analysis/metrics/0", json!({"name": "ttft", "preset": "vllm-time-to-last-token"})),
            "Unsupported value: \"vllm-time-to-last-token\"",
        ),
        (
            "a shadow step with a tolerance of 1",
            |o| set(o, "/spec/steps/0", json!({"shadow": {"duration": "10m", "tolerance": 1.0}})),
            "shadow.tolerance is a share of requests",
        ),
        (
            "an artifact URI that is JVM options, not a location",
            |o| set(o, "/spec/candidate/artifact/uri", json!("-javaagent:/tmp/agent.jar")),
            "artifact.uri must be a model location",
        ),
        (
            "an artifact URI with a shell expansion",
            |o| set(o, "/spec/candidate/artifact/uri", json!("s3://models/$(cat /etc/passwd)")),
            "artifact.uri must be a model location",
        ),
        (
            "model URI in both env and arg",
            |o| set(o, "/spec/serving/deployment/modelArg", json!("--model")),
            "deployment needs exactly one of modelEnv (an environment variable) or modelArg",
        ),
        (
            "a surge budget in both pods and GPUs",
            |o| set(o, "/spec/serving/deployment/capacity", json!({"surgeReplicas": 1, "surgeGPUs": 1})),
            "capacity needs exactly one of surgeReplicas or surgeGPUs",
        ),
        (
            "a surge budget of zero GPUs",
            |o| set(o, "/spec/serving/deployment/capacity", json!({"surgeGPUs": 0})),
            "surgeGPUs",
        ),
        (
            "a pause duration in words",
            |o| set(o, "/spec/steps/1", json!({"pause": {"duration": "ten minutes"}})),
            "pause.duration must be a duration such as 30s, 10m or 1h30m",
        ),
        (
            "analysis steps without metrics",
            |o| remove(o, "/spec/analysis"),
            "spec.analysis is required when a step has an analysis",
        ),
        (
            "a route in another namespace",
            |o| set(o, "/spec/traffic/gatewayAPI/httpRoute", json!("other-team/fraud")),
            "cross-namespace references are not allowed",
        ),
        (
            "a signature Secret in another namespace",
            |o| {
                set(
                    o,
                    "/spec/candidate/artifact/signature",
                    json!({"secretRef": {"name": "kube-system/keys", "key": "b"}}),
                )
            },
            "cross-namespace references are not allowed",
        ),
        (
            "KServe serving with a Gateway API route",
            |o| set(o, "/spec/serving", json!({"kserve": {"inferenceService": "fraud"}})),
            "spec.traffic must be omitted with spec.serving.kserve",
        ),
        (
            "a bake with KServe serving",
            |o| {
                set(o, "/spec/serving", json!({"kserve": {"inferenceService": "fraud"}}));
                remove(o, "/spec/traffic");
                set(o, "/spec/bake", json!({"duration": "1h"}));
            },
            "spec.bake needs spec.serving.deployment",
        ),
        (
            "a bake without a ratio metric to judge",
            |o| {
                set(o, "/spec/steps/1", json!({"pause": {"duration": "5m"}}));
                remove(o, "/spec/analysis");
                set(o, "/spec/bake", json!({"duration": "1h"}));
            },
            "spec.bake judges the ratio metrics of spec.analysis",
        ),
        (
            "a bake without a duration that parses",
            |o| set(o, "/spec/bake", json!({"duration": "a day"})),
            "bake.duration must be a duration such as 30m, 24h or 1h30m",
        ),
        (
            "a bake with capacity-aware steps",
            |o| {
                set(o, "/spec/serving/deployment/capacity", json!({"surgeReplicas": 1}));
                set(o, "/spec/bake", json!({"duration": "1h"}));
            },
            "spec.bake cannot be combined with spec.serving.deployment.capacity",
        ),
        (
            "a bake keeping no replica of the previous version",
            |o| set(o, "/spec/bake", json!({"duration": "1h", "previousReplicas": 0})),
            "bake.previousReplicas must be between 1 and 10000",
        ),
    ];
    assert!(cases.len() >= 12);

    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, "invalid").await.unwrap();
    let api = dynamic_api(client, &namespace);

    // The base object itself is valid, so each rejection below is caused by its one edit.
    create(&api, valid_rollout("valid-base")).await.unwrap();

    let mut failures = Vec::new();
    for (i, (what, edit, expected)) in cases.iter().enumerate() {
        let mut object = valid_rollout(&format!("invalid-{i}"));
        edit(&mut object);
        match create(&api, object).await {
            Ok(_) => failures.push(format!("{what}: was accepted")),
            Err(kube::Error::Api(status)) => {
                if status.code != 422 || !status.message.contains(expected) {
                    failures.push(format!(
                        "{what}: got {} {:?}, expected a 422 containing {expected:?}",
                        status.code, status.message
                    ));
                }
            }
            Err(other) => failures.push(format!("{what}: unexpected error {other}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[tokio::test]
async fn candidate_cannot_change_after_creation_but_other_fields_can() {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, "immutable").await.unwrap();
    let api = dynamic_api(client, &namespace);
    create(&api, valid_rollout("fraud-v8")).await.unwrap();

    let params = PatchParams::default();
    let edit_version = json!({"spec": {"candidate": {"version": "v9"}}});
    let err = api.patch("fraud-v8", &params, &Patch::Merge(&edit_version)).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err}") };
    assert_eq!(status.code, 422);
    assert!(status.message.contains("spec.candidate is immutable once set"), "{}", status.message);

    let edit_uri = json!({"spec": {"candidate": {"artifact": {"uri": "s3://elsewhere/"}}}});
    assert!(
        api.patch("fraud-v8", &params, &Patch::Merge(&edit_uri)).await.is_err(),
        "the artifact is part of the candidate"
    );

    let edit_steps =
        json!({"spec": {"steps": [{"setWeight": 20}, {"analysis": {"duration": "5m"}}, {"setWeight": 100}]}});
    api.patch("fraud-v8", &params, &Patch::Merge(&edit_steps)).await.unwrap();
}

#[tokio::test]
async fn a_watch_sees_create_status_update_and_delete() {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, "watch").await.unwrap();
    let api: Api<ModelRollout> = Api::namespaced(client, &namespace);
    let mut events = api.watch(&WatchParams::default().timeout(30), "0").await.unwrap().boxed();

    let rollout: ModelRollout = serde_json::from_value(valid_rollout("watched")).unwrap();
    api.create(&PostParams::default(), &rollout).await.unwrap();

    let status = json!({
        "apiVersion": ModelRollout::api_version(&()),
        "kind": ModelRollout::kind(&()),
        "status": ModelRolloutStatus { phase: Some(Phase::Progressing), canary_weight: Some(10), current_step: Some(0), ..Default::default() },
    });
    api.patch_status("watched", &PatchParams::apply(rampart_api::FIELD_MANAGER).force(), &Patch::Apply(&status))
        .await
        .unwrap();
    api.delete("watched", &DeleteParams::default()).await.unwrap();

    let mut seen = Vec::new();
    while let Some(event) = events.try_next().await.unwrap() {
        match event {
            WatchEvent::Added(r) => seen.push(("added", r.status.and_then(|s| s.canary_weight))),
            WatchEvent::Modified(r) => seen.push(("modified", r.status.and_then(|s| s.canary_weight))),
            WatchEvent::Deleted(r) => {
                seen.push(("deleted", r.status.and_then(|s| s.canary_weight)));
                break;
            }
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(err) => panic!("watch error: {err:?}"),
        }
    }
    assert_eq!(seen, vec![("added", None), ("modified", Some(10)), ("deleted", Some(10))]);
}
