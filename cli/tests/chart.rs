//! The Helm chart in `charts/rampart`: its CRD copy matches `crds/`, every RBAC rule is explained, and the manifests
//! `helm template` renders (every optional part switched on) apply to the real test API server.
//!
//! Helm comes from `$RAMPART_HELM`, `target/tools/bin/helm` (installed by `scripts/check-chart`) or `PATH`. Without
//! it the apply test prints a notice and passes, except under CI (`CI=true`), where it fails.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use serde_json::json;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts/rampart")
}

#[test]
fn the_chart_crd_is_an_exact_copy_of_the_generated_one() {
    let generated = std::fs::read_to_string(repo_root().join("crds/modelrollout.yaml")).unwrap();
    let copy = std::fs::read_to_string(chart_dir().join("crds/modelrollout.yaml")).unwrap();
    assert!(
        generated == copy,
        "charts/rampart/crds/modelrollout.yaml differs from crds/modelrollout.yaml: run \
         `cp crds/modelrollout.yaml charts/rampart/crds/`"
    );
}

#[test]
fn every_rbac_rule_has_a_comment_saying_why() {
    let text = std::fs::read_to_string(chart_dir().join("templates/rbac.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            rules += 1;
            let previous = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).unwrap();
            assert!(previous.trim_start().starts_with('#'), "rule at line {} has no comment above it", i + 1);
        }
    }
    assert!(rules >= 10, "expected the controller's rules, found {rules}");
}

/// The helm binary, if one is available.
fn helm() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RAMPART_HELM") {
        return Some(PathBuf::from(path));
    }
    let installed = repo_root().join("target/tools/bin/helm");
    if installed.is_file() {
        return Some(installed);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join("helm")).find(|path| path.is_file())
}

fn render(helm: &Path, release: &str, namespace: &str) -> String {
    let output = Command::new(helm)
        .args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", namespace, "--kube-version", "1.34.4", "--include-crds"])
        .args(["--set", "serviceMonitor.enabled=true", "--set", "networkPolicy.enabled=true"])
        .args(["--set", "prometheusRule.enabled=true", "--set", "grafanaDashboard.enabled=true"])
        .args(["--set", "replicaCount=2", "--set", "shadow.enabled=true"])
        .output()
        .unwrap();
    assert!(output.status.success(), "helm template failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// A minimal prometheus-operator CRD (the test API server has no prometheus-operator), so the optional templates
/// (ServiceMonitor, PrometheusRule) can be applied too.
async fn install_monitoring_crd(client: &kube::Client, kind: &str) {
    let plural = format!("{}s", kind.to_lowercase());
    let name = format!("{plural}.monitoring.coreos.com");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase()},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": true
            }}}]
        }
    }))
    .unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("rampart-chart-test").force();
    api.patch(&name, &params, &Patch::Apply(&crd)).await.unwrap();
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind);
    for _ in 0..100 {
        if pinned_kind(client, &gvk).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the {kind} CRD was not served within 10 s");
}

