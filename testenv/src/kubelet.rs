//! Plays the kubelet for what `rampart-check fetch` guards, with the real binary (for controller tests and the demo,
//! where no kubelet runs): an artifact-verification Job runs
//! its container's arguments and environment (credentials Secrets resolved as `envFrom` would) and completes with the
//! termination message it wrote; a Deployment whose pod template has the `rampart-fetch` init container runs that
//! container first, and only a pod whose fetch succeeded is reported rolled out, otherwise a Pod is left with the init
//! container terminated, its exit code and message, as a kubelet reports it. The verified copy goes to a temporary
//! directory instead of the pod's volume.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

/// The name of the fetching init container Rampart puts in check Jobs and serving pods.
pub const FETCH_CONTAINER: &str = "rampart-fetch";

/// What a container run ended with.
#[derive(Clone, Debug)]
pub struct Ran {
    pub exit_code: i32,
    pub message: String,
    pub stderr: String,
}

/// Runs a `rampart-check` container as the kubelet would: its args, its env, its `envFrom` Secrets; the verified copy
/// and the termination log in a temporary directory.
pub async fn run_container(binary: &Path, client: &kube::Client, namespace: &str, container: &Container) -> Ran {
    match tempfile::tempdir() {
        Ok(dir) => run_container_in(binary, client, namespace, container, &dir.path().join("model")).await,
        Err(err) => failed_to_run(err.to_string()),
    }
}

fn failed_to_run(why: String) -> Ran {
    Ran { exit_code: 2, message: String::new(), stderr: why }
}

