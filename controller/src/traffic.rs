//! Traffic routers: move a share of live traffic to the canary. Gateway API HTTPRoute backendRef weights, or KServe's
//! `canaryTrafficPercent`. Both are written with server-side apply under the field manager `rampart`.

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use rampart_api::v1alpha1::{GatewayApiTraffic, HeaderMatchType, HeaderRule};
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

/// Name prefix of the rules Rampart adds for a header cohort (`rampart-cohort-<index of the rule it copies>`). Rules
/// with this prefix belong to Rampart: every write removes them and adds the current cohort's again.
pub const COHORT_RULE_PREFIX: &str = "rampart-cohort-";

/// What the route carries besides the weights.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Extras<'a> {
    /// Requests matching these header rules go to the canary.
    pub cohort: Option<&'a [HeaderRule]>,
    /// Every request of the baseline's rules is also mirrored to the canary (its answers are dropped).
    pub mirror: bool,
}

/// Sets the canary's share to `canary_weight` percent on every rule of the HTTPRoute that routes to the baseline
/// backend: baseline gets `100 - w`, canary `w` (the canary backendRef is added when a rule lacks it). With a
/// cohort, each such rule also gets a copy, placed before it, whose matches additionally require the cohort's
/// headers and which sends everything to the canary; with `mirror`, each such rule gets a `RequestMirror` filter to
/// the canary. Without them, earlier cohort rules and canary mirrors are removed. Other rules, filters and backends
/// are left as they are.
pub async fn set_gateway_weight(
    client: &kube::Client,
    namespace: &str,
    traffic: &GatewayApiTraffic,
    canary_weight: i32,
    extras: Extras<'_>,
) -> Result<(), TrafficError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &httproute_resource());
    let route = api.get(&traffic.http_route).await.map_err(|source| TrafficError::Kube {
        action: format!("reading HTTPRoute {namespace}/{}", traffic.http_route),
        source,
    })?;
    let rules = route.data.pointer("/spec/rules").cloned().unwrap_or(Value::Array(vec![]));
    let rules =
        reweigh_rules(rules, traffic, canary_weight, extras).ok_or_else(|| TrafficError::NoBaselineBackend {
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

/// The pure part of [`set_gateway_weight`]: the rules with new weights (and the cohort's rules), or None when no rule
/// routes to the baseline.
pub fn reweigh_rules(
    rules: Value,
    traffic: &GatewayApiTraffic,
    canary_weight: i32,
    extras: Extras<'_>,
) -> Option<Value> {
    let Value::Array(rules) = rules else { return None };
    let mut rules: Vec<Value> = rules.into_iter().filter(|rule| !is_cohort_rule(rule)).collect();
    let canary_weight = canary_weight.clamp(0, 100);
    let mut touched = false;
    let mut cohort_rules = Vec::new();
    for (index, rule) in rules.iter_mut().enumerate() {
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
        set_mirror(rule, traffic, port, extras.mirror);
        if let Some(headers) = extras.cohort
            && let Some(copy) = cohort_rule(rule, index, headers, traffic, port)
        {
            cohort_rules.push((index, copy));
        }
    }
    if !touched {
        return None;
    }
    // Each cohort rule goes right before the rule it copies. Gateways prefer the match with more header matches
    // anyway; the order only settles exact ties.
    let mut out = Vec::with_capacity(rules.len() + cohort_rules.len());
    let mut cohort_rules = cohort_rules.into_iter().peekable();
    for (index, rule) in rules.into_iter().enumerate() {
        while let Some((_, copy)) = cohort_rules.next_if(|(at, _)| *at == index) {
            out.push(copy);
        }
        out.push(rule);
    }
    Some(Value::Array(out))
}

/// True for a `RequestMirror` filter to the canary backend (Rampart's, for a shadow step).
fn is_canary_mirror(filter: &Value, traffic: &GatewayApiTraffic) -> bool {
    filter.get("type").and_then(Value::as_str) == Some("RequestMirror")
        && filter.pointer("/requestMirror/backendRef/name").and_then(Value::as_str)
            == Some(traffic.canary_backend.as_str())
}

/// The rule's filters except a `RequestMirror` to the canary.
fn filters_without_mirror(rule: &Value, traffic: &GatewayApiTraffic) -> Vec<Value> {
    rule.get("filters")
        .and_then(Value::as_array)
        .map(|filters| filters.iter().filter(|f| !is_canary_mirror(f, traffic)).cloned().collect())
        .unwrap_or_default()
}

/// Adds (or removes) the rule's `RequestMirror` filter to the canary; other filters stay.
fn set_mirror(rule: &mut Value, traffic: &GatewayApiTraffic, port: Option<i32>, mirror: bool) {
    let mut filters = filters_without_mirror(rule, traffic);
    if mirror {
        let mut backend = json!({"name": traffic.canary_backend});
        if let Some(port) = port {
            backend["port"] = json!(port);
        }
        filters.push(json!({"type": "RequestMirror", "requestMirror": {"backendRef": backend}}));
    }
    match rule.as_object_mut() {
        Some(object) if filters.is_empty() => {
            object.remove("filters");
        }
        Some(object) => {
            object.insert("filters".into(), Value::Array(filters));
        }
        None => {}
    }
}

/// True for a rule Rampart added for a cohort.
fn is_cohort_rule(rule: &Value) -> bool {
    rule.get("name").and_then(Value::as_str).is_some_and(|name| name.starts_with(COHORT_RULE_PREFIX))
}

/// Most header matches the Gateway API allows in one match.
const MAX_HEADER_MATCHES: usize = 16;

/// The cohort's copy of `rule`: the same matches, each also requiring the cohort's headers, the same filters and
/// timeouts, and only the canary as backend. A match that already constrains one of the cohort's headers is left
/// out (a request cannot satisfy two different rules for one header); None when no match is left.
fn cohort_rule(
    rule: &Value,
    index: usize,
    headers: &[HeaderRule],
    traffic: &GatewayApiTraffic,
    port: Option<i32>,
) -> Option<Value> {
    let default_match = vec![json!({"path": {"type": "PathPrefix", "value": "/"}})];
    let matches = match rule.get("matches").and_then(Value::as_array) {
        Some(matches) if !matches.is_empty() => matches.clone(),
        _ => default_match,
    };
    let cohort_headers: Vec<Value> = headers
        .iter()
        .map(|h| {
            let kind = match h.match_type.unwrap_or_default() {
                HeaderMatchType::Exact => "Exact",
                HeaderMatchType::RegularExpression => "RegularExpression",
            };
            json!({"type": kind, "name": h.name, "value": h.value})
        })
        .collect();
    let matches: Vec<Value> = matches
        .into_iter()
        .filter_map(|mut m| {
            let existing = m.get("headers").and_then(Value::as_array).cloned().unwrap_or_default();
            let clash = existing.iter().any(|e| {
                let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
                headers.iter().any(|h| h.name.eq_ignore_ascii_case(name))
            });
            if clash || existing.len() + cohort_headers.len() > MAX_HEADER_MATCHES {
                return None;
            }
            let mut all = existing;
            all.extend(cohort_headers.iter().cloned());
            m["headers"] = Value::Array(all);
            Some(m)
        })
        .collect();
    if matches.is_empty() {
        return None;
    }
    let mut canary = json!({"name": traffic.canary_backend, "weight": 1});
    if let Some(port) = port {
        canary["port"] = json!(port);
    }
    let mut copy = json!({
        "name": format!("{COHORT_RULE_PREFIX}{index}"),
        "matches": matches,
        "backendRefs": [canary],
    });
    // The rule's own filters go along; a mirror to the canary does not (the copy already sends to the canary).
    let filters = filters_without_mirror(rule, traffic);
    if !filters.is_empty() {
        copy["filters"] = Value::Array(filters);
    }
    if let Some(value) = rule.get("timeouts") {
        copy["timeouts"] = value.clone();
    }
    Some(copy)
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
        let out = reweigh_rules(rules, &traffic(), 25, Extras::default()).unwrap();
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
        let out = reweigh_rules(rules, &traffic(), 0, Extras::default()).unwrap();
        assert_eq!(out[0]["backendRefs"], json!([{"name": "other", "weight": 3}]));
        assert_eq!(out[1]["backendRefs"][0]["weight"], json!(100));
        assert_eq!(out[1]["backendRefs"][1]["weight"], json!(0));
    }

    fn tenant_cohort() -> Vec<HeaderRule> {
        vec![HeaderRule { name: "x-tenant".into(), value: "internal".into(), match_type: None }]
    }

    #[test]
    fn a_cohort_copies_each_baseline_rule_before_it_with_the_headers_added_and_only_the_canary() {
        let rules = json!([
            {"name": "api", "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}, "method": "POST"}],
             "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}}],
             "backendRefs": [{"name": "fraud", "port": 8080}]},
            {"backendRefs": [{"name": "other", "port": 80}]},
        ]);
        let out =
            reweigh_rules(rules, &traffic(), 0, Extras { cohort: Some(&tenant_cohort()), mirror: false }).unwrap();
        let out = out.as_array().unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["name"], json!("rampart-cohort-0"));
        assert_eq!(
            out[0]["matches"],
            json!([{"path": {"type": "PathPrefix", "value": "/v1"}, "method": "POST",
                    "headers": [{"type": "Exact", "name": "x-tenant", "value": "internal"}]}])
        );
        assert_eq!(out[0]["backendRefs"], json!([{"name": "fraud-canary", "port": 8080, "weight": 1}]));
        assert_eq!(out[0]["filters"], out[1]["filters"], "the copy keeps the rule's filters");
        assert_eq!(out[1]["name"], json!("api"));
        assert_eq!(out[1]["backendRefs"][0]["weight"], json!(100));
        assert_eq!(out[2]["backendRefs"], json!([{"name": "other", "port": 80}]));
    }

    #[test]
    fn a_rule_without_matches_gets_the_default_match_in_its_cohort_copy() {
        let rules = json!([{"backendRefs": [{"name": "fraud", "port": 8080}]}]);
        let cohort = vec![HeaderRule {
            name: "x-group".into(),
            value: "beta-.*".into(),
            match_type: Some(HeaderMatchType::RegularExpression),
        }];
        let out = reweigh_rules(rules, &traffic(), 10, Extras { cohort: Some(&cohort), mirror: false }).unwrap();
        assert_eq!(
            out[0]["matches"],
            json!([{"path": {"type": "PathPrefix", "value": "/"},
                    "headers": [{"type": "RegularExpression", "name": "x-group", "value": "beta-.*"}]}])
        );
        assert_eq!(out[1]["backendRefs"][1]["weight"], json!(10));
    }

    #[test]
    fn without_a_cohort_earlier_cohort_rules_are_removed_and_a_second_write_does_not_duplicate_them() {
        let rules = json!([{"backendRefs": [{"name": "fraud", "port": 8080}]}]);
        let once =
            reweigh_rules(rules, &traffic(), 0, Extras { cohort: Some(&tenant_cohort()), mirror: false }).unwrap();
        let twice =
            reweigh_rules(once.clone(), &traffic(), 0, Extras { cohort: Some(&tenant_cohort()), mirror: false })
                .unwrap();
        assert_eq!(once, twice);
        let removed = reweigh_rules(twice, &traffic(), 0, Extras::default()).unwrap();
        assert_eq!(
            removed,
            json!([{"backendRefs": [{"name": "fraud", "port": 8080, "weight": 100},
                                                    {"name": "fraud-canary", "port": 8080, "weight": 0}]}])
        );
    }

    #[test]
    fn a_match_that_already_constrains_the_cohort_header_is_left_out_of_the_copy() {
        let rules = json!([{"matches": [
            {"headers": [{"name": "X-Tenant", "value": "acme"}]},
            {"path": {"type": "Exact", "value": "/predict"}},
        ], "backendRefs": [{"name": "fraud", "port": 8080}]}]);
        let out =
            reweigh_rules(rules, &traffic(), 0, Extras { cohort: Some(&tenant_cohort()), mirror: false }).unwrap();
        assert_eq!(
            out[0]["matches"],
            json!([{"path": {"type": "Exact", "value": "/predict"},
                    "headers": [{"type": "Exact", "name": "x-tenant", "value": "internal"}]}])
        );
    }

    #[test]
    fn a_mirror_to_the_canary_is_added_to_each_baseline_rule_next_to_its_filters_and_removed_again() {
        let header =
            json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}});
        let rules = json!([{"filters": [header], "backendRefs": [{"name": "fraud", "port": 8080}]}]);
        let mirrored = reweigh_rules(rules, &traffic(), 0, Extras { cohort: None, mirror: true }).unwrap();
        assert_eq!(
            mirrored[0]["filters"],
            json!([header, {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "fraud-canary", "port": 8080}}}])
        );
        assert_eq!(mirrored[0]["backendRefs"][1]["weight"], json!(0), "users get only the baseline's answers");
        let again = reweigh_rules(mirrored.clone(), &traffic(), 0, Extras { cohort: None, mirror: true }).unwrap();
        assert_eq!(again, mirrored, "one mirror, however often it is written");
        let removed = reweigh_rules(again, &traffic(), 0, Extras::default()).unwrap();
        assert_eq!(removed[0]["filters"], json!([header]));
        let bare = reweigh_rules(json!([{"backendRefs": [{"name": "fraud"}]}]), &traffic(), 0, Extras::default());
        assert!(bare.unwrap()[0].get("filters").is_none(), "no empty filters list is written");
    }

    #[test]
    fn a_route_without_the_baseline_backend_is_an_error() {
        assert!(reweigh_rules(json!([{"backendRefs": [{"name": "x"}]}]), &traffic(), 10, Extras::default()).is_none());
        assert!(reweigh_rules(json!({}), &traffic(), 10, Extras::default()).is_none());
    }
}
