//! Decisions: The check Jobs before traffic.

use serde_json::json;

use super::*;

// ----- checks ---------------------------------------------------------------------------------------------------

fn checking_spec() -> ModelRolloutSpec {
    spec_with(json!({"checks": {
        "contract": {"batchSizes": [1, 8]},
        "smokeTraining": {"image": "registry.example.com/ml/trainer:v2"}
    }}))
}

fn job() -> Box<k8s_openapi::api::batch::v1::Job> {
    let mut job = k8s_openapi::api::batch::v1::Job::default();
    job.metadata.name = Some("fraud-v2-contract".into());
    Box::new(job)
}

fn check_status(contract: Option<CheckOutcome>, smoke: Option<CheckOutcome>) -> ModelRolloutStatus {
    let result = |outcome: Option<CheckOutcome>| {
        outcome.map(|result| CheckResult {
            result,
            message: None,
            signer: None,
            job: Some("j".into()),
            loss_curve: None,
        })
    };
    ModelRolloutStatus {
        checks: Some(ChecksStatus {
            signature: None,
            // The artifact Job (always first for a signed candidate) already passed.
            artifact: result(Some(CheckOutcome::Passed)),
            contract: result(contract),
            smoke_training: result(smoke),
        }),
        ..status(Phase::Checking, 0, 0.0)
    }
}

#[test]
fn a_signed_candidate_is_verified_by_an_artifact_job_before_anything_else_even_without_other_checks() {
    let act = Case::new(spec(), ModelRolloutStatus::default(), 0.0).act(Observation::Start(StartObservation {
        signature: Ok(Some(signer())),
        baseline: Ok(BaselineFacts {
            version: Some("v1".into()),
            uri: Some("s3://models/fraud/v1/".into()),
            ..Default::default()
        }),
    }));
    assert_eq!(act.status.phase, Some(Phase::Checking), "no traffic before the bytes are checked");
    let case = Case::new(spec(), act.status, 1.0);
    assert_eq!(case.need(), Need::Job { check: Check::Artifact, started: false });
}

#[test]
fn a_passed_artifact_job_marks_the_version_verified_and_a_failed_one_fails_before_traffic() {
    let signed = |artifact: Option<CheckOutcome>| {
        let mut status = check_status(None, None);
        let checks = status.checks.get_or_insert_with(Default::default);
        checks.signature = Some(CheckResult {
            result: CheckOutcome::Passed,
            message: None,
            signer: Some("key-1".into()),
            job: None,
            loss_curve: None,
        });
        checks.artifact = artifact.map(|result| CheckResult {
            result,
            message: None,
            signer: None,
            job: Some("j".into()),
            loss_curve: None,
        });
        status
    };
    let case = Case::new(spec(), signed(Some(CheckOutcome::Running)), 1.0);
    assert_eq!(case.need(), Need::Job { check: Check::Artifact, started: true });
    let act = case.act(Observation::Job {
        curve: vec![],
        check: Check::Artifact,
        state: JobState::Passed("verified sha256:aa".into(), vec![], None),
    });
    assert_eq!(record_kinds(&act.status), vec!["verified"]);
    assert_eq!(
        act.status.checks.as_ref().and_then(|c| c.artifact.as_ref()).map(|a| a.result),
        Some(CheckOutcome::Passed)
    );
    assert_eq!(act.status.phase, Some(Phase::Checking));
    let next = Case::new(spec(), act.status, 2.0).act(Observation::Nothing);
    assert_eq!(next.status.phase, Some(Phase::Progressing), "no other check: the steps begin");

    let why = "artifact not verified: the model does not match its signature: file weights.bin changed (signed \
               sha256:bb, now sha256:cc)";
    let act = Case::new(spec(), signed(Some(CheckOutcome::Running)), 1.0).act(Observation::Job {
        curve: vec![],
        check: Check::Artifact,
        state: JobState::Failed(why.into()),
    });
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert_eq!(act.status.canary_weight, Some(0));
    assert!(act.status.message.as_deref().unwrap().contains("file weights.bin changed"));
    assert!(!record_kinds(&act.status).contains(&"verified"), "nothing is marked verified");
}

#[test]
fn a_canary_whose_init_container_refused_the_artifact_rolls_back_naming_the_file() {
    for phase in [Phase::Progressing, Phase::Paused] {
        let mut case = Case::new(spec(), status(phase, 2, 0.0), 5.0);
        case.status.canary_weight = Some(10);
        case.canary_refused = Some(
            "canary pod fraud-canary-1 did not start: its init container refused the artifact: file weights.bin \
             changed (signed sha256:bb, now sha256:cc)"
                .into(),
        );
        let act = case.act(Observation::Nothing);
        assert_eq!(act.status.phase, Some(Phase::RollingBack), "{phase:?}");
        assert_eq!(act.status.canary_weight, Some(0));
        assert!(act.effects.contains(&Effect::RouteAllToBaseline { after_failing_verdict: false }));
        assert!(
            act.status.message.as_deref().unwrap().contains("file weights.bin changed"),
            "{:?}",
            act.status.message
        );
    }
}

