//! The gates before traffic: the smoke-training image allow-list, the signature, the baseline, then the check Jobs
//! (contract, then smoke training). Any failure ends the rollout as Failed before a single request moves.

use rampart_api::v1alpha1::{CheckOutcome, CheckResult};
use rampart_api::{ModelRolloutStatus, Phase};

use super::endings::{self, NEXT, act, fail_before_traffic, record};
use super::{DecideError, Decision, Effect, Facts, Need, Note, Observation, Requeue};
use crate::jobs::{Check, JobState, image_allowed, job_name};
use crate::status::{self, truncate};
use crate::trail::TrailRecord;

/// How often a running check Job is looked at when no watch event arrives first.
const CHECK_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Pending: image allow-list, signature and baseline; then Checking (or Progressing when no check Job is asked for).
pub fn start(facts: &Facts<'_>) -> Result<Decision, DecideError> {
    let spec = facts.spec;
    let mut status = facts.status.clone();
    if let Some(smoke) = spec.checks.as_ref().and_then(|c| c.smoke_training.as_ref())
        && !image_allowed(&smoke.image, &facts.settings.smoke_image_allow_list)
    {
        let allowed = if facts.settings.smoke_image_allow_list.is_empty() {
            "none configured".to_string()
        } else {
            facts.settings.smoke_image_allow_list.join(", ")
        };
        let message = format!(
            "smoke-training image {} is not allowed by this controller (allowed prefixes: {allowed}); nothing was \
             created and no traffic was moved",
            smoke.image
        );
        return Ok(fail_before_traffic(facts, status, "ImageNotAllowed", message));
    }
    if let Some(message) = shadow_after_traffic(spec) {
        return Ok(fail_before_traffic(facts, status, "InvalidSteps", message));
    }
    if let Some(address) = spec.analysis.as_ref().and_then(|a| a.prometheus_address.as_deref())
        && let Err(why) = facts.settings.prometheus_allow.check(address)
    {
        let message = format!("{why}; nothing was queried and no traffic was moved");
        let mut decision = fail_before_traffic(facts, status, "PrometheusNotAllowed", message.clone());
        if let Decision::Act(act) = &mut decision {
            status::set_condition(
                &mut act.status,
                "MetricsSourceAllowed",
                "False",
                "PrometheusNotAllowed",
                &message,
                facts.now,
                facts.generation,
            );
        }
        return Ok(decision);
    }
    let Observation::Start(observed) = &facts.observed else { return Ok(Decision::Observe(Need::Start)) };

    let bundle = observed.signature.as_ref().ok().and_then(|s| s.as_ref()).map(|s| s.bundle.clone());
    record(
        facts,
        &mut status,
        TrailRecord::RegisterVersion {
            version: rampart_registry::NewVersion {
                model: spec.model.clone(),
                version: spec.candidate.version.clone(),
                uri: spec.candidate.artifact.uri.clone(),
                digest: spec.candidate.artifact.digest.clone(),
                signature_bundle: bundle,
                ..Default::default()
            },
        },
    );
    let mut start_record = rampart_registry::NewRollout {
        model: spec.model.clone(),
        uid: facts.uid.into(),
        namespace: facts.namespace.into(),
        name: facts.name.into(),
        candidate_version: spec.candidate.version.clone(),
        baseline_version: spec.baseline.as_ref().and_then(|b| b.version.clone()),
    };
    let checks = status.checks.get_or_insert_with(Default::default);
    match &observed.signature {
        Ok(Some(signer)) => {
            // The bundle checks out against the rollout; the version is marked verified in the registry only once the
            // artifact-verification Job has checked the bytes at the URI against it (see `checks`).
            checks.signature = Some(CheckResult {
                result: CheckOutcome::Passed,
                message: Some(format!(
                    "bundle for model {:?} signed by trusted key {} ({})",
                    signer.model_name, signer.key_label, signer.key_id
                )),
                signer: Some(signer.key_id.clone()),
                job: None,
                loss_curve: None,
            });
        }
        Ok(None) => {
            checks.signature = Some(CheckResult {
                result: CheckOutcome::Skipped,
                message: Some("insecureSkipSignature: the candidate is not signature-checked".into()),
                signer: None,
                job: None,
                loss_curve: None,
            });
        }
        Err(why) => {
            checks.signature = Some(CheckResult {
                result: CheckOutcome::Failed,
                message: Some(why.clone()),
                signer: None,
                job: None,
                loss_curve: None,
            });
            record(facts, &mut status, TrailRecord::StartRollout { rollout: start_record });
            let message = format!("signature check failed, no traffic was moved: {why}");
            return Ok(fail_before_traffic(facts, status, "SignatureFailed", message));
        }
    }
    let baseline = match &observed.baseline {
        Ok(baseline) => baseline.clone(),
        Err(why) => {
            record(facts, &mut status, TrailRecord::StartRollout { rollout: start_record });
            return Ok(fail_before_traffic(facts, status, "Failed", why.clone()));
        }
    };
    start_record.baseline_version = baseline.version.clone();
    record(facts, &mut status, TrailRecord::StartRollout { rollout: start_record });
    status.capacity = None;
    if let Some(deployment) = &spec.serving.deployment
        && let Some(capacity) = &deployment.capacity
    {
        let gpus = baseline.gpus_per_pod.clone().unwrap_or(Ok(0));
        match super::capacity::sizes(capacity, &deployment.name, baseline.replicas.unwrap_or(1), gpus) {
            Ok(sizes) => status.capacity = Some(sizes),
            Err(why) => {
                let message = format!("{why}; no traffic was moved");
                return Ok(fail_before_traffic(facts, status, "CapacityUnusable", message));
            }
        }
    }
    status.baseline_version = baseline.version;
    status.stable_uri = baseline.uri;
    status.canary_weight = Some(0);
    status.analysis = None;
    endings::begin_step(facts, &mut status, 0);
    let message = format!(
        "rolling out {} {} against baseline {}",
        spec.model,
        spec.candidate.version,
        status.baseline_version.as_deref().unwrap_or("(unknown)")
    );
    let phase = if wanted_checks(facts).is_empty() { Phase::Progressing } else { Phase::Checking };
    status::transition(&mut status, phase, message.clone(), facts.now);
    Ok(act(facts, status, vec![], Some(Note { warning: false, reason: "Started", message }), NEXT))
}