/// [`run_container`] with the pod's `/rampart/model` volume at `model_dir` (shared by the containers of one pod).
pub async fn run_container_in(
    binary: &Path,
    client: &kube::Client,
    namespace: &str,
    container: &Container,
    model_dir: &Path,
) -> Ran {
    let Ok(dir) = tempfile::tempdir() else { return failed_to_run("no temporary directory".into()) };
    let log = dir.path().join("termination-log");
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for source in container.env_from.iter().flatten() {
        if let Some(secret) = &source.secret_ref {
            match Api::<Secret>::namespaced(client.clone(), namespace).get(&secret.name).await {
                Ok(secret) => {
                    for (key, value) in secret.data.unwrap_or_default() {
                        env.insert(key, String::from_utf8_lossy(&value.0).into_owned());
                    }
                }
                // As a kubelet: a missing Secret keeps the container from starting.
                Err(err) => return failed_to_run(format!("Secret {}: {err}", secret.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        env.insert(var.name.clone(), var.value.clone().unwrap_or_default());
    }
    // The pod's volumes: `/rampart/model` (the verified copy) is `model_dir`, the rest of `/rampart` its parent.
    let volume_root = model_dir.parent().unwrap_or(model_dir).display().to_string();
    let local = |text: &str| -> String {
        if text == "/dev/termination-log" {
            log.display().to_string()
        } else if let Some(rest) = text.strip_prefix("/rampart") {
            format!("{volume_root}{rest}")
        } else {
            text.to_string()
        }
    };
    let env: BTreeMap<String, String> = env.into_iter().map(|(k, v)| (k, local(&v))).collect();
    // As a kubelet: `$(VAR)` in the arguments is the container's variable; the image's binary is `rampart-check`, so
    // a command naming it runs this binary with the rest of the command before the arguments.
    let expand = |arg: &str| -> String {
        let mut arg = local(arg);
        for (name, value) in &env {
            arg = arg.replace(&format!("$({name})"), value);
        }
        arg
    };
    let command_rest: Vec<String> = container.command.iter().flatten().skip(1).cloned().collect();
    let args: Vec<String> = command_rest.iter().chain(container.args.iter().flatten()).map(|arg| expand(arg)).collect();
    let output = tokio::process::Command::new(binary)
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .output()
        .await;
    match output {
        Ok(output) => Ran {
            exit_code: output.status.code().unwrap_or(-1),
            message: std::fs::read_to_string(&log).unwrap_or_default(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
        Err(err) => failed_to_run(format!("{}: {err}", binary.display())),
    }
}

/// Completes a Job as the Job controller and kubelet would: a Pod whose `container` terminated with `ran`, then the
/// Job's status. `init` names an init container that ran first (and, when it failed, is where the message is).
pub async fn complete_job(
    client: &kube::Client,
    namespace: &str,
    job: &str,
    container: &str,
    ran: &Ran,
) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    // As the Job controller: the pod runs the Job's template, is labelled with the Job's uid and named after it, so a
    // Job recreated under the same name (a retry) gets its own pod.
    let found = Api::<Job>::namespaced(client.clone(), namespace).get(job).await?;
    let uid = found.metadata.uid.clone().unwrap_or_default();
    let spec = found.spec.and_then(|s| s.template.spec).unwrap_or_default();
    // No controller-manager creates ServiceAccounts here, and the API server admits no Pod without its account.
    ensure_service_account(client, namespace, spec.service_account_name.as_deref().unwrap_or("default")).await;
    let pod_name = format!("{job}-{}", uid.get(..8).unwrap_or("k1"));
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": pod_name, "labels": {"job-name": job, "batch.kubernetes.io/controller-uid": uid}},
        "spec": spec,
    }))
    .map_err(kube::Error::SerdeError)?;
    pods.create(&PostParams::default(), &pod).await?;
    let ok = ran.exit_code == 0;
    let status = json!({"status": {"phase": if ok { "Succeeded" } else { "Failed" }, "containerStatuses": [{
        "name": container, "image": "rampart/rampart-check:test", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": ran.exit_code, "reason": if ok { "Completed" } else { "Error" }, "message": ran.message}},
    }]}});
    pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    job_finished(client, namespace, job, ok).await
}

/// The Job's status once its pod ended.
pub async fn job_finished(client: &kube::Client, namespace: &str, job: &str, ok: bool) -> Result<(), kube::Error> {
    let now = jiff::Timestamp::now().to_string();
    let job_status = if ok {
        json!({"status": {"succeeded": 1, "startTime": now, "completionTime": now,
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}})
    } else {
        json!({"status": {"failed": 1, "startTime": now,
            "conditions": [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
                           {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}})
    };
    Api::<Job>::namespaced(client.clone(), namespace)
        .patch_status(job, &PatchParams::default(), &Patch::Merge(&job_status))
        .await
        .map(drop)
}

/// The fetching init container of a pod template, if it has one.
pub fn fetch_container(pod: &k8s_openapi::api::core::v1::PodSpec) -> Option<Container> {
    pod.init_containers.iter().flatten().find(|c| c.name == FETCH_CONTAINER).cloned()
}

/// The loop, in `namespace` (or all namespaces): artifact Jobs run with `binary` and complete; Deployments roll out
/// when their fetch (if any) verifies, and otherwise leave a Pod whose init container failed.
pub async fn play(client: kube::Client, namespace: Option<String>, binary: PathBuf) {
    let (deployments, jobs): (Api<Deployment>, Api<Job>) = match &namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let mut fetched: HashMap<(String, String, i64), Ran> = HashMap::new();
    loop {
        let artifact_jobs = ListParams::default().labels("rampart.dev/check=artifact");
        if let Ok(list) = jobs.list(&artifact_jobs).await {
            for job in list.items {
                if job.status.as_ref().is_some_and(|s| s.succeeded.is_some() || s.failed.is_some()) {
                    continue;
                }
                let ns = job.namespace().unwrap_or_default();
                let container = job
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.spec.as_ref())
                    .and_then(|p| p.containers.first().cloned());
                let Some(container) = container else { continue };
                let ran = run_container(&binary, &client, &ns, &container).await;
                let _ = complete_job(&client, &ns, &job.name_any(), &container.name, &ran).await;
            }
        }
        if let Ok(list) = deployments.list(&ListParams::default()).await {
            for deployment in list.items {
                let Some(status) = crate::rolled_out_status(&deployment) else { continue };
                let ns = deployment.namespace().unwrap_or_default();
                let name = deployment.name_any();
                let generation = deployment.metadata.generation.unwrap_or(0);
                let template = deployment.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
                if let Some(fetch) = template.spec.as_ref().and_then(fetch_container) {
                    let key = (ns.clone(), name.clone(), generation);
                    if !fetched.contains_key(&key) {
                        let ran = run_container(&binary, &client, &ns, &fetch).await;
                        if ran.exit_code != 0 {
                            failed_pod(&client, &ns, &name, generation, &template, &ran).await;
                        }
                        fetched.insert(key.clone(), ran);
                    }
                    if fetched.get(&key).is_some_and(|ran| ran.exit_code != 0) {
                        continue;
                    }
                }
                let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
                let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A Pod of the Deployment whose fetch init container terminated with `ran` (and keeps the pod from starting).
async fn failed_pod(
    client: &kube::Client,
    namespace: &str,
    deployment: &str,
    generation: i64,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    ran: &Ran,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let name = format!("{deployment}-g{generation}");
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let spec = template.spec.clone().unwrap_or_default();
    ensure_service_account(client, namespace, spec.service_account_name.as_deref().unwrap_or("default")).await;
    let Ok(pod) = serde_json::from_value::<Pod>(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
    else {
        return;
    };
    if pods.create(&PostParams::default(), &pod).await.is_err() {
        return;
    }
    let status = json!({"status": {"phase": "Pending", "initContainerStatuses": [{
        "name": FETCH_CONTAINER, "image": "rampart/rampart-check:test", "imageID": "",
        "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": ran.exit_code, "reason": "Error", "message": ran.message}},
    }]}});
    let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
}

/// Creates a ServiceAccount unless it exists (what the controller-manager would do for `default`).
async fn ensure_service_account(client: &kube::Client, namespace: &str, name: &str) {
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), namespace);
    if let Ok(account) = serde_json::from_value(json!({"metadata": {"name": name}})) {
        let _ = accounts.create(&PostParams::default(), &account).await;
    }
}
