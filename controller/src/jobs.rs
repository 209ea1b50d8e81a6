//! Check Jobs before traffic: the artifact verification (`rampart-check fetch`: every file at the URI against the
//! signed manifest), the tensor-contract check (`rampart-check contract`) and the smoke-training run (the user's
//! training image, judged by `rampart-check smoke-eval`). Jobs run under the ServiceAccount named in the controller's
//! configuration, never the controller's own, with `backoffLimit: 0`, a deadline and a TTL; the verdict comes back
//! through the check container's termination message. When the candidate is signed, every check reads only the copy
//! a `rampart-check fetch` init container verified into an emptyDir ([`fetch_init_container`]), never the URI.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use rampart_api::ModelRollout;
use rampart_api::v1alpha1::{LossPoint, SmokeTraining};
use rampart_checks::artifact::MODEL_DIR;
use rampart_checks::smoke::termination::{FileRead, TerminationMessage};
use serde_json::json;

use crate::config::ControllerConfig;
use crate::serving::owner_reference;

/// Label on check Jobs and their Pods naming the rollout.
pub const ROLLOUT_LABEL: &str = "rampart.dev/rollout";
/// Label on check Jobs and their Pods naming the check (`contract` or `smoke-training`).
pub const CHECK_LABEL: &str = "rampart.dev/check";
/// Where the smoke-training container writes its JSON lines, shared with the evaluating container.
pub const METRICS_FILE: &str = "/rampart/metrics.jsonl";

/// Name of the fetching init container in check Jobs and serving pods.
pub const FETCH_CONTAINER: &str = "rampart-fetch";
/// Name of the volume holding the verified copy.
pub const MODEL_VOLUME: &str = "rampart-model";

/// Which check a Job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The artifact's files fetched and checked against the signed manifest.
    Artifact,
    /// Tensor contract and residual shapes.
    Contract,
    /// Smoke training.
    SmokeTraining,
}

impl Check {
    /// The check's name in labels, Job names and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Artifact => "artifact",
            Check::Contract => "contract",
            Check::SmokeTraining => "smoke-training",
        }
    }
}

/// Where a check Job stands.
#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    /// Not finished.
    Running,
    /// Finished and the check passed; the summary, and for the artifact check the files it read (empty when they
    /// did not fit the termination message) and the bundle it was checked against (filled in by the observer).
    Passed(String, Vec<FileRead>, Option<String>),
    /// Finished and the check failed, or the Job failed; why.
    Failed(String),
}

/// The Job's name: `<rollout>-<check>`, cut to 63 characters.
pub fn job_name(rollout: &str, check: Check) -> String {
    let suffix = format!("-{}", check.as_str());
    let keep = 63usize.saturating_sub(suffix.len());
    let base: String = rollout.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end_matches('-'))
}

/// True when the allow-list allows `image`, compared by parsed reference (see [`crate::images`]; an empty list
/// allows nothing).
pub fn image_allowed(image: &str, allow_list: &[String]) -> bool {
    crate::images::allowed(image, allow_list)
}

fn labels(rollout: &ModelRollout, check: Check) -> BTreeMap<String, String> {
    BTreeMap::from([
        (ROLLOUT_LABEL.to_string(), crate::labels::label_value(&rollout.name_any())),
        (CHECK_LABEL.to_string(), check.as_str().to_string()),
    ])
}

fn job_shell(
    rollout: &ModelRollout,
    check: Check,
    deadline_seconds: i64,
    pod_spec: serde_json::Value,
) -> serde_json::Value {
    let labels = labels(rollout, check);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(&rollout.name_any(), check),
            "labels": labels,
            "ownerReferences": [owner_reference(rollout)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_seconds,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec,
            },
        },
    })
}

/// What a fetching init container needs: everything comes from the controller (bundle it read, keys it trusts), the
/// rollout only names the URI, the model and a credentials Secret of its own namespace.
#[derive(Clone, Debug)]
pub struct ArtifactFetch {
    /// The artifact URI.
    pub uri: String,
    /// The name the signed statement must carry.
    pub model_name: String,
    /// The digest the rollout names.
    pub digest: String,
    /// The bundle JSON.
    pub bundle: String,
    /// The controller's trusted public keys, PEM.
    pub trusted_keys_pem: String,
    /// A Secret in the rollout's namespace whose keys become the fetch container's environment.
    pub credentials_secret: Option<String>,
    /// The model is a single file.
    pub single_file: bool,
}

