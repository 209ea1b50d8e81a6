//! The Argo CD health script and actions shipped in `integrations/argocd`, run by the interpreter Argo CD embeds
//! (gopher-lua, built by `testenv/build` as `argocd-lua`, with the libraries Argo CD opens for these scripts) on
//! ModelRollout status samples recorded from the demo and the controller tests. The expectations live next to the
//! scripts in Argo CD's own test-file layout (`health_test.yaml`, `actions/action_test.yaml`).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

fn customization_dir() -> PathBuf {
    rampart_testenv::repo_root().join("integrations/argocd/rampart.dev/ModelRollout")
}

fn lua_runner() -> PathBuf {
    let path = rampart_testenv::bin_dir().join("argocd-lua");
    assert!(path.is_file(), "{} is missing: run testenv/build (it builds the gopher-lua runner)", path.display());
    path
}

/// Loads a YAML sample (as Argo CD's tests do) and writes it as JSON for the runner.
fn sample_as_json(path: &Path, out: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let object: Value = serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    std::fs::write(out, serde_json::to_vec(&object).unwrap()).unwrap();
    object
}

fn run_lua(mode: &str, script: &Path, sample: &Path) -> Value {
    let scratch = tempfile::tempdir().unwrap();
    let object = sample_as_json(sample, &scratch.path().join("object.json"));
    run_lua_on(mode, script, &object)
}

