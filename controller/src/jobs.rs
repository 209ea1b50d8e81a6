//! Check Jobs before traffic: the tensor-contract check (`rampart-check contract`) and the smoke-training run (the
//! user's training image, judged by `rampart-check smoke-eval`). Jobs run under the ServiceAccount named in the
//! controller's configuration, never the controller's own, with `backoffLimit: 0`, a deadline and a TTL; the verdict
//! comes back through the check container's termination message.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use rampart_api::ModelRollout;
use rampart_api::v1alpha1::SmokeTraining;
use rampart_checks::smoke::termination::TerminationMessage;
use serde_json::json;

use crate::config::ControllerConfig;
use crate::serving::owner_reference;

/// Label on check Jobs and their Pods naming the rollout.
pub const ROLLOUT_LABEL: &str = "rampart.dev/rollout";
/// Label on check Jobs and their Pods naming the check (`contract` or `smoke-training`).
pub const CHECK_LABEL: &str = "rampart.dev/check";
/// Where the smoke-training container writes its JSON lines, shared with the evaluating container.
pub const METRICS_FILE: &str = "/rampart/metrics.jsonl";

/// Which check a Job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Tensor contract and residual shapes.
    Contract,
    /// Smoke training.
    SmokeTraining,
}

impl Check {
    /// The check's name in labels, Job names and messages.
    pub fn as_str(self) -> &'static str {
        match self {
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
    /// Finished and the check passed; the summary.
    Passed(String),
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

/// The contract-check Job: `rampart-check contract` on the candidate and baseline URIs (mounted paths or files the
/// check image can read).
pub fn contract_job(rollout: &ModelRollout, config: &ControllerConfig, baseline_uri: &str) -> Result<Job, String> {
    let spec = &rollout.spec;
    let contract = spec.checks.as_ref().and_then(|c| c.contract.clone()).unwrap_or_default();
    let batch_sizes: Vec<String> = contract.batch_sizes.unwrap_or_default().iter().map(|b| b.0.to_string()).collect();
    let mut args = vec![
        "contract".to_string(),
        "--candidate".into(),
        spec.candidate.artifact.uri.clone(),
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
    let pod = json!({
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
    serde_json::from_value(job_shell(rollout, Check::Contract, 600, pod)).map_err(|err| err.to_string())
}

/// The smoke-training Job: the user's image trains (init container) writing JSON lines to a shared file, then
/// `rampart-check smoke-eval` judges them with the rollout's thresholds. Resources, node selector and tolerations
/// (e.g. `nvidia.com/gpu: 1` on a tainted GPU pool) go to the training container's pod as given.
pub fn smoke_job(rollout: &ModelRollout, smoke: &SmokeTraining, config: &ControllerConfig) -> Result<Job, String> {
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
            {"name": "RAMPART_MODEL_URI", "value": rollout.spec.candidate.artifact.uri},
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
    if let Some(selector) = &smoke.node_selector {
        pod["nodeSelector"] = json!(selector);
    }
    if let Some(tolerations) = &smoke.tolerations {
        pod["tolerations"] = serde_json::to_value(tolerations).map_err(|err| err.to_string())?;
    }
    let deadline = i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX);
    serde_json::from_value(job_shell(rollout, Check::SmokeTraining, deadline, pod)).map_err(|err| err.to_string())
}

/// Creates the Job unless it exists already (a restart must not start a check twice).
pub async fn ensure_job(client: &kube::Client, namespace: &str, job: &Job) -> Result<(), kube::Error> {
    match Api::<Job>::namespaced(client.clone(), namespace).create(&PostParams::default(), job).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}

/// Reads where the Job stands and, once it finished, the verdict from its Pod's termination message.
pub async fn job_state(client: &kube::Client, namespace: &str, name: &str) -> Result<JobState, kube::Error> {
    let job = Api::<Job>::namespaced(client.clone(), namespace).get(name).await?;
    let status = job.status.unwrap_or_default();
    let succeeded = status.succeeded.unwrap_or(0) > 0;
    let failed = status.failed.unwrap_or(0) > 0;
    let condition_failed = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| (c.type_ == "Failed" || c.type_ == "FailureTarget") && c.status == "True");
    if !succeeded && !failed && condition_failed.is_none() {
        return Ok(JobState::Running);
    }
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await?;
    let message = pods.items.iter().find_map(|pod| {
        pod.status.as_ref()?.container_statuses.as_ref()?.iter().find_map(|c| {
            let text = c.state.as_ref()?.terminated.as_ref()?.message.clone()?;
            serde_json::from_str::<TerminationMessage>(text.trim()).ok()
        })
    });
    Ok(match message {
        Some(verdict) if verdict.passed && succeeded => JobState::Passed(verdict.summary),
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_in_63_characters() {
        assert_eq!(job_name("fraud-v8", Check::Contract), "fraud-v8-contract");
        let long = "x".repeat(80);
        let name = job_name(&long, Check::SmokeTraining);
        assert!(name.len() <= 63 && name.ends_with("-smoke-training"), "{name}");
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