impl ArtifactFetch {
    /// The fetch for this rollout's candidate, from the signer the start observed (None: unsigned, nothing to fetch).
    pub fn for_candidate(
        rollout: &ModelRollout,
        signer: &crate::verify::Signer,
        trusted: &[rampart_checks::signing::TrustedKey],
    ) -> Result<Self, String> {
        let mut trusted_keys_pem = String::new();
        for key in trusted {
            trusted_keys_pem.push_str(&key.to_pem()?);
        }
        let artifact = &rollout.spec.candidate.artifact;
        Ok(Self {
            uri: artifact.uri.clone(),
            model_name: crate::verify::signed_name(rollout).to_string(),
            digest: artifact.digest.clone(),
            bundle: signer.bundle.clone(),
            trusted_keys_pem,
            credentials_secret: artifact.credentials.as_ref().map(|c| c.secret_ref.name.clone()),
            single_file: signer.single_file,
        })
    }

    /// Where consumers load the verified copy from.
    pub fn local_path(&self) -> String {
        rampart_checks::artifact::local_model_path(MODEL_DIR, &self.uri, self.single_file)
    }

    fn args(&self) -> Vec<String> {
        vec![
            "fetch".into(),
            "--model".into(),
            self.model_name.clone(),
            "--expected-digest".into(),
            self.digest.clone(),
            "--to".into(),
            MODEL_DIR.into(),
            "--format".into(),
            "json".into(),
            "--termination-log".into(),
            "/dev/termination-log".into(),
            self.uri.clone(),
        ]
    }
}

/// The init container that fetches and verifies the artifact into the `rampart-model` volume. Keys and bundle travel
/// in its environment, written by the controller into a pod spec the rollout's author cannot change; the credentials
/// Secret (the rollout's own namespace) feeds only this container.
pub fn fetch_init_container(fetch: &ArtifactFetch, image: &str) -> serde_json::Value {
    let mut container = json!({
        "name": FETCH_CONTAINER,
        "image": image,
        "args": fetch.args(),
        "env": [
            {"name": "RAMPART_TRUSTED_KEYS", "value": fetch.trusted_keys_pem},
            {"name": "RAMPART_BUNDLE", "value": fetch.bundle},
        ],
        "terminationMessagePolicy": "File",
        "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": MODEL_DIR}],
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false},
        "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    });
    if let Some(secret) = &fetch.credentials_secret {
        container["envFrom"] = json!([{"secretRef": {"name": secret}}]);
    }
    container
}

/// The artifact-verification Job: `rampart-check fetch` of every file at the URI against the signed manifest. It runs
/// before any other check and before traffic, so a trusted bundle reused with other bytes fails here.
pub fn artifact_job(rollout: &ModelRollout, config: &ControllerConfig, fetch: &ArtifactFetch) -> Result<Job, String> {
    let mut container = fetch_init_container(fetch, &config.check_image);
    container["name"] = json!("artifact");
    let pod = json!({
        "restartPolicy": "Never",
        "serviceAccountName": config.check_service_account,
        "automountServiceAccountToken": false,
        "containers": [container],
        "volumes": [{"name": MODEL_VOLUME, "emptyDir": {}}],
    });
    serde_json::from_value(job_shell(rollout, Check::Artifact, 1800, pod)).map_err(|err| err.to_string())
}

