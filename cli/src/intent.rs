//! `rampart promote|abort|retry NAME`: operator intent written as annotations on the ModelRollout (the controller
//! acts on them), after saying what will happen given the rollout's current phase.

use std::process::ExitCode;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use rampart_api::{ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RETRY, FIELD_MANAGER, ModelRollout, Phase};
use serde_json::{Value, json};

use crate::args::{GlobalArgs, IntentArgs};
use crate::cluster::Cluster;
use crate::error::CliError;
use crate::status::describe_step;

/// What the operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    Promote,
    Abort,
    Retry,
}

impl Intent {
    pub fn verb(self) -> &'static str {
        match self {
            Intent::Promote => "promote",
            Intent::Abort => "abort",
            Intent::Retry => "retry",
        }
    }
}

pub async fn run(intent: Intent, args: &IntentArgs, global: &GlobalArgs) -> Result<ExitCode, CliError> {
    let cluster = Cluster::connect(global).await?;
    let explanation = request(intent, &cluster, &args.name).await?;
    println!("{explanation}");
    println!("follow it with: rampart status {} -n {} --watch", args.name, cluster.namespace);
    Ok(ExitCode::SUCCESS)
}

/// Writes the intent's annotation on rollout `name` in the cluster's namespace, after checking that it makes sense in
/// the rollout's phase; returns what will happen. Shared by the command and the dashboard's buttons.
pub async fn request(intent: Intent, cluster: &Cluster, name: &str) -> Result<String, CliError> {
    let rollout = cluster.get_rollout(name).await?;
    let id = format!("{}/{}", cluster.namespace, name);
    let explanation = plan(intent, &rollout, &id)?;
    let requested_at = Timestamp::now().to_string();
    let annotations: Value = match intent {
        Intent::Promote => json!({ ANNOTATION_PROMOTE: requested_at }),
        Intent::Abort => json!({ ANNOTATION_ABORT: requested_at }),
        // A new value each time: the controller restarts once per distinct value. Clearing abort and promote keeps
        // them from acting on the new attempt.
        Intent::Retry => json!({ ANNOTATION_RETRY: requested_at, ANNOTATION_ABORT: null, ANNOTATION_PROMOTE: null }),
    };
    let patch = json!({ "metadata": { "annotations": annotations } });
    let params = PatchParams { field_manager: Some(format!("{FIELD_MANAGER}-cli")), ..PatchParams::default() };
    cluster
        .rollouts()
        .patch(name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|err| cluster.api_error(err, "ModelRollout", name, "patch"))?;
    Ok(explanation)
}

/// What will happen, or why the request makes no sense in this phase.
fn plan(intent: Intent, rollout: &ModelRollout, id: &str) -> Result<String, CliError> {
    let status = rollout.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(Phase::Pending);
    let candidate = &rollout.spec.candidate.version;
    let annotations = rollout.annotations();
    match intent {
        Intent::Promote => match phase {
            Phase::Succeeded | Phase::RolledBack | Phase::Failed => Err(ended(intent, id, phase)),
            Phase::RollingBack => Err(CliError::input(
                format!("rollout {id} is rolling back; it cannot be promoted any more"),
                Some(format!("when it has rolled back, start it again with `rampart retry {}`", rollout.name_any())),
            )),
            Phase::Promoting => Ok(format!("rollout {id} is already promoting {candidate}; nothing more to do")),
            Phase::Baking => Err(CliError::input(
                format!(
                    "rollout {id} is already promoted and baking {candidate}; a promote request does not end a bake"
                ),
                Some(
                    "to end the bake early, shorten or remove spec.bake (kubectl edit); the promotion then finishes"
                        .into(),
                ),
            )),
            Phase::Progressing | Phase::Paused => {
                let next = usize::try_from(status.current_step.unwrap_or(0)).unwrap_or(0);
                let remaining: Vec<String> = rollout.spec.steps.iter().skip(next).map(describe_step).collect();
                Ok(format!(
                    "promote requested for {id}: the controller skips the {} remaining step(s){} and promotes {candidate} \
                     (all traffic, and the registry's production alias moves to it)",
                    remaining.len(),
                    if remaining.is_empty() { String::new() } else { format!(" ({})", remaining.join("; ")) }
                ))
            }
            Phase::Pending | Phase::Verifying | Phase::Checking => Ok(format!(
                "promote requested for {id}: it is still {phase:?}; the signature and checks still run, and once they \
                 pass the controller skips the steps and promotes {candidate}"
            )),
        },
        Intent::Abort => match phase {
            Phase::Succeeded | Phase::RolledBack | Phase::Failed => Err(ended(intent, id, phase)),
            Phase::RollingBack => Ok(format!("rollout {id} is already rolling back; nothing more to do")),
            Phase::Baking if !annotations.contains_key(ANNOTATION_ABORT) => Ok(format!(
                "abort requested for {id} during the bake after promotion: the controller sends all traffic back to \
                 {} at once, moves the registry's production alias back to it and records the rollback after \
                 promotion",
                status.baseline_version.as_deref().unwrap_or("the previous version")
            )),
            _ if annotations.contains_key(ANNOTATION_ABORT) => {
                Ok(format!("abort was already requested for {id}; the controller rolls it back on its next pass"))
            }
            _ => Ok(format!(
                "abort requested for {id} ({phase:?}, canary weight {}%): the controller sets the canary weight to 0 \
                 at once, rolls back to the baseline and records the rollback in the registry",
                status.canary_weight.unwrap_or(0)
            )),
        },
        Intent::Retry => {
            if phase.is_terminal() {
                Ok(format!(
                    "retry requested for {id} ({phase:?}): the controller starts it again from the first step \
                     (verification and checks first); abort and promote requests are cleared"
                ))
            } else {
                Err(CliError::input(
                    format!("rollout {id} is still {phase:?}; only a finished rollout can be retried"),
                    Some(format!(
                        "wait for it to end (rampart status {} --watch), or stop it first with `rampart abort {}`",
                        rollout.name_any(),
                        rollout.name_any()
                    )),
                ))
            }
        }
    }
}

fn ended(intent: Intent, id: &str, phase: Phase) -> CliError {
    CliError::input(
        format!("rollout {id} has already ended ({phase:?}); `{}` would have no effect", intent.verb()),
        Some("start it again with `rampart retry`, or apply a new ModelRollout".into()),
    )
}