/// Runs a script on an object given as JSON.
fn run_lua_on(mode: &str, script: &Path, object: &Value) -> Value {
    let scratch = tempfile::tempdir().unwrap();
    let json = scratch.path().join("object.json");
    std::fs::write(&json, serde_json::to_vec(object).unwrap()).unwrap();
    let output = Command::new(lua_runner()).arg(mode).arg(script).arg(&json).output().unwrap();
    assert!(
        output.status.success(),
        "argocd-lua {mode} {} failed on {}:\n{}",
        script.display(),
        object["metadata"]["name"],
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[derive(Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: ExpectedHealth,
    input_path: String,
}

#[derive(Deserialize)]
struct ExpectedHealth {
    status: String,
    message: String,
}

#[test]
fn health_script_reports_progressing_healthy_degraded_and_suspended_on_recorded_samples() {
    let dir = customization_dir();
    let tests: HealthTests =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for test in &tests.tests {
        let health = run_lua("health", &dir.join("health.lua"), &dir.join(&test.input_path));
        assert_eq!(health["status"], test.health_status.status.as_str(), "{}: {health}", test.input_path);
        assert_eq!(health["message"], test.health_status.message.as_str(), "{}: {health}", test.input_path);
        seen.insert(test.health_status.status.clone());
    }
    let wanted: std::collections::BTreeSet<String> =
        ["Degraded", "Healthy", "Progressing", "Suspended"].into_iter().map(String::from).collect();
    assert_eq!(seen, wanted, "the samples must cover every health status Argo CD shows for a rollout");
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionTests {
    discovery_tests: Vec<DiscoveryTest>,
    action_tests: Vec<ActionTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiscoveryTest {
    input_path: String,
    /// Action name -> disabled.
    result: std::collections::BTreeMap<String, bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionTest {
    action: String,
    input_path: String,
    /// Annotations the action must set (to a fresh UTC timestamp).
    sets: Vec<String>,
    /// Annotations the action must remove.
    #[serde(default)]
    removes: Vec<String>,
}

#[test]
fn actions_are_offered_only_where_the_controller_acts_on_them() {
    let dir = customization_dir();
    let tests: ActionTests =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("actions/action_test.yaml")).unwrap()).unwrap();
    for test in &tests.discovery_tests {
        let actions = run_lua("discovery", &dir.join("actions/discovery.lua"), &dir.join(&test.input_path));
        let offered: std::collections::BTreeMap<String, bool> = actions
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, action)| (name.clone(), action["disabled"].as_bool().unwrap()))
            .collect();
        assert_eq!(offered, test.result, "{}", test.input_path);
    }
}

#[test]
fn a_baking_rollout_offers_abort_but_not_promote_which_does_not_end_a_bake() {
    let dir = customization_dir();
    let scratch = tempfile::tempdir().unwrap();
    let mut object = sample_as_json(&dir.join("testdata/promoting.yaml"), &scratch.path().join("object.json"));
    object["status"]["phase"] = Value::from("Baking");
    let actions = run_lua_on("discovery", &dir.join("actions/discovery.lua"), &object);
    assert_eq!(actions["promote"]["disabled"], true, "{actions}");
    assert_eq!(actions["abort"]["disabled"], false, "{actions}");
    assert_eq!(actions["retry"]["disabled"], true, "{actions}");
    let health = run_lua_on("health", &dir.join("health.lua"), &object);
    assert_eq!(health["status"], "Progressing", "{health}");
}

#[test]
fn actions_write_the_annotations_the_cli_writes() {
    let dir = customization_dir();
    let tests: ActionTests =
        serde_saphyr::from_str(&std::fs::read_to_string(dir.join("actions/action_test.yaml")).unwrap()).unwrap();
    assert!(!tests.action_tests.is_empty());
    for test in &tests.action_tests {
        let scratch = tempfile::tempdir().unwrap();
        let mut before = sample_as_json(&dir.join(&test.input_path), &scratch.path().join("before.json"));
        // Earlier requests the action must clear, as `rampart retry` clears them.
        for key in &test.removes {
            before["metadata"]["annotations"][key] = Value::from("2026-11-30T00:00:00Z");
        }
        before["metadata"]["annotations"]["team.example/owner"] = Value::from("ml-platform");
        let script = dir.join("actions").join(&test.action).join("action.lua");
        let after = run_lua_on("action", &script, &before);
        let annotations = &after["metadata"]["annotations"];
        for key in &test.sets {
            let value =
                annotations[key].as_str().unwrap_or_else(|| panic!("{} did not set {key}: {after}", test.action));
            // RFC 3339 UTC, seconds precision: 2026-12-01T04:30:00Z.
            assert_eq!(value.len(), 20, "{key}={value}");
            assert!(value.ends_with('Z') && value.as_bytes()[10] == b'T', "{key}={value}");
        }
        for key in &test.removes {
            assert!(annotations.get(key).is_none(), "{} left {key}: {after}", test.action);
        }
        // Nothing else changes: same spec, same status, same other annotations.
        assert_eq!(after["spec"], before["spec"], "{} changed the spec", test.action);
        assert_eq!(after["status"], before["status"], "{} changed the status", test.action);
        if let Some(old) = before["metadata"]["annotations"].as_object() {
            for (key, value) in old {
                if !test.sets.contains(key) && !test.removes.contains(key) {
                    assert_eq!(&annotations[key], value, "{} changed annotation {key}", test.action);
                }
            }
        }
    }
}

/// The ConfigMap snippet users paste into `argocd-cm` carries exactly the scripts the tests run.
#[test]
fn argocd_cm_snippet_matches_the_tested_scripts() {
    let root = rampart_testenv::repo_root().join("integrations/argocd");
    let dir = customization_dir();
    let snippet: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root.join("argocd-cm.yaml")).unwrap()).unwrap();
    let data = &snippet["data"];
    let read = |path: &str| std::fs::read_to_string(dir.join(path)).unwrap();
    assert_eq!(data["resource.customizations.health.rampart.dev_ModelRollout"], read("health.lua").as_str());
    let actions: Value =
        serde_saphyr::from_str(data["resource.customizations.actions.rampart.dev_ModelRollout"].as_str().unwrap())
            .unwrap();
    assert_eq!(actions["discovery.lua"], read("actions/discovery.lua").as_str());
    let definitions = actions["definitions"].as_array().unwrap();
    let names: Vec<&str> = definitions.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["promote", "abort", "retry"]);
    for definition in definitions {
        let name = definition["name"].as_str().unwrap();
        assert_eq!(definition["action.lua"], read(&format!("actions/{name}/action.lua")).as_str(), "{name}");
    }
}