/// The contract-check Job: `rampart-check contract` on the candidate (the verified copy when signed, else the URI as a
/// path the check image can read) and the baseline URI (a path the check image can read).
pub fn contract_job(
    rollout: &ModelRollout,
    config: &ControllerConfig,
    baseline_uri: &str,
    fetch: Option<&ArtifactFetch>,
) -> Result<Job, String> {
    let spec = &rollout.spec;
    let contract = spec.checks.as_ref().and_then(|c| c.contract.clone()).unwrap_or_default();
    let batch_sizes: Vec<String> = contract.batch_sizes.unwrap_or_default().iter().map(|b| b.0.to_string()).collect();
    let candidate = fetch.map(ArtifactFetch::local_path).unwrap_or_else(|| spec.candidate.artifact.uri.clone());
    let mut args = vec![
        "contract".to_string(),
        "--candidate".into(),
        candidate,
        "--baseline".into(),
        baseline_uri.to_string(),
        "--format".into(),
        "json".into(),
        "--termination-log".into(),
        "/dev/termination-log".into(),
    ];
    if !batch_sizes.is_empty() {
        args.push("--batch-sizes".into());
        args.push(batch_sizes.join(","));
    }
    if contract.allow_new_outputs == Some(false) {
        args.push("--exact-outputs".into());
    }
    let mut pod = json!({
        "restartPolicy": "Never",
        "serviceAccountName": config.check_service_account,
        "automountServiceAccountToken": false,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
        "containers": [{
            "name": "contract",
            "image": config.check_image,
            "args": args,
            "terminationMessagePolicy": "File",
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
        }],
    });
    if let Some(fetch) = fetch {
        with_verified_copy(&mut pod, fetch, &config.check_image, &["contract"]);
    }
    serde_json::from_value(job_shell(rollout, Check::Contract, 1800, pod)).map_err(|err| err.to_string())
}

/// The smoke-training Job: the user's image trains (init container) writing JSON lines to a shared file, then
/// `rampart-check smoke-eval` judges them with the rollout's thresholds. Resources, node selector and tolerations
/// (e.g. `nvidia.com/gpu: 1` on a tainted GPU pool) go to the training container's pod as given.
pub fn smoke_job(
    rollout: &ModelRollout,
    smoke: &SmokeTraining,
    config: &ControllerConfig,
    fetch: Option<&ArtifactFetch>,
) -> Result<Job, String> {
    // Re-checked for every Job built: `spec.checks` stays editable after the start gate passed.
    crate::images::check_smoke_image(&smoke.image, &config.smoke_image_allow_list)?;
    let timeout = smoke
        .timeout
        .as_deref()
        .map(rampart_api::duration::parse_duration)
        .transpose()
        .map_err(|err| err.to_string())?
        .unwrap_or(std::time::Duration::from_secs(900));
    let thresholds = smoke.thresholds.clone().unwrap_or_default();
    let mut eval_args = vec![
        "smoke-eval".to_string(),
        "--metrics".into(),
        METRICS_FILE.into(),
        "--termination-log".into(),
        "/dev/termination-log".into(),
    ];
    let mut flag = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            eval_args.push(format!("--{name}"));
            eval_args.push(value);
        }
    };
    flag("window", thresholds.window.map(|w| w.to_string()));
    flag("max-loss-ratio", thresholds.max_loss_ratio.map(|v| v.to_string()));
    flag("max-grad-norm", thresholds.max_grad_norm.map(|v| v.to_string()));
    flag("max-step-time", thresholds.max_step_time_seconds.map(|v| v.to_string()));
    flag("max-gpu-mem", thresholds.max_gpu_memory_bytes.map(|v| v.to_string()));
    let mut trainer = json!({
        "name": "train",
        "image": smoke.image,
        "env": [
            {"name": "RAMPART_METRICS_FILE", "value": METRICS_FILE},
            {"name": "RAMPART_MODEL_URI", "value": fetch.map(ArtifactFetch::local_path).unwrap_or_else(|| rollout.spec.candidate.artifact.uri.clone())},
            {"name": "RAMPART_STEPS", "value": smoke.steps.unwrap_or(50).to_string()},
        ],
        "volumeMounts": [{"name": "rampart", "mountPath": "/rampart"}],
    });
    if let Some(command) = &smoke.command {
        trainer["command"] = json!(command);
    }
    if let Some(args) = &smoke.args {
        trainer["args"] = json!(args);
    }
    if let Some(resources) = &smoke.resources {
        trainer["resources"] = serde_json::to_value(resources).map_err(|err| err.to_string())?;
    }
    let mut pod = json!({
        "restartPolicy": "Never",
        "serviceAccountName": config.check_service_account,
        "automountServiceAccountToken": false,
        "initContainers": [trainer],
        "containers": [{
            "name": "smoke-eval",
            "image": config.check_image,
            "args": eval_args,
            "terminationMessagePolicy": "File",
            "volumeMounts": [{"name": "rampart", "mountPath": "/rampart"}],
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
        }],
        "volumes": [{"name": "rampart", "emptyDir": {}}],
    });
    if let Some(fetch) = fetch {
        with_verified_copy(&mut pod, fetch, &config.check_image, &["train"]);
    }
    if let Some(selector) = &smoke.node_selector {
        pod["nodeSelector"] = json!(selector);
    }
    if let Some(tolerations) = &smoke.tolerations {
        pod["tolerations"] = serde_json::to_value(tolerations).map_err(|err| err.to_string())?;
    }
    let deadline = i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX);
    serde_json::from_value(job_shell(rollout, Check::SmokeTraining, deadline, pod)).map_err(|err| err.to_string())
}

