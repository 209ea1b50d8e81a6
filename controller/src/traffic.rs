//! Traffic routers: move a share of live traffic to the canary. Gateway API HTTPRoute backendRef weights, or KServe's
//! `canaryTrafficPercent`. Both are written with server-side apply under the field manager `rampart`.

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use rampart_api::v1alpha1::GatewayApiTraffic;
use serde_json::{Value, json};

/// The HTTPRoute resource (`gateway.networking.k8s.io/v1`).
pub fn httproute_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"))
}

/// The InferenceService resource (`serving.kserve.io/v1beta1`).
pub fn inference_service_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"))
}

/// Why weights could not be set.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The object does not exist or could not be written.
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    /// The route has no rule that sends traffic to the baseline backend.
    #[error(
        "HTTPRoute {route} has no rule with a backendRef to Service {baseline}: add one, Rampart shifts weight between it and the canary"
    )]
    NoBaselineBackend { route: String, baseline: String },
}

/// Sets the canary's share to `canary_weight` percent on every rule of the HTTPRoute that routes to the baseline
/// backend: baseline gets `100 - w`, canary `w` (the canary backendRef is added when a rule lacks it). Other rules
/// and backends are left as they are.
pub async fn set_gateway_weight(
    client: &kube::Client,
    namespace: &str,
    traffic: &GatewayApiTraffic,
    canary_weight: i32,
) -> Result<(), TrafficError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &httproute_resource());
    let route = api.get(&traffic.http_route).await.map_err(|source| TrafficError::Kube {
        action: format!("reading HTTPRoute {namespace}/{}", traffic.http_route),
        source,
    })?;
    let rules = route.data.pointer("/spec/rules").cloned().unwrap_or(Value::Array(vec![]));
    let rules = reweigh_rules(rules, traffic, canary_weight).ok_or_else(|| TrafficError::NoBaselineBackend {
        route: format!("{namespace}/{}", traffic.http_route),
        baseline: traffic.baseline_backend.clone(),
    })?;
    let patch = json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": traffic.http_route},
        "spec": {"rules": rules},
    });
    api.patch(&traffic.http_route, &PatchParams::apply(rampart_api::FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|source| TrafficError::Kube {
            action: format!("setting weights on HTTPRoute {namespace}/{}", traffic.http_route),
            source,
        })?;
    Ok(())
}

/// The pure part of [`set_gateway_weight`]: the rules with new weights, or None when no rule routes to the baseline.
pub fn reweigh_rules(rules: Value, traffic: &GatewayApiTraffic, canary_weight: i32) -> Option<Value> {
    let Value::Array(mut rules) = rules else { return None };
    let canary_weight = canary_weight.clamp(0, 100);
    let mut touched = false;
    for rule in &mut rules {
        let Some(refs) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) else { continue };
        let is_backend = |r: &Value, name: &str| r.get("name").and_then(Value::as_str) == Some(name);
        if !refs.iter().any(|r| is_backend(r, &traffic.baseline_backend)) {
            continue;
        }
        touched = true;
        let port = traffic.port.or_else(|| {
            refs.iter()
                .find(|r| is_backend(r, &traffic.baseline_backend))
                .and_then(|r| r.get("port"))
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok())
        });
        if !refs.iter().any(|r| is_backend(r, &traffic.canary_backend)) {
            let mut canary = json!({"name": traffic.canary_backend});
            if let Some(port) = port {
                canary["port"] = json!(port);
            }
            refs.push(canary);
        }
        for backend in refs.iter_mut() {
            if is_backend(backend, &traffic.baseline_backend) {
                backend["weight"] = json!(100 - canary_weight);
            } else if is_backend(backend, &traffic.canary_backend) {
                backend["weight"] = json!(canary_weight);
            }
        }
    }
    touched.then_some(Value::Array(rules))
}

/// Reads the canary's current share from the HTTPRoute (for status and tests): the canary's weight over the total of
/// the two backends in the first rule that has both.
pub async fn gateway_weight(client: &kube::Client, namespace: &str, traffic: &GatewayApiTraffic) -> Option<i32> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &httproute_resource());
    let route = api.get(&traffic.http_route).await.ok()?;
    let rules = route.data.pointer("/spec/rules")?.as_array()?.clone();
    for rule in rules {
        let refs = rule.get("backendRefs")?.as_array()?.clone();
        let weight_of = |name: &str| {
            refs.iter()
                .find(|r| r.get("name").and_then(Value::as_str) == Some(name))
                .map(|r| r.get("weight").and_then(Value::as_i64).unwrap_or(1))
        };
        if let (Some(b), Some(c)) = (weight_of(&traffic.baseline_backend), weight_of(&traffic.canary_backend)) {
            let total = b + c;
            return Some(if total == 0 { 0 } else { i32::try_from(c * 100 / total).unwrap_or(0) });
        }
    }
    None
}

/// Sets the InferenceService's `canaryTrafficPercent` and, when given, its predictor's storage URI.
pub async fn set_kserve(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    canary_percent: i32,
    storage_uri: Option<&str>,
) -> Result<(), TrafficError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &inference_service_resource());
    let mut predictor = json!({"canaryTrafficPercent": canary_percent.clamp(0, 100)});
    if let Some(uri) = storage_uri {
        predictor["model"] = json!({"storageUri": uri});
    }
    let patch = json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": predictor},
    });
    api.patch(name, &PatchParams::apply(rampart_api::FIELD_MANAGER).force(), &Patch::Apply(&patch)).await.map_err(
        |source| TrafficError::Kube {
            action: format!("setting canaryTrafficPercent on InferenceService {namespace}/{name}"),
            source,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic() -> GatewayApiTraffic {
        GatewayApiTraffic {
            http_route: "fraud".into(),
            baseline_backend: "fraud".into(),
            canary_backend: "fraud-canary".into(),
            port: None,
        }
    }

    #[test]
    fn adds_the_canary_backend_next_to_the_baseline_with_the_split_weights() {
        let rules = json!([{"matches": [{"path": {"value": "/"}}], "backendRefs": [{"name": "fraud", "port": 8080}]}]);
        let out = reweigh_rules(rules, &traffic(), 25).unwrap();
        assert_eq!(
            out[0]["backendRefs"],
            json!([{"name": "fraud", "port": 8080, "weight": 75}, {"name": "fraud-canary", "port": 8080, "weight": 25}])
        );
        assert_eq!(out[0]["matches"], json!([{"path": {"value": "/"}}]), "other fields are kept");
    }

    #[test]
    fn leaves_rules_without_the_baseline_alone() {
        let rules = json!([
            {"backendRefs": [{"name": "other", "weight": 3}]},
            {"backendRefs": [{"name": "fraud", "weight": 50}, {"name": "fraud-canary", "weight": 50}]}
        ]);
        let out = reweigh_rules(rules, &traffic(), 0).unwrap();
        assert_eq!(out[0]["backendRefs"], json!([{"name": "other", "weight": 3}]));
        assert_eq!(out[1]["backendRefs"][0]["weight"], json!(100));
        assert_eq!(out[1]["backendRefs"][1]["weight"], json!(0));
    }

    #[test]
    fn a_route_without_the_baseline_backend_is_an_error() {
        assert!(reweigh_rules(json!([{"backendRefs": [{"name": "x"}]}]), &traffic(), 10).is_none());
        assert!(reweigh_rules(json!({}), &traffic(), 10).is_none());
    }
}
