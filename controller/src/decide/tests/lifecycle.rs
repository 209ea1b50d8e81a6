//! Decisions: Finished rollouts, retry, abort and the start of a rollout.

use std::time::Duration;

use serde_json::json;

use super::*;

// ----- finished rollouts ----------------------------------------------------------------------------------------

#[test]
fn a_finished_rollout_stays_finished_and_writes_nothing_new() {
    for phase in [Phase::Succeeded, Phase::RolledBack, Phase::Failed] {
        let mut case = Case::new(spec(), status(phase, 6, 0.0), 100.0);
        // Bring the conditions up to date first, as the last transition did.
        case.status = case.act(Observation::Nothing).status;
        let act = case.act(Observation::Nothing);
        assert_eq!(act.status, case.status, "{phase:?}");
        assert!(act.effects.is_empty() && act.event.is_none(), "{phase:?}");
        assert_eq!(act.requeue, Requeue::OnChange);
    }
}

#[test]
fn a_new_retry_value_starts_again_from_step_0_and_deletes_old_check_jobs() {
    let mut case = Case::new(spec(), status(Phase::Failed, 0, 0.0), 10.0);
    case.status.checks = Some(ChecksStatus {
        contract: Some(CheckResult {
            result: CheckOutcome::Failed,
            message: None,
            signer: None,
            job: None,
            loss_curve: None,
        }),
        ..Default::default()
    });
    case.intent.retry = Some("1".into());
    let act = case.act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::DeleteCheckJobs]);
    assert_eq!(act.status.phase, Some(Phase::Pending));
    assert_eq!(act.status.current_step, Some(0));
    assert_eq!(act.status.checks, None);
    assert_eq!(act.status.handled_retry.as_deref(), Some("1"));
    assert_eq!(act.event.map(|e| e.reason), Some("Retrying"));
}

#[test]
fn a_retry_value_already_acted_on_does_nothing() {
    let mut case = Case::new(spec(), status(Phase::RolledBack, 1, 0.0), 10.0);
    case.status.handled_retry = Some("1".into());
    case.intent.retry = Some("1".into());
    let act = case.act(Observation::Nothing);
    assert!(act.effects.is_empty());
    assert_eq!(act.status.phase, Some(Phase::RolledBack));
}

// ----- abort ----------------------------------------------------------------------------------------------------

#[test]
fn abort_in_any_active_phase_sends_all_traffic_to_the_baseline_first() {
    for phase in ACTIVE {
        let mut case = Case::new(spec(), status(phase, 2, 0.0), 10.0);
        case.status.canary_weight = Some(50);
        case.intent.abort = true;
        let act = case.act(Observation::Nothing);
        assert_eq!(act.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: false }], "{phase:?}");
        assert_eq!(act.status.phase, Some(Phase::RollingBack), "{phase:?}");
        assert_eq!(act.status.canary_weight, Some(0));
        assert_eq!(record_kinds(&act.status), vec!["finish"], "an abort is recorded as a finish");
        assert!(matches!(&records(&act.status)[0], TrailRecord::Finish { aborted: true, .. }));
        assert_eq!(act.event.as_ref().map(|e| (e.reason, e.warning)), Some(("RollingBack", true)));
    }
}

#[test]
fn abort_while_rolling_back_does_not_roll_back_twice() {
    let mut case =
        Case::new(spec_with(json!({"rollback": {"scaleDownDelay": "30s"}})), status(Phase::RollingBack, 2, 0.0), 5.0);
    case.intent.abort = true;
    let act = case.act(Observation::Nothing);
    assert!(act.effects.is_empty());
    assert!(act.status.outbox.is_none());
    assert_eq!(act.requeue, Requeue::After(Duration::from_secs(25)));
}

#[test]
fn abort_ignores_on_failure_false() {
    let mut case =
        Case::new(spec_with(json!({"rollback": {"onFailure": false}})), status(Phase::Progressing, 2, 0.0), 1.0);
    case.intent.abort = true;
    assert_eq!(case.act(Observation::Nothing).status.phase, Some(Phase::RollingBack));
}

// ----- start ----------------------------------------------------------------------------------------------------

#[test]
fn a_new_rollout_asks_for_its_signature_and_baseline() {
    for phase in [Phase::Pending, Phase::Verifying] {
        let case = Case::new(spec(), ModelRolloutStatus { phase: Some(phase), ..Default::default() }, 0.0);
        assert_eq!(case.need(), Need::Start);
    }
    let case = Case::new(spec(), ModelRolloutStatus::default(), 0.0);
    assert_eq!(case.need(), Need::Start, "no status at all is Pending");
}