/// Adds the fetching init container (first, so it runs before any other init container), the `rampart-model`
/// volume, and a read-only mount of the verified copy to the named containers (init or regular) of a pod spec.
pub fn with_verified_copy(pod: &mut serde_json::Value, fetch: &ArtifactFetch, image: &str, consumers: &[&str]) {
    let mount = json!({"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": true});
    for list in ["initContainers", "containers"] {
        if let Some(containers) = pod.get_mut(list).and_then(|c| c.as_array_mut()) {
            for container in containers.iter_mut() {
                let named = container.get("name").and_then(|n| n.as_str()).is_some_and(|n| consumers.contains(&n));
                if named {
                    let mounts =
                        container.as_object_mut().map(|c| c.entry("volumeMounts").or_insert_with(|| json!([])));
                    if let Some(serde_json::Value::Array(mounts)) = mounts {
                        mounts.push(mount.clone());
                    }
                }
            }
        }
    }
    let init = pod.as_object_mut().map(|p| p.entry("initContainers").or_insert_with(|| json!([])));
    if let Some(serde_json::Value::Array(init)) = init {
        init.insert(0, fetch_init_container(fetch, image));
    }
    let volumes = pod.as_object_mut().map(|p| p.entry("volumes").or_insert_with(|| json!([])));
    if let Some(serde_json::Value::Array(volumes)) = volumes {
        volumes.push(json!({"name": MODEL_VOLUME, "emptyDir": {}}));
    }
}

/// Creates the Job unless it exists already (a restart must not start a check twice).
pub async fn ensure_job(client: &kube::Client, namespace: &str, job: &Job) -> Result<(), kube::Error> {
    match Api::<Job>::namespaced(client.clone(), namespace).create(&PostParams::default(), job).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}

/// What a Job runs, compared field by field: per container (init containers first) its name, image, command,
/// arguments and environment, and the ServiceAccount. Fields the API server fills in (pull policy, termination
/// message path) are left out, so a Job Rampart created compares equal to the one it would create now.
fn what_runs(job: &Job) -> serde_json::Value {
    let Some(pod) = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else { return serde_json::Value::Null };
    what_runs_in(pod)
}

/// What a pod spec runs: each container's and init container's name, image, command, arguments and environment, and
/// the ServiceAccount (`default` when none is named, as the API server fills it in).
fn what_runs_in(pod: &k8s_openapi::api::core::v1::PodSpec) -> serde_json::Value {
    let describe = |c: &k8s_openapi::api::core::v1::Container| json!({"name": c.name, "image": c.image, "command": c.command, "args": c.args, "env": c.env});
    let init: Vec<_> = pod.init_containers.iter().flatten().map(describe).collect();
    let main: Vec<_> = pod.containers.iter().map(describe).collect();
    let account = pod.service_account_name.as_deref().unwrap_or("default");
    json!({"initContainers": init, "containers": main, "serviceAccountName": account})
}

/// Whether the Job named like this check runs what Rampart runs for it now: a Job someone else created under that
/// name (or edited) must not count as the check. Says which part differs.
pub fn runs_the_check(wanted: &Job, found: &Job) -> Result<(), String> {
    let (wanted, found) = (what_runs(wanted), what_runs(found));
    if wanted == found {
        return Ok(());
    }
    let part = ["serviceAccountName", "initContainers", "containers"]
        .into_iter()
        .find(|key| wanted[key] != found[key])
        .unwrap_or("pod template");
    Err(format!("what it runs differs from what Rampart runs for this check (first in: {part})"))
}

