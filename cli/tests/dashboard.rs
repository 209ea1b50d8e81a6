//! `rampart dashboard` in real headless Chromium (Debian's chromium + chromedriver, driven over WebDriver by
//! fantoccini) against the test API server and a throwaway registry. The rollouts' status and registry records are
//! written the way the controller writes them (the controller's own tests cover how it gets there); the dashboard
//! process is the real binary with its own kubeconfig. Screenshots of each page go to target/dashboard-screenshots/.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use rampart_api::ModelRollout;
use rampart_registry::{AliasMove, NewRollout, NewVersion, Registry, StepRecord, VerdictRecord, Verification};
use serde_json::{Value, json};

/// One browser at a time: Chromium is heavy on a 2-core machine.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn screenshots_dir() -> PathBuf {
    let dir = rampart_testenv::repo_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A process that is killed when the test ends, pass or fail. chromedriver runs in a process group of its own, so
/// the Chromium it started goes with it even when a failed test never closed its session.
struct Running {
    child: Child,
    /// The child leads its own process group; kill the whole group.
    group: bool,
}
impl Drop for Running {
    fn drop(&mut self) {
        if self.group {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rampart dashboard` on a free loopback port; returns the process and its URL (read from its first line).
fn start_dashboard(kubeconfig: &Path, database_url: Option<&str>) -> (Running, String) {
    let mut command = support::command(&["dashboard", "--address", "127.0.0.1:0", "--refresh", "0.3"]);
    command.arg("--kubeconfig").arg(kubeconfig);
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("the dashboard did not print its URL: {line:?}"))
        .to_string();
    (Running { child, group: false }, url)
}

/// chromedriver on a free port, and a WebDriver session in headless Chromium.
async fn start_browser() -> (Running, Client) {
    let chromedriver =
        which("chromedriver").expect("chromedriver not found: run scripts/ci-deps (Debian's chromium-driver)");
    let chromium = which("chromium").expect("chromium not found: run scripts/ci-deps (Debian's chromium)");
    let port = rampart_testenv::free_port().unwrap();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Running { child, group: true };
    let capabilities: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1100", "--force-device-scale-factor=1"],
        }
    }))
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("no WebDriver session from chromedriver on port {port}: {err}"),
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|path| path.is_file())
}

/// The text of the first element matching `css`, once `check` accepts it (the page updates itself).
async fn wait_for_text(browser: &Client, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::from("(no such element)");
    while Instant::now() < deadline {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if check(&text) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = screenshot(browser, &format!("failed-{}", what.replace(' ', "-"))).await;
    panic!("{what}: `{css}` never matched; last text: {last}");
}

async fn screenshot(browser: &Client, name: &str) -> PathBuf {
    let png = browser.screenshot().await.unwrap();
    let path = screenshots_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

async fn exists(browser: &Client, css: &str) -> bool {
    browser.find(Locator::Css(css)).await.is_ok()
}

/// A namespace with the CRDs, a rollout object and a registry database.
struct World {
    client: kube::Client,
    namespace: String,
    database_url: String,
}

async fn world(prefix: &str) -> World {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let namespace = env.namespace(&client, prefix).await.unwrap();
    let database_url = rampart_testenv::shared_postgres().unwrap().new_database().unwrap();
    Registry::connect(&database_url).await.unwrap().migrate().await.unwrap();
    World { client, namespace, database_url }
}

fn rollout_object(name: &str, candidate: &str) -> ModelRollout {
    serde_json::from_value(json!({
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "ModelRollout",
        "metadata": {"name": name},
        "spec": {
            "model": "fraud-detector",
            "candidate": {"version": candidate, "artifact": {
                "uri": format!("s3://models/fraud-detector/{candidate}/"),
                "digest": format!("sha256:{}", "cd".repeat(32)),
                "signature": {"secretRef": {"name": format!("fraud-{candidate}-signature"), "key": "model.sig"}}
            }},
            "serving": {"deployment": {"name": "fraud-detector", "modelEnv": "MODEL_URI"}},
            "traffic": {"gatewayAPI": {"httpRoute": "fraud", "baselineBackend": "fraud", "canaryBackend": "fraud-canary"}},
            "steps": [
                {"setWeight": 10},
                {"analysis": {"duration": "10m", "interval": "30s"}},
                {"setWeight": 50},
                {"pause": {}},
                {"setWeight": 100}
            ],
            "analysis": {"metrics": [
                {"name": "accuracy", "kind": "ratio", "direction": "higherIsBetter", "tolerance": {"absolute": 0.01},
                 "queries": {"success": "sum(correct{version=\"{{version}}\"})", "total": "sum(labelled{version=\"{{version}}\"})"}},
                {"name": "error-rate", "kind": "ratio", "direction": "lowerIsBetter", "tolerance": {"absolute": 0.005},
                 "queries": {"success": "sum(errors{version=\"{{version}}\"})", "total": "sum(requests{version=\"{{version}}\"})"}}
            ]}
        }
    }))
    .unwrap()
}

async fn create(world: &World, name: &str, candidate: &str, status: Value) -> ModelRollout {
    let api: Api<ModelRollout> = Api::namespaced(world.client.clone(), &world.namespace);
    let created = api.create(&PostParams::default(), &rollout_object(name, candidate)).await.unwrap();
    set_status(world, name, status).await;
    created
}

async fn set_status(world: &World, name: &str, status: Value) {
    let api: Api<ModelRollout> = Api::namespaced(world.client.clone(), &world.namespace);
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({ "status": status }))).await.unwrap();
}

/// The statistics of look `i` of a canary whose accuracy is 4 points worse: the interval narrows and moves below
/// the -0.01 tolerance, the error rate stays level.
fn look(i: u32, failing: bool) -> Value {
    let n = f64::from(i + 1);
    let width = 0.06 / n.sqrt();
    let effect = -0.04;
    let verdict = if failing { "Fail" } else { "Continue" };
    json!({"metrics": [
        {"name": "accuracy", "verdict": verdict, "canary": "0.86", "baseline": "0.9", "effect": format!("{effect}"),
         "interval": format!("[{:.4}, {:.4}]", effect - width, effect + width), "pValue": "0.01",
         "samples": format!("{}/{}", 400 * (i + 1), 1600 * (i + 1)),
         "reason": if failing { "canary accuracy is worse than the baseline by more than 0.01" } else { "still collecting" }},
        {"name": "error-rate", "verdict": "Continue", "canary": "0.01", "baseline": "0.01", "effect": "0",
         "interval": format!("[{:.4}, {:.4}]", -0.02 / n.sqrt(), 0.02 / n.sqrt()), "pValue": "1",
         "samples": format!("{}/{}", 400 * (i + 1), 1600 * (i + 1)), "reason": "no difference yet"}
    ], "srm": {"name": "sample-ratio", "verdict": "Pass", "canary": "0.2", "baseline": "0.2", "effect": "0",
              "pValue": "0.8", "samples": format!("{}/{}", 400 * (i + 1), 1600 * (i + 1)), "reason": "split as configured"}})
}

/// Registry records of production v1 and a rollout of v3 that was rolled back after six looks, as the controller
/// writes them; returns the rollback reason.
async fn seed_rolled_back(world: &World, uid: &str, name: &str) -> String {
    let registry = Registry::connect(&world.database_url).await.unwrap();
    for version in ["v1", "v3"] {
        let digest = format!("sha256:{}", if version == "v1" { "ab" } else { "cd" }.repeat(32));
        registry
            .register_version(&NewVersion {
                model: "fraud-detector".into(),
                version: version.into(),
                uri: format!("s3://models/fraud-detector/{version}/"),
                digest: digest.clone(),
                ..NewVersion::default()
            })
            .await
            .unwrap();
        let verification = Verification { digest, signer_key_id: "team-ml".into(), ..Default::default() };
        registry.mark_verified("fraud-detector", version, &verification).await.unwrap();
    }
    registry
        .move_alias(&AliasMove {
            model: "fraud-detector".into(),
            alias: "production".into(),
            version: "v1".into(),
            actor: "test".into(),
            reason: "first release".into(),
            expected_current: None,
            rollout_uid: None,
        })
        .await
        .unwrap();
    registry
        .start_rollout(&NewRollout {
            model: "fraud-detector".into(),
            uid: uid.into(),
            namespace: world.namespace.clone(),
            name: name.into(),
            candidate_version: "v3".into(),
            baseline_version: Some("v1".into()),
        })
        .await
        .unwrap();
    registry
        .record_step(uid, &StepRecord { index: 0, canary_weight: 10, description: "setWeight 10".into() })
        .await
        .unwrap();
    for i in 0..6 {
        let failing = i == 5;
        registry
            .record_verdict(
                uid,
                &VerdictRecord {
                    step_index: 1,
                    evaluation: i,
                    verdict: if failing { "fail" } else { "continue" }.into(),
                    statistics: look(i, failing),
                },
            )
            .await
            .unwrap();
    }
    let reason = "step 1: analysis failed: accuracy: canary accuracy is worse than the baseline by more than 0.01";
    registry.record_rollback(uid, reason, &look(5, true)).await.unwrap();
    reason.to_string()
}

/// A kubeconfig for a ServiceAccount that may only read ModelRollouts in `namespace`.
async fn read_only_kubeconfig(world: &World, dir: &Path) -> PathBuf {
    let ns = &world.namespace;
    let accounts: Api<ServiceAccount> = Api::namespaced(world.client.clone(), ns);
    accounts
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "viewer"}})).unwrap())
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "rollout-viewer"},
        "rules": [{"apiGroups": ["rampart.dev"], "resources": ["modelrollouts"], "verbs": ["get", "list", "watch"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(world.client.clone(), ns).create(&PostParams::default(), &role).await.unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "rollout-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rollout-viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(world.client.clone(), ns).create(&PostParams::default(), &binding).await.unwrap();
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"expirationSeconds": 3600}});
    let token: Value = accounts.create_subresource("token", "viewer", &PostParams::default(), &request).await.unwrap();
    let token = token["status"]["token"].as_str().unwrap().to_string();
    let admin = rampart_testenv::shared().unwrap().kubeconfig_path();
    let mut kubeconfig: Value = serde_saphyr::from_str(&std::fs::read_to_string(admin).unwrap()).unwrap();
    kubeconfig["users"][0]["user"] = json!({"token": token});
    for context in kubeconfig["contexts"].as_array_mut().unwrap() {
        context["context"]["namespace"] = json!(ns);
    }
    let path = dir.join("viewer.kubeconfig");
    std::fs::write(&path, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
    path
}

fn progressing(weight: i32, step: i32) -> Value {
    json!({"phase": "Progressing", "canaryWeight": weight, "currentStep": step, "baselineVersion": "v1",
           "message": format!("step {step}: canary at {weight}%"),
           "checks": {"signature": {"result": "Passed", "signer": "team-ml", "message": "signed by team-ml"},
                      "contract": {"result": "Passed", "message": "outputs match"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollout_list_shows_phase_and_weight_changing_live() {
    let _one = BROWSER.lock().await;
    let world = world("dash-live").await;
    create(&world, "fraud-v2", "v2", progressing(10, 0)).await;
    let kubeconfig = rampart_testenv::shared().unwrap().kubeconfig_path().to_path_buf();
    let (_dashboard, url) = start_dashboard(&kubeconfig, Some(&world.database_url));
    let (_driver, browser) = start_browser().await;
    browser.goto(&url).await.unwrap();

    let row = format!("tr[data-rollout='{}/fraud-v2']", world.namespace);
    wait_for_text(&browser, &format!("{row} [data-field=phase]"), "initial phase", |t| t == "Progressing").await;
    wait_for_text(&browser, &format!("{row} [data-field=weight]"), "initial weight", |t| t == "10%").await;
    screenshot(&browser, "rollouts-before").await;

    // The controller moves on: the page follows without a reload.
    set_status(&world, "fraud-v2", json!({"phase": "Paused", "canaryWeight": 50, "currentStep": 3})).await;
    wait_for_text(&browser, &format!("{row} [data-field=phase]"), "live phase", |t| t == "Paused").await;
    wait_for_text(&browser, &format!("{row} [data-field=weight]"), "live weight", |t| t == "50%").await;
    wait_for_text(&browser, &format!("{row} [data-field=step]"), "live step", |t| t == "4/5").await;
    let navigations: i64 = browser
        .execute("return performance.getEntriesByType('navigation').length", vec![])
        .await
        .unwrap()
        .as_i64()
        .unwrap();
    assert_eq!(navigations, 1, "the page must update in place, not reload");
    screenshot(&browser, "rollouts-live").await;

    // Keyboard: `/` focuses the filter, typing filters, `j` and Enter open the rollout.
    browser.find(Locator::Css("body")).await.unwrap().send_keys("/").await.unwrap();
    browser.active_element().await.unwrap().send_keys("fraud-v2").await.unwrap();
    wait_for_text(&browser, "table.rollouts tbody", "filtered list", |t| t.contains("fraud-v2")).await;
    browser.execute("document.activeElement.blur()", vec![]).await.unwrap();
    browser.find(Locator::Css("body")).await.unwrap().send_keys("j").await.unwrap();
    browser.active_element().await.unwrap().send_keys("\u{E007}").await.unwrap(); // Enter
    wait_for_text(&browser, "h1", "rollout page by keyboard", |t| t.starts_with("fraud-v2")).await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_rollout_shows_the_failing_metric_chart_and_the_reason() {
    let _one = BROWSER.lock().await;
    let world = world("dash-rollback").await;
    let created = create(&world, "fraud-v3", "v3", json!({})).await;
    let uid = created.metadata.uid.clone().unwrap();
    let reason = seed_rolled_back(&world, &uid, "fraud-v3").await;
    let last = look(5, true);
    set_status(
        &world,
        "fraud-v3",
        json!({"phase": "RolledBack", "canaryWeight": 0, "currentStep": 1, "baselineVersion": "v1", "message": reason,
               "checks": {"signature": {"result": "Passed", "signer": "team-ml"}, "contract": {"result": "Passed"}},
               "analysis": {"step": 1, "verdict": "Fail", "looks": 6, "metrics": last["metrics"], "srm": last["srm"]},
               "history": [{"time": "2026-12-01T04:00:00Z", "phase": "Progressing", "step": 0, "message": "step 0: weight 10%"},
                           {"time": "2026-12-01T04:03:00Z", "phase": "RolledBack", "step": 1, "message": reason}]}),
    )
    .await;
    let kubeconfig = rampart_testenv::shared().unwrap().kubeconfig_path().to_path_buf();
    let (_dashboard, url) = start_dashboard(&kubeconfig, Some(&world.database_url));
    let (_driver, browser) = start_browser().await;
    browser.goto(&format!("{url}#/rollouts/{}/fraud-v3", world.namespace)).await.unwrap();

    wait_for_text(&browser, "#status-message", "rollback reason", |t| t.contains("analysis failed: accuracy")).await;
    let card = "section[data-metric=accuracy]";
    let class = browser.find(Locator::Css(card)).await.unwrap().attr("class").await.unwrap().unwrap_or_default();
    assert!(class.contains("failed"), "the failing metric is marked: {class}");
    wait_for_text(&browser, &format!("{card} [data-field=reason]"), "metric reason", |t| {
        t.contains("worse than the baseline by more than 0.01")
    })
    .await;
    // The chart is Chart.js's, with one point per recorded look for the effect, its band and the tolerance.
    let drawn = browser
        .execute(
            "const chart = window.Chart && Chart.getChart('chart-accuracy');
             return chart ? chart.data.datasets.map(d => [d.label, d.data.length, d.data[d.data.length - 1]]) : null;",
            vec![],
        )
        .await
        .unwrap();
    let datasets = drawn.as_array().unwrap_or_else(|| panic!("no Chart.js chart for accuracy: {drawn}"));
    let labels: Vec<&str> = datasets.iter().map(|d| d[0].as_str().unwrap()).collect();
    assert_eq!(labels, ["upper bound", "confidence band", "effect (canary − baseline)", "tolerance"]);
    for dataset in datasets {
        assert_eq!(dataset[1], 6, "six looks were recorded: {dataset}");
    }
    assert_eq!(datasets[3][2].as_f64(), Some(-0.01), "tolerance of a higher-is-better metric sits at -0.01");
    assert!(datasets[0][2].as_f64().unwrap() < -0.01, "the last look's band lies below the tolerance");
    let first_card: String = browser
        .execute("return document.querySelector('.metrics .card:nth-child(2)').dataset.metric", vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(first_card, "accuracy", "the failing metric comes first after the traffic split");
    assert!(exists(&browser, "canvas#chart-srm").await, "the sample-ratio chart is shown");
    assert!(!exists(&browser, "#action-promote").await, "an ended rollout offers no promote");
    assert!(exists(&browser, "#action-retry").await, "an admin may retry a rolled-back rollout");
    screenshot(&browser, "rollout-rolled-back").await;

    // The model page: the rollback with its reason, and the hash chain checked.
    browser.goto(&format!("{url}#/models/fraud-detector")).await.unwrap();
    wait_for_text(&browser, "#chain", "chain status", |t| t.contains("chain intact")).await;
    let row = wait_for_text(&browser, "tr[data-outcome=rolled_back]", "rollback row", |t| t.contains("fraud-v3")).await;
    assert!(row.contains("analysis failed: accuracy"), "{row}");
    wait_for_text(&browser, ".sub", "production", |t| t.contains("production: v1")).await;
    screenshot(&browser, "model").await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_smoke_run_shows_its_loss_curve_with_the_blow_up() {
    let _one = BROWSER.lock().await;
    let world = world("dash-smoke").await;
    create(&world, "fraud-v4", "v4", json!({})).await;
    // What the controller writes from the smoke-eval termination message: 40 points, the last ones not finite.
    let curve: Vec<Value> =
        (0..40u64)
            .map(|i| {
                if i < 35 {
                    json!({"step": i * 5 + 1, "loss": 1.0 + i as f64 * 0.5})
                } else {
                    json!({"step": i * 5 + 1})
                }
            })
            .collect();
    set_status(
        &world,
        "fraud-v4",
        json!({"phase": "Failed", "canaryWeight": 0, "baselineVersion": "v1",
               "message": "smoke-training check failed, no traffic was moved: loss is not finite at step 176",
               "checks": {"signature": {"result": "Passed", "signer": "team-ml"},
                          "smokeTraining": {"result": "Failed", "message": "loss is not finite at step 176",
                                            "job": "fraud-v4-smoke-training", "lossCurve": curve}}}),
    )
    .await;
    let kubeconfig = rampart_testenv::shared().unwrap().kubeconfig_path().to_path_buf();
    let (_dashboard, url) = start_dashboard(&kubeconfig, None);
    let (_driver, browser) = start_browser().await;
    browser.goto(&format!("{url}#/rollouts/{}/fraud-v4", world.namespace)).await.unwrap();
    let card = "section[data-metric=smoke-loss]";
    wait_for_text(&browser, card, "loss card", |t| t.contains("5 point(s) not finite")).await;
    let drawn = browser
        .execute(
            "const chart = window.Chart && Chart.getChart('chart-loss');
             return chart ? [chart.data.labels.length, chart.data.datasets[0].data[0], chart.data.datasets[0].data[39]] : null;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(drawn[0], 40, "Chart.js draws every point: {drawn}");
    assert_eq!(drawn[1].as_f64(), Some(1.0), "{drawn}");
    assert!(drawn[2].is_null(), "the blow-up is a gap: {drawn}");
    screenshot(&browser, "rollout-smoke-loss").await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_abort_appear_only_for_users_who_may_patch_the_rollout() {
    let _one = BROWSER.lock().await;
    let world = world("dash-rbac").await;
    create(&world, "fraud-v4", "v4", progressing(10, 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let viewer = read_only_kubeconfig(&world, dir.path()).await;
    let page = format!("#/rollouts/{}/fraud-v4", world.namespace);

    // The read-only user sees the rollout but no buttons (and no registry: the model history needs none here).
    let (_dashboard, url) = start_dashboard(&viewer, None);
    let (_driver, browser) = start_browser().await;
    browser.goto(&format!("{url}{page}")).await.unwrap();
    wait_for_text(&browser, "#read-only", "read-only note", |t| t.contains("Read-only")).await;
    for action in ["promote", "abort", "retry"] {
        assert!(!exists(&browser, &format!("#action-{action}")).await, "{action} shown to a read-only user");
    }
    screenshot(&browser, "rollout-read-only").await;
    // The list works for them too, limited to the namespace they may list.
    browser.goto(&url).await.unwrap();
    wait_for_text(&browser, ".sub", "namespace scope", |t| t.contains(&format!("namespace {}", world.namespace))).await;
    browser.close().await.unwrap();
    drop(_driver);
    drop(_dashboard);

    // The admin sees promote and abort, and promote writes the annotation the controller acts on.
    let admin = rampart_testenv::shared().unwrap().kubeconfig_path().to_path_buf();
    let (_dashboard, url) = start_dashboard(&admin, None);
    let (_driver, browser) = start_browser().await;
    browser.goto(&format!("{url}{page}")).await.unwrap();
    wait_for_text(&browser, "#action-promote", "promote button", |t| t == "promote").await;
    assert!(exists(&browser, "#action-abort").await);
    assert!(!exists(&browser, "#action-retry").await, "a running rollout cannot be retried");
    screenshot(&browser, "rollout-admin").await;
    let button = browser.find(Locator::Css("#action-promote")).await.unwrap();
    button.click().await.unwrap();
    wait_for_text(&browser, "#action-promote", "armed button", |t| t == "confirm promote").await;
    browser.find(Locator::Css("#action-promote")).await.unwrap().click().await.unwrap();
    wait_for_text(&browser, ".action-result", "promote result", |t| t.contains("promote requested")).await;
    let api: Api<ModelRollout> = Api::namespaced(world.client.clone(), &world.namespace);
    let rollout = api.get("fraud-v4").await.unwrap();
    assert!(
        rollout.metadata.annotations.unwrap_or_default().contains_key(rampart_api::ANNOTATION_PROMOTE),
        "the dashboard's promote wrote rampart.dev/promote"
    );
    browser.close().await.unwrap();
}

#[test]
fn the_dashboard_refuses_requests_for_another_host_and_intents_without_its_header() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kubeconfig = rampart_testenv::shared().unwrap().kubeconfig_path().to_path_buf();
    let (_dashboard, url) = start_dashboard(&kubeconfig, None);
    let address = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    runtime.block_on(async {
        let client = reqwest_like_get(&address, "/api/overview", "evil.example:80").await;
        assert!(client.starts_with("HTTP/1.1 403"), "{client}");
        let own = reqwest_like_get(&address, "/api/overview", &address).await;
        assert!(own.starts_with("HTTP/1.1 200"), "{own}");
        let post = raw_request(&address, &format!("POST /api/rollouts/default/x/promote HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")).await;
        assert!(post.starts_with("HTTP/1.1 403"), "{post}");
        let index = reqwest_like_get(&address, "/", &address).await;
        assert!(index.contains("Content-Security-Policy") || index.contains("content-security-policy"), "{index}");
        let chart = reqwest_like_get(&address, "/assets/chart.umd.min.js", &address).await;
        assert!(chart.contains("Chart"), "the vendored Chart.js is served from the binary");
        assert!(!chart.contains("RAMPART_CHARTS_MISSING"), "this build has no Chart.js: install npm and rebuild");
    });
}

async fn reqwest_like_get(address: &str, path: &str, host: &str) -> String {
    raw_request(address, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")).await
}

/// One HTTP/1.1 exchange over a plain socket, so the test controls the Host header exactly.
async fn raw_request(address: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}