#[test]
fn checking_builds_the_first_check_job() {
    let case = Case::new(checking_spec(), check_status(None, None), 1.0);
    assert_eq!(case.need(), Need::Job { check: Check::Contract, started: false });
}

#[test]
fn a_built_check_job_is_created_and_shown_running() {
    let case = Case::new(checking_spec(), check_status(None, None), 1.0);
    let act = case.act(Observation::JobToCreate { check: Check::Contract, job: Ok(job()) });
    assert_eq!(act.effects, vec![Effect::CreateCheckJob(job())]);
    let contract = act.status.checks.as_ref().and_then(|c| c.contract.clone()).unwrap();
    assert_eq!(contract.result, CheckOutcome::Running);
    assert_eq!(contract.job.as_deref(), Some("fraud-v2-contract"));
    assert_eq!(act.status.phase, Some(Phase::Checking));
    assert_eq!(condition(&act.status, "ChecksPassed"), "Unknown");
    assert_eq!(act.event.map(|e| e.reason), Some("CheckStarted"));
}

#[test]
fn a_check_job_that_cannot_be_built_fails_the_check() {
    let case = Case::new(checking_spec(), check_status(None, None), 1.0);
    let act = case.act(Observation::JobToCreate {
        check: Check::Contract,
        job: Err("the baseline's model URI is unknown".into()),
    });
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.effects.is_empty());
    assert!(act.status.message.as_deref().unwrap().contains("baseline's model URI is unknown"));
}

#[test]
fn a_running_check_job_is_read_and_waited_for() {
    let case = Case::new(checking_spec(), check_status(Some(CheckOutcome::Running), None), 1.0);
    assert_eq!(case.need(), Need::Job { check: Check::Contract, started: true });
    let act = case.act(Observation::Job { curve: vec![], check: Check::Contract, state: JobState::Running });
    assert_eq!(act.status, case.status.clone().with_conditions_at(case.now));
    assert!(matches!(act.requeue, Requeue::After(_)));
}

#[test]
fn a_passed_contract_is_recorded_and_smoke_training_comes_next() {
    let case = Case::new(checking_spec(), check_status(Some(CheckOutcome::Running), None), 1.0);
    let act = case.act(Observation::Job {
        curve: vec![],
        check: Check::Contract,
        state: JobState::Passed("compatible".into(), vec![], None),
    });
    let contract = act.status.checks.as_ref().and_then(|c| c.contract.clone()).unwrap();
    assert_eq!(contract.result, CheckOutcome::Passed);
    assert_eq!(act.status.phase, Some(Phase::Checking));
    assert_eq!(act.event.map(|e| e.reason), Some("CheckPassed"));
    let next = Case::new(checking_spec(), act.status, 2.0);
    assert_eq!(next.need(), Need::Job { check: Check::SmokeTraining, started: false });
}

#[test]
fn a_failed_check_job_fails_before_traffic_with_its_reason() {
    let case = Case::new(checking_spec(), check_status(Some(CheckOutcome::Passed), Some(CheckOutcome::Running)), 1.0);
    let act = case.act(Observation::Job {
        curve: vec![],
        check: Check::SmokeTraining,
        state: JobState::Failed("loss diverged".into()),
    });
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.status.message.as_deref().unwrap().contains("loss diverged"));
    assert_eq!(record_kinds(&act.status), vec!["finish"]);
    assert_eq!(act.event.map(|e| e.reason), Some("CheckFailed"));
    assert!(act.effects.is_empty());
}

#[test]
fn an_observation_for_another_check_is_not_taken_for_this_one() {
    let case = Case::new(checking_spec(), check_status(Some(CheckOutcome::Running), None), 1.0);
    let decision = case.decide(Observation::Job {
        curve: vec![],
        check: Check::SmokeTraining,
        state: JobState::Passed("x".into(), vec![], None),
    });
    assert_eq!(decision, Decision::Observe(Need::Job { check: Check::Contract, started: true }));
}

#[test]
fn all_checks_passed_start_the_steps() {
    let case = Case::new(checking_spec(), check_status(Some(CheckOutcome::Passed), Some(CheckOutcome::Passed)), 1.0);
    let act = case.act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Progressing));
    assert_eq!(act.status.current_step, Some(0));
    assert_eq!(act.event.map(|e| e.reason), Some("ChecksPassed"));
}