/// Reads where the Job stands and, once it finished, the verdict from its Pod's termination message. With `wanted`
/// (the Job Rampart would create now), a Job under this name that runs anything else is reported as a failed check,
/// never read as a verdict.
pub async fn job_state(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    wanted: Result<&Job, &str>,
) -> Result<(JobState, Vec<LossPoint>), kube::Error> {
    let job = Api::<Job>::namespaced(client.clone(), namespace).get(name).await?;
    let mismatch = match wanted {
        Ok(wanted) => runs_the_check(wanted, &job).err(),
        Err(why) => Some(format!("Rampart cannot tell what it should run ({why})")),
    };
    if let Some(why) = mismatch {
        return Ok((
            JobState::Failed(format!(
                "Job {namespace}/{name} is not the check Rampart started: {why}; delete it, then rampart retry"
            )),
            Vec::new(),
        ));
    }
    let runs = what_runs(&job);
    let status = job.status.unwrap_or_default();
    let succeeded = status.succeeded.unwrap_or(0) > 0;
    let failed = status.failed.unwrap_or(0) > 0;
    let condition_failed = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| (c.type_ == "Failed" || c.type_ == "FailureTarget") && c.status == "True");
    if !succeeded && !failed && condition_failed.is_none() {
        return Ok((JobState::Running, Vec::new()));
    }
    // This Job's pods by its uid (the Job controller's `batch.kubernetes.io/controller-uid` label), so pods left by an
    // earlier Job of the same name (a retry) are never read as this one's verdict.
    let selector = match job.metadata.uid.as_deref() {
        Some(uid) => format!("batch.kubernetes.io/controller-uid={uid}"),
        None => format!("job-name={name}"),
    };
    let pods = Api::<Pod>::namespaced(client.clone(), namespace).list(&ListParams::default().labels(&selector)).await?;
    // Labels can be written by anyone who creates Pods: only a pod that runs exactly the Job's template (so its
    // termination message comes from Rampart's check container) is read.
    let pods: Vec<Pod> =
        pods.items.into_iter().filter(|pod| pod.spec.as_ref().is_some_and(|spec| what_runs_in(spec) == runs)).collect();
    // A failed init container (the fetch refused the artifact) speaks first; then the check container.
    let message = pods.iter().find_map(|pod| {
        let status = pod.status.as_ref()?;
        let failed_init = status.init_container_statuses.iter().flatten().find_map(|c| {
            let terminated = c.state.as_ref()?.terminated.as_ref()?;
            if terminated.exit_code == 0 {
                return None;
            }
            serde_json::from_str::<TerminationMessage>(terminated.message.as_deref()?.trim()).ok()
        });
        failed_init.or_else(|| {
            status.container_statuses.iter().flatten().find_map(|c| {
                let text = c.state.as_ref()?.terminated.as_ref()?.message.clone()?;
                serde_json::from_str::<TerminationMessage>(text.trim()).ok()
            })
        })
    });
    let curve = message
        .as_ref()
        .map(|m| {
            m.curve
                .iter()
                .map(|&(step, loss)| LossPoint { step: i64::try_from(step).unwrap_or(i64::MAX), loss })
                .collect()
        })
        .unwrap_or_default();
    let state = match message {
        Some(verdict) if verdict.passed && succeeded => JobState::Passed(verdict.summary, verdict.files, None),
        Some(verdict) => {
            let mut text = verdict.summary;
            if !verdict.reasons.is_empty() {
                text = format!("{text}: {}", verdict.reasons.join("; "));
            }
            JobState::Failed(text)
        }
        None => {
            let why = condition_failed
                .and_then(|c| c.message.or(c.reason))
                .unwrap_or_else(|| "the Job failed without a verdict (see its Pod's logs)".into());
            if succeeded {
                JobState::Failed(format!("the Job succeeded but left no verdict in its termination message: {why}"))
            } else {
                JobState::Failed(why)
            }
        }
    };
    Ok((state, curve))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_smoke_job_is_built_only_for_an_image_on_the_allow_list_whatever_the_start_gate_saw() {
        let rollout = |image: &str| -> ModelRollout {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "rampart.dev/v1alpha1", "kind": "ModelRollout",
                "metadata": {"name": "fraud-v2", "namespace": "ml", "uid": "uid-1"},
                "spec": {
                    "model": "fraud",
                    "candidate": {"version": "v2", "artifact": {"uri": "s3://models/fraud/v2/", "digest": format!("sha256:{}", "a".repeat(64))}},
                    "checks": {"insecureSkipSignature": true, "smokeTraining": {"image": image}},
                    "serving": {"deployment": {"name": "fraud", "modelEnv": "MODEL_URI"}},
                    "traffic": {"gatewayAPI": {"httpRoute": "fraud", "baselineBackend": "fraud", "canaryBackend": "fraud-canary"}},
                    "steps": [{"setWeight": 100}],
                }
            }))
            .unwrap()
        };
        let config =
            ControllerConfig { smoke_image_allow_list: vec!["registry.example.com/ml".into()], ..Default::default() };
        let smoke = |r: &ModelRollout| r.spec.checks.clone().unwrap().smoke_training.unwrap();
        let swapped = rollout("docker.io/someone/miner:latest");
        let refused = smoke_job(&swapped, &smoke(&swapped), &config, None).unwrap_err();
        assert!(refused.contains("docker.io/someone/miner:latest") && refused.contains("not allowed"), "{refused}");
        let allowed = rollout("registry.example.com/ml/trainer:v1");
        assert!(smoke_job(&allowed, &smoke(&allowed), &config, None).is_ok());
    }

    #[test]
    fn job_names_fit_in_63_characters() {
        assert_eq!(job_name("fraud-v8", Check::Contract), "fraud-v8-contract");
        let long = "x".repeat(80);
        let name = job_name(&long, Check::SmokeTraining);
        assert!(name.len() <= 63 && name.ends_with("-smoke-training"), "{name}");
    }

    fn job(image: &str, account: &str) -> Job {
        serde_json::from_value(json!({"spec": {"template": {"spec": {
            "serviceAccountName": account,
            "initContainers": [{"name": "fetch", "image": image, "args": ["fetch", "s3://m/"]}],
            "containers": [{"name": "contract", "image": image, "args": ["contract", "--candidate", "/m"],
                            "env": [{"name": "AWS_REGION", "value": "eu-west-1"}]}],
        }}}}))
        .unwrap()
    }

    #[test]
    fn a_job_counts_as_the_check_only_when_it_runs_what_rampart_runs() {
        let wanted = job("rampart/rampart-check:1", "rampart-checks");
        // As the API server stores it: defaults filled in, which do not change what runs.
        let mut stored = serde_json::to_value(&wanted).unwrap();
        stored["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        stored["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = json!("/dev/termination-log");
        stored["spec"]["template"]["spec"]["dnsPolicy"] = json!("ClusterFirst");
        assert_eq!(runs_the_check(&wanted, &serde_json::from_value(stored).unwrap()), Ok(()));

        let other_image = job("busybox:1.36", "rampart-checks");
        let err = runs_the_check(&wanted, &other_image).unwrap_err();
        assert!(err.contains("initContainers"), "{err}");
        let other_account = job("rampart/rampart-check:1", "default");
        assert!(runs_the_check(&wanted, &other_account).unwrap_err().contains("serviceAccountName"));
        let mut other_args = serde_json::to_value(&wanted).unwrap();
        other_args["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["sh", "-c", "true"]);
        let err = runs_the_check(&wanted, &serde_json::from_value(other_args).unwrap()).unwrap_err();
        assert!(err.contains("containers"), "{err}");
    }

    #[test]
    fn only_listed_image_prefixes_are_allowed() {
        let allow = vec!["registry.example.com/ml/".to_string()];
        assert!(image_allowed("registry.example.com/ml/trainer:v1", &allow));
        assert!(!image_allowed("docker.io/evil/miner:latest", &allow));
        assert!(!image_allowed("registry.example.com/ml/x", &[]));
        assert!(!image_allowed("anything", &[String::new()]));
    }
}