/// A shadow step judges the candidate before users meet it: one placed after a step that sends live traffic to the
/// canary would compare predictions users already received. Says which steps are out of order.
fn shadow_after_traffic(spec: &rampart_api::v1alpha1::ModelRolloutSpec) -> Option<String> {
    let first_live = spec.steps.iter().position(|s| s.set_weight.is_some_and(|w| w > 0) || s.cohort.is_some())?;
    let late = spec.steps.iter().enumerate().skip(first_live).find(|(_, s)| s.shadow.is_some())?.0;
    Some(format!(
        "step {late} is a shadow step after step {first_live}, which already sends live traffic to the canary: move \
         shadow steps before the first setWeight above 0 or cohort; nothing was created and no traffic was moved"
    ))
}

/// The check Jobs this rollout asks for, in the order they run. A signed candidate (every candidate but an
/// `insecureSkipSignature` one) always gets the artifact verification first, even when no other check is configured:
/// the bytes at the URI must be the signed ones before any traffic. Decided from the spec, never from status (which
/// someone with `modelrollouts/status` could write to drop the check).
pub fn wanted_checks(facts: &Facts<'_>) -> Vec<Check> {
    let checks = facts.spec.checks.as_ref();
    let signed = checks.and_then(|c| c.insecure_skip_signature) != Some(true);
    [
        signed.then_some(Check::Artifact),
        checks.and_then(|c| c.contract.as_ref()).map(|_| Check::Contract),
        checks.and_then(|c| c.smoke_training.as_ref()).map(|_| Check::SmokeTraining),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Checking: run the check Jobs one after the other; any failure ends the rollout before traffic moves.
pub fn checks(facts: &Facts<'_>) -> Result<Decision, DecideError> {
    let mut status = facts.status.clone();
    for check in wanted_checks(facts) {
        let current = slot(&mut status, check).as_ref().map(|c| c.result);
        if current == Some(CheckOutcome::Passed) {
            continue;
        }
        let name = job_name(facts.name, check);
        let started = current == Some(CheckOutcome::Running);
        match &facts.observed {
            Observation::JobToCreate { check: observed, job } if *observed == check && !started => {
                let job = match job {
                    Ok(job) => job.clone(),
                    Err(why) => return Ok(fail_check(facts, status, check, why.clone())),
                };
                *slot(&mut status, check) = Some(CheckResult {
                    result: CheckOutcome::Running,
                    message: Some(format!("Job {name} is running")),
                    signer: None,
                    job: Some(name.clone()),
                    loss_curve: None,
                });
                let message = format!("{} check running in Job {name}", check.as_str());
                status.message = Some(message.clone());
                let note = Note { warning: false, reason: "CheckStarted", message };
                return Ok(act(
                    facts,
                    status,
                    vec![Effect::CreateCheckJob(job)],
                    Some(note),
                    Requeue::After(CHECK_POLL),
                ));
            }
            Observation::Job { check: observed, state, curve } if *observed == check && started => {
                return Ok(match state {
                    JobState::Running => endings::stay(facts, Requeue::After(CHECK_POLL)),
                    JobState::Passed(summary, files, bundle) => {
                        let signer =
                            status.checks.as_ref().and_then(|c| c.signature.as_ref()).and_then(|s| s.signer.clone());
                        if check == Check::Artifact
                            && let Some(signer_key_id) = signer.clone()
                        {
                            // Only now, with the bytes checked, is the version verified in the registry.
                            record(
                                facts,
                                &mut status,
                                TrailRecord::MarkVerified {
                                    model: facts.spec.model.clone(),
                                    version: facts.spec.candidate.version.clone(),
                                    verification: rampart_registry::Verification {
                                        digest: facts.spec.candidate.artifact.digest.clone(),
                                        signer_key_id,
                                        signature_bundle: bundle.clone(),
                                        files: files
                                            .iter()
                                            .map(|f| rampart_registry::VerifiedFile {
                                                path: f.name.clone(),
                                                sha256: f.sha256.clone(),
                                                size_bytes: i64::try_from(f.size).ok(),
                                                object_version: f.version.clone(),
                                            })
                                            .collect(),
                                        serving: Some(serving_verification(facts)),
                                    },
                                },
                            );
                        }
                        *slot(&mut status, check) = Some(CheckResult {
                            result: CheckOutcome::Passed,
                            message: Some(summary.clone()),
                            signer: if check == Check::Artifact { signer } else { None },
                            job: Some(name),
                            loss_curve: (!curve.is_empty()).then(|| curve.clone()),
                        });
                        let message = format!("{} check passed: {summary}", check.as_str());
                        endings::update(
                            facts,
                            status,
                            Some(Note { warning: false, reason: "CheckPassed", message }),
                            NEXT,
                        )
                    }
                    JobState::Failed(why) => {
                        let decision = fail_check(facts, status, check, why.clone());
                        with_loss_curve(decision, check, curve)
                    }
                });
            }
            _ => return Ok(Decision::Observe(Need::Job { check, started })),
        }
    }
    endings::begin_step(facts, &mut status, 0);
    let message = "all checks passed; starting the steps".to_string();
    status::transition(&mut status, Phase::Progressing, message.clone(), facts.now);
    Ok(act(facts, status, vec![], Some(Note { warning: false, reason: "ChecksPassed", message }), NEXT))
}

fn fail_check(facts: &Facts<'_>, mut status: ModelRolloutStatus, check: Check, why: String) -> Decision {
    let slot = slot(&mut status, check);
    let job = slot.as_ref().and_then(|c| c.job.clone());
    *slot = Some(CheckResult {
        result: CheckOutcome::Failed,
        message: Some(truncate(&why, 1024)),
        signer: None,
        job,
        loss_curve: None,
    });
    let message = format!("{} check failed, no traffic was moved: {why}", check.as_str());
    fail_before_traffic(facts, status, "CheckFailed", message)
}

/// Keeps a failed smoke run's loss curve in the status the decision writes (the chart is most useful then).
fn with_loss_curve(mut decision: Decision, check: Check, curve: &[rampart_api::v1alpha1::LossPoint]) -> Decision {
    if let Decision::Act(act) = &mut decision
        && !curve.is_empty()
        && let Some(result) = slot(&mut act.status, check).as_mut()
    {
        result.loss_curve = Some(curve.to_vec());
    }
    decision
}

/// The status slot of one check Job's result.
fn slot(status: &mut ModelRolloutStatus, check: Check) -> &mut Option<CheckResult> {
    let checks = status.checks.get_or_insert_with(Default::default);
    match check {
        Check::Artifact => &mut checks.artifact,
        Check::Contract => &mut checks.contract,
        Check::SmokeTraining => &mut checks.smoke_training,
    }
}

/// How the candidate's serving pods load its bytes, for the registry.
fn serving_verification(facts: &Facts<'_>) -> rampart_registry::ServingVerification {
    match facts.spec.candidate.artifact.verification.unwrap_or_default() {
        rampart_api::v1alpha1::ArtifactVerification::VerifiedCopy => {
            rampart_registry::ServingVerification::VerifiedCopy
        }
        rampart_api::v1alpha1::ArtifactVerification::BeforeTrafficOnly => {
            rampart_registry::ServingVerification::BeforeTrafficOnly
        }
    }
}