#[tokio::test]
async fn the_rendered_chart_applies_to_the_api_server() {
    let Some(helm) = helm() else {
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("helm is missing under CI: run scripts/check-chart (it installs helm into target/tools/bin)");
        }
        eprintln!("NOTICE: helm not found (scripts/check-chart installs it); skipping the chart apply test");
        return;
    };
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, "chart").await.unwrap();
    let release = format!("rampart-{namespace}");
    install_monitoring_crd(&client, "ServiceMonitor").await;
    install_monitoring_crd(&client, "PrometheusRule").await;

    let rendered = render(&helm, &release, &namespace);
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&rendered).unwrap();
    // The PrometheusRule carries exactly the promtool-tested rules, the ConfigMap exactly the query-tested dashboard.
    let rules: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart_dir().join("files/alerts.yaml")).unwrap()).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chart_dir().join("files/dashboard.json")).unwrap()).unwrap();
    let rule = documents.iter().find(|d| d["kind"] == "PrometheusRule").unwrap();
    assert_eq!(rule["spec"], rules);
    let config_map = documents.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: serde_json::Value =
        serde_json::from_str(config_map["data"]["rampart.json"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, dashboard);
    let mut kinds = Vec::new();
    for document in documents.into_iter().filter(|d| !d.is_null()) {
        let object: DynamicObject = serde_json::from_value(document).unwrap();
        let types = object.types.clone().unwrap();
        let gvk = GroupVersionKind::try_from(&types).unwrap();
        let (resource, capabilities) = pinned_kind(&client, &gvk).await.unwrap();
        let name = object.metadata.name.clone().unwrap();
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                assert_eq!(object.metadata.namespace.as_deref(), Some(namespace.as_str()), "{} {name}", gvk.kind);
                Api::namespaced_with(client.clone(), &namespace, &resource)
            }
        };
        // The CRD is shared by every test of this run: only check that it would apply. Everything else is created.
        let mut params = PatchParams::apply("rampart-chart-test");
        params.dry_run = gvk.kind == "CustomResourceDefinition";
        api.patch(&name, &params, &Patch::Apply(&object))
            .await
            .unwrap_or_else(|err| panic!("applying {} {name} failed: {err}", gvk.kind));
        kinds.push(gvk.kind);
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "Deployment",
            "NetworkPolicy",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );

    let deployment = Api::<Deployment>::namespaced(client.clone(), &namespace).get(&release).await.unwrap();
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap();
    assert!(args.contains(&"--identity=$(POD_NAME)".to_string()), "{args:?}");
    let pod_name = container.env.iter().flatten().find(|e| e.name == "POD_NAME").unwrap();
    assert_eq!(pod_name.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "metadata.name");
    assert_eq!(container.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
    assert_eq!(container.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/readyz"));

    // rampart-shadow (shadow.enabled): one replica (pairs live in memory), no API token, its events port probed.
    let shadow = Api::<Deployment>::namespaced(client.clone(), &namespace)
        .get(&format!("{release}-shadow"))
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(shadow.replicas, Some(1));
    let shadow_pod = shadow.template.spec.unwrap();
    assert_eq!(shadow_pod.automount_service_account_token, Some(false));
    let shadow_container = &shadow_pod.containers[0];
    assert!(shadow_container.image.as_deref().unwrap().starts_with("rampart-shadow:"), "{shadow_container:?}");
    assert!(shadow_container.args.iter().flatten().any(|a| a == "--pair-timeout=30"), "{shadow_container:?}");

    let cluster_role = Api::<ClusterRole>::all(client.clone()).get(&release).await.unwrap();
    let resources: Vec<String> =
        cluster_role.rules.unwrap().into_iter().flat_map(|rule| rule.resources.unwrap_or_default()).collect();
    for needed in ["modelrollouts", "modelrollouts/status", "events", "deployments", "httproutes", "inferenceservices"]
    {
        assert!(resources.iter().any(|r| r == needed), "ClusterRole lacks {needed}: {resources:?}");
    }
    assert!(!resources.iter().any(|r| r == "leases"), "leases belong in the namespaced Role");
    let role =
        Api::<Role>::namespaced(client.clone(), &namespace).get(&format!("{release}-leader-election")).await.unwrap();
    assert_eq!(role.rules.unwrap()[0].resources.as_deref(), Some(&["leases".to_string()][..]));

    // The teams' roles: aggregated into the standard view and edit roles, and never granting modelrollouts/status
    // (status is the controller's record of which gates passed).
    for (suffix, aggregate_to, verb) in [("view", "aggregate-to-view", "watch"), ("edit", "aggregate-to-edit", "patch")]
    {
        let name = format!("{release}-{suffix}");
        let role = Api::<ClusterRole>::all(client.clone()).get(&name).await.unwrap();
        let labels = role.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get(&format!("rbac.authorization.k8s.io/{aggregate_to}")).map(String::as_str), Some("true"));
        let rules = role.rules.unwrap_or_default();
        assert!(rules.iter().any(|r| r.verbs.iter().any(|v| v == verb)), "{name} lacks {verb}");
        for rule in &rules {
            for resource in rule.resources.iter().flatten() {
                assert!(resource != "*" && !resource.contains('/'), "{name} grants {resource}: no subresources");
            }
            assert!(!rule.verbs.iter().any(|v| v == "*"), "{name} grants every verb");
        }
        let _ = Api::<ClusterRole>::all(client.clone()).delete(&name, &Default::default()).await;
    }

    // Cluster-scoped objects outlive the namespace: remove them so reruns on a kept control plane stay clean.
    let _ = Api::<ClusterRole>::all(client.clone()).delete(&release, &Default::default()).await;
    let _ = Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
        .delete(&release, &Default::default())
        .await;
}
