//! Decisions: what a registry refusal does (the model belongs to another namespace) and which attempt the records of
//! a retried rollout belong to.

use super::*;

fn owned_elsewhere() -> String {
    "model `fraud` belongs to namespace `team-b` in the registry".into()
}

#[test]
fn a_refused_registration_before_traffic_fails_the_rollout_with_the_reason_and_a_condition() {
    let mut case = Case::new(spec(), status(Phase::Checking, 0, 0.0), 1.0);
    case.registry_refused = Some(owned_elsewhere());
    let act = case.act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.effects.iter().all(|e| !matches!(e, Effect::SetWeight { .. } | Effect::CreateCheckJob(_))));
    let message = act.status.message.clone().unwrap_or_default();
    assert!(message.contains("belongs to namespace `team-b`") && message.contains("no traffic was moved"), "{message}");
    assert_eq!(condition(&act.status, "Recorded"), "False");
    assert_eq!(act.event.map(|e| e.reason), Some("RegistryRefused"));
}

#[test]
fn a_refusal_discovered_with_traffic_on_the_canary_rolls_back_at_once() {
    let mut progressing = status(Phase::Progressing, 1, 0.0);
    progressing.canary_weight = Some(10);
    let mut case = Case::new(spec(), progressing, 1.0);
    case.registry_refused = Some(owned_elsewhere());
    let act = case.act(Observation::Nothing);
    assert_eq!(act.effects.first(), Some(&Effect::RouteAllToBaseline { after_failing_verdict: false }));
    assert_eq!(act.status.canary_weight, Some(0));
    assert_eq!(act.status.phase, Some(Phase::RollingBack));
    assert_eq!(condition(&act.status, "Recorded"), "False");
}

#[test]
fn a_refusal_after_the_rollout_ended_changes_nothing() {
    let mut case = Case::new(spec(), status(Phase::Failed, 0, 0.0), 1.0);
    case.registry_refused = Some(owned_elsewhere());
    let act = case.act(Observation::Nothing);
    assert!(act.effects.is_empty());
    assert_eq!(act.status.phase, Some(Phase::Failed));
}

#[test]
fn records_queued_after_a_retry_carry_the_retry_request_as_their_attempt() {
    let mut retried = status(Phase::Failed, 0, 0.0);
    retried.handled_retry = None;
    let mut case = Case::new(spec(), retried, 1.0);
    case.intent.retry = Some("2026-12-01T10:00:00Z".into());
    let act = case.act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Pending));
    let mut again = Case::new(spec(), act.status, 2.0);
    again.intent.retry = Some("2026-12-01T10:00:00Z".into());
    let signer = crate::verify::Signer {
        key_id: "key-1".into(),
        key_label: "k.pem".into(),
        bundle: "{}".into(),
        model_name: "fraud".into(),
        files: vec![],
        single_file: false,
    };
    let started = again.act(Observation::Start(StartObservation {
        signature: Ok(Some(signer)),
        baseline: Ok(BaselineFacts {
            version: Some("v1".into()),
            uri: Some("s3://models/fraud/v1/".into()),
            ..Default::default()
        }),
    }));
    let stamped: Vec<serde_json::Value> =
        started.status.outbox.iter().flatten().map(|text| serde_json::from_str(text).unwrap()).collect();
    assert!(!stamped.is_empty());
    for record in stamped {
        assert_eq!(record[crate::trail::RETRY_FIELD], "2026-12-01T10:00:00Z", "{record}");
    }
}

#[test]
fn a_rollout_whose_target_another_rollout_holds_waits_pending_and_names_the_holder() {
    let mut case = Case::new(spec(), status(Phase::Pending, 0, 0.0), 1.0);
    case.target_holder = Some("HTTPRoute ml/fraud is held by rollout ml/first".into());
    let act = case.act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Pending));
    assert!(act.effects.is_empty(), "nothing is done to any target: {:?}", act.effects);
    assert_eq!(condition(&act.status, "TargetClaimed"), "True");
    assert!(act.status.message.clone().unwrap_or_default().contains("ml/first"));
    assert_eq!(act.event.map(|e| e.reason), Some("TargetClaimed"));
    assert!(matches!(act.requeue, Requeue::After(_)), "it looks again");
}

#[test]
fn a_retry_claims_the_targets_afresh() {
    let mut ended = status(Phase::RolledBack, 1, 0.0);
    ended.targets = Some(rampart_api::v1alpha1::RolloutTargets { serving: spec().serving, traffic: spec().traffic });
    let mut case = Case::new(spec(), ended, 1.0);
    case.intent.retry = Some("1".into());
    let act = case.act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Pending));
    assert_eq!(act.status.targets, None);
}

// ----- a status someone else wrote (finding 1) ---------------------------------------------------------------------

fn forged(mut status: ModelRolloutStatus) -> Case {
    status.checks = Some(ChecksStatus {
        contract: Some(CheckResult {
            result: CheckOutcome::Passed,
            message: Some("forged".into()),
            signer: None,
            job: None,
            loss_curve: None,
        }),
        ..Default::default()
    });
    let mut case = Case::new(spec_with(json!({"rollback": {"onFailure": false}})), status, 1.0);
    case.status_trust = crate::seal::Trust::Forged;
    case
}

#[test]
fn a_forged_status_before_traffic_runs_the_gates_again_from_the_start() {
    let act = forged(status(Phase::Checking, 0, 0.0)).act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Pending));
    assert_eq!(act.status.checks, None, "no forged check result survives");
    assert!(act.effects.iter().all(|e| matches!(e, Effect::AddFinalizer)), "{:?}", act.effects);
    assert_eq!(act.event.map(|e| e.reason), Some("StatusForged"));
}

#[test]
fn a_forged_promoting_status_rolls_back_instead_of_promoting_even_when_failures_halt() {
    let mut promoting = status(Phase::Promoting, 6, 0.0);
    promoting.canary_weight = Some(100);
    promoting.capacity = Some(rampart_api::v1alpha1::CapacityStatus {
        baseline_replicas: 1000,
        surge_replicas: 1000,
        gpus_per_pod: None,
        ready: None,
    });
    let case = forged(promoting);
    // Nothing is observed for promotion: the forged phase asks for nothing.
    let act = case.act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: false }]);
    assert_eq!(act.status.phase, Some(Phase::RollingBack), "rollback.onFailure: false does not halt a forged status");
    assert_eq!(act.status.capacity, None, "a forged size scales nothing");
    assert!(act.status.message.unwrap().contains("someone other than Rampart"));
}

#[test]
fn a_forged_succeeded_mid_rollout_returns_the_canarys_traffic() {
    let mut succeeded = status(Phase::Succeeded, 2, 0.0);
    succeeded.canary_weight = Some(50);
    let act = forged(succeeded).act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: false }, Effect::DeleteCanary]);
    assert_eq!(act.status.canary_weight, Some(0));
    // Deleting it goes the same way.
    let mut case = forged(status(Phase::Succeeded, 2, 0.0));
    case.deleted_at = Some(0.5);
    let gone = case.act(Observation::Nothing);
    assert!(gone.effects.contains(&Effect::RouteAllToBaseline { after_failing_verdict: false }), "{:?}", gone.effects);
}
