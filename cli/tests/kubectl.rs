//! The real `kubectl`, built by `testenv/build` from the same Kubernetes modules as the test API server, against that
//! server: `kubectl apply -f examples/`, the `kubectl get mro` columns, `kubectl explain modelrollout.spec`, and the
//! CLI as the kubectl plugin `kubectl rampart` (a `kubectl-rampart` link on PATH). These are what a user types first,
//! so they are checked with the user's tool rather than with a Rust client.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::Command;

use kube::api::{Api, Patch, PatchParams};
use rampart_api::ModelRollout;
use serde_json::json;
use support::{Outcome, binary, run_command};

/// The kubectl `testenv/build` put next to the API server (not whatever kubectl the machine has on PATH).
fn kubectl_binary() -> PathBuf {
    let path = rampart_testenv::bin_dir().join("kubectl");
    assert!(path.is_file(), "{} is missing: run testenv/build (it builds kubectl with the API server)", path.display());
    path
}

/// A kubectl command for the shared test API server, with nothing inherited from the machine's kubeconfig.
fn kubectl(args: &[&str]) -> Command {
    let env = rampart_testenv::shared().unwrap();
    let mut command = Command::new(kubectl_binary());
    command
        .args(args)
        .env("KUBECONFIG", env.kubeconfig_path())
        .env("HOME", std::env::temp_dir())
        .env_remove("KUBECTL_EXTERNAL_DIFF");
    command
}

fn ok(command: Command) -> Outcome {
    let outcome = run_command(command);
    outcome.expect_code(0);
    outcome
}

async fn namespace(prefix: &str) -> (kube::Client, String) {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, prefix).await.unwrap();
    (client, namespace)
}

fn examples_dir() -> PathBuf {
    rampart_testenv::repo_root().join("examples")
}

/// The `metadata.name` of every ModelRollout in the examples, read from the files themselves.
fn example_rollout_names() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
        for document in documents {
            if document["kind"] == "ModelRollout" {
                names.push(document["metadata"]["name"].as_str().unwrap().to_string());
            }
        }
    }
    names.sort();
    names
}

#[tokio::test]
async fn kubectl_applies_every_example_and_lists_them_with_the_printer_columns() {
    let (client, ns) = namespace("kubectl-examples").await;
    let examples = examples_dir();
    let applied = ok({
        let mut command = kubectl(&["apply", "-n", &ns, "-f"]);
        command.arg(&examples);
        command
    });
    let names = example_rollout_names();
    assert!(names.len() >= 4, "expected the four example rollouts, found {names:?}");
    for name in &names {
        assert!(
            applied.stdout.contains(&format!("modelrollout.rampart.dev/{name} created")),
            "kubectl apply did not create {name}:\n{}",
            applied.stdout
        );
    }

    // Give one rollout a status, as the controller would, so the Phase/Weight/Step columns show values.
    let rollouts: Api<ModelRollout> = Api::namespaced(client, &ns);
    rollouts
        .patch_status(
            "fraud-detector-v8",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": "Progressing", "canaryWeight": 25, "currentStep": 2}})),
        )
        .await
        .unwrap();

    let listed = ok(kubectl(&["get", "mro", "-n", &ns]));
    let mut lines = listed.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "MODEL", "CANDIDATE", "PHASE", "WEIGHT", "STEP", "AGE"], "{}", listed.stdout);
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split_whitespace().collect()).collect();
    let listed_names: Vec<&str> = rows.iter().map(|row| row[0]).collect();
    assert_eq!(listed_names, names.iter().map(String::as_str).collect::<Vec<_>>(), "{}", listed.stdout);
    let v8 = rows.iter().find(|row| row[0] == "fraud-detector-v8").unwrap();
    assert_eq!(&v8[1..6], ["fraud-detector", "v8", "Progressing", "25", "2"], "{}", listed.stdout);

    // The short name, the plural and the category-free full name all resolve to the same resource.
    let by_plural = ok(kubectl(&["get", "modelrollouts.rampart.dev", "-n", &ns, "-o", "name"]));
    assert_eq!(by_plural.stdout.lines().count(), names.len(), "{}", by_plural.stdout);

    // Applying the same files again changes nothing.
    let again = ok({
        let mut command = kubectl(&["apply", "-n", &ns, "-f"]);
        command.arg(&examples);
        command
    });
    for name in &names {
        assert!(
            again.stdout.contains(&format!("modelrollout.rampart.dev/{name} unchanged")),
            "{name} changed on a second apply:\n{}",
            again.stdout
        );
    }
}

/// `kubectl explain` reads the API server's OpenAPI document, which publishes a new CRD's schema a few seconds after
/// the CRD is established: retry until it is there.
fn explain(args: &[&str]) -> Outcome {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let outcome = run_command(kubectl(args));
        if outcome.code == 0
            || std::time::Instant::now() > deadline
            || !outcome.stderr.contains("couldn't find resource")
        {
            outcome.expect_code(0);
            return outcome;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_documentation() {
    rampart_testenv::shared().unwrap();
    let spec = explain(&["explain", "modelrollout.spec"]);
    assert!(spec.stdout.contains("GROUP:      rampart.dev"), "{}", spec.stdout);
    assert!(spec.stdout.contains("VERSION:    v1alpha1"), "{}", spec.stdout);
    // Every top-level spec field is listed, with the doc comment from the Rust type as its description.
    for field in ["model", "candidate", "serving", "steps", "analysis"] {
        assert!(
            spec.stdout.contains(&format!("  {field}\t")),
            "kubectl explain does not list spec.{field}:\n{}",
            spec.stdout
        );
    }
    assert!(spec.stdout.contains("Name of the model in the Rampart registry"), "{}", spec.stdout);

    let tolerance = explain(&["explain", "mro.spec.analysis.metrics.tolerance", "--recursive"]);
    assert!(tolerance.stdout.contains("FIELD: tolerance"), "{}", tolerance.stdout);
}

#[tokio::test]
async fn kubectl_rampart_runs_the_cli_as_a_plugin() {
    let (client, ns) = namespace("kubectl-plugin").await;
    ok({
        let mut command = kubectl(&["apply", "-n", &ns, "-f"]);
        command.arg(examples_dir().join("deployment-gateway.yaml"));
        command
    });
    let rollouts: Api<ModelRollout> = Api::namespaced(client, &ns);
    rollouts
        .patch_status(
            "fraud-detector-v8",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {
                "phase": "Paused", "canaryWeight": 50, "currentStep": 3, "message": "waiting for promote"
            }})),
        )
        .await
        .unwrap();

    // kubectl finds plugins as executables named kubectl-<name> on PATH.
    let plugins = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(binary(), plugins.path().join("kubectl-rampart")).unwrap();
    let path = format!("{}:{}", plugins.path().display(), std::env::var("PATH").unwrap_or_default());

    let mut list = kubectl(&["plugin", "list", "--name-only"]);
    list.env("PATH", &path);
    let list = ok(list);
    assert!(list.stdout.lines().any(|line| line.trim() == "kubectl-rampart"), "{}", list.stdout);

    let mut status = kubectl(&["rampart", "status", "fraud-detector-v8", "-n", &ns]);
    status.env("PATH", &path);
    let status = ok(status);
    assert!(status.stdout.contains("Paused"), "{}", status.stdout);
    assert!(status.stdout.contains("50"), "{}", status.stdout);
    assert!(status.stdout.contains("fraud-detector"), "{}", status.stdout);
}