#[test]
fn a_smoke_image_outside_the_allow_list_fails_before_anything_is_looked_at() {
    let spec = spec_with(json!({"checks": {"smokeTraining": {"image": "docker.io/evil/miner:latest"}}}));
    let act = Case::new(spec, ModelRolloutStatus::default(), 0.0).act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.status.message.as_deref().unwrap().contains("docker.io/evil/miner:latest"));
    assert_eq!(act.event.map(|e| e.reason), Some("ImageNotAllowed"));
    assert!(act.effects.is_empty());
}

#[test]
fn a_failed_signature_fails_before_traffic_and_records_why() {
    let case = Case::new(spec(), ModelRolloutStatus::default(), 0.0);
    let act = case.act(Observation::Start(StartObservation {
        signature: Err("signed by an untrusted key".into()),
        baseline: Ok(Default::default()),
    }));
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.effects.is_empty(), "nothing moves");
    let signature = act.status.checks.as_ref().and_then(|c| c.signature.clone()).unwrap();
    assert_eq!(signature.result, CheckOutcome::Failed);
    assert_eq!(record_kinds(&act.status), vec!["register", "start", "finish"], "no verified record");
    assert_eq!(condition(&act.status, "Stalled"), "True");
    assert_eq!(condition(&act.status, "ChecksPassed"), "False");
    assert_eq!(act.event.map(|e| e.reason), Some("SignatureFailed"));
}

#[test]
fn an_unusable_baseline_fails_before_traffic() {
    let act = Case::new(spec(), ModelRolloutStatus::default(), 0.0).act(Observation::Start(StartObservation {
        signature: Ok(Some(signer())),
        baseline: Err("Deployment ml/fraud not found".into()),
    }));
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.status.message.as_deref().unwrap().contains("ml/fraud not found"));
    assert_eq!(record_kinds(&act.status), vec!["register", "start", "finish"]);
}

#[test]
fn a_verified_start_with_check_jobs_enters_checking() {
    let spec = spec_with(json!({"checks": {"contract": {"batchSizes": [1, 8]}}}));
    let act = Case::new(spec, ModelRolloutStatus::default(), 0.0).act(Observation::Start(StartObservation {
        signature: Ok(Some(signer())),
        baseline: Ok(BaselineFacts {
            version: Some("v1".into()),
            uri: Some("s3://models/fraud/v1/".into()),
            ..Default::default()
        }),
    }));
    assert_eq!(act.status.phase, Some(Phase::Checking));
    assert_eq!(act.status.baseline_version.as_deref(), Some("v1"));
    assert_eq!(act.status.stable_uri.as_deref(), Some("s3://models/fraud/v1/"));
    assert_eq!(act.status.canary_weight, Some(0));
    // The bundle checked out, the bytes not yet: nothing is marked verified before the artifact Job passes.
    assert_eq!(record_kinds(&act.status), vec!["register", "start"]);
    let started = records(&act.status).into_iter().find_map(|r| match r {
        TrailRecord::StartRollout { rollout } => Some(rollout),
        _ => None,
    });
    assert_eq!(started.and_then(|r| r.baseline_version).as_deref(), Some("v1"));
    assert_eq!(act.event.map(|e| e.reason), Some("Started"));
    assert_eq!(act.requeue, endings::NEXT);
}

#[test]
fn an_unsigned_start_without_check_jobs_goes_straight_to_the_steps() {
    let unsigned = spec_with(json!({"checks": {"insecureSkipSignature": true}}));
    let act = Case::new(unsigned, ModelRolloutStatus::default(), 0.0).act(Observation::Start(StartObservation {
        signature: Ok(None),
        baseline: Ok(BaselineFacts { version: Some("v1".into()), uri: None, ..Default::default() }),
    }));
    assert_eq!(act.status.phase, Some(Phase::Progressing));
    assert_eq!(act.status.current_step, Some(0));
    let signature = act.status.checks.as_ref().and_then(|c| c.signature.clone()).unwrap();
    assert_eq!(signature.result, CheckOutcome::Skipped);
    assert_eq!(record_kinds(&act.status), vec!["register", "start"], "an unsigned candidate is never marked verified");
}

#[test]
fn without_a_registry_nothing_is_queued() {
    let mut case = Case::new(spec(), ModelRolloutStatus::default(), 0.0);
    case.settings.registry = false;
    let act = case
        .act(Observation::Start(StartObservation { signature: Ok(Some(signer())), baseline: Ok(Default::default()) }));
    assert!(act.status.outbox.is_none());
}
