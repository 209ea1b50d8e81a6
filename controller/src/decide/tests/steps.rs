//! Decisions: setWeight and pause steps, the promote annotation, the end of the steps.

use std::time::Duration;

use serde_json::json;

use super::*;

// ----- steps ----------------------------------------------------------------------------------------------------

#[test]
fn the_first_set_weight_creates_the_canary_and_moves_traffic() {
    let act = Case::new(spec(), status(Phase::Progressing, 0, 0.0), 1.0).act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::SetWeight { weight: 10, create_canary: true, cohort: None, mirror: false }]);
    assert_eq!(act.status.canary_weight, Some(10));
    assert_eq!(act.status.current_step, Some(1));
    assert_eq!(act.status.step_started_at, Some(at(1.0).to_string()));
    assert_eq!(record_kinds(&act.status), vec!["step"]);
    assert_eq!(act.event.map(|e| e.reason), Some("WeightSet"));
}

#[test]
fn a_later_set_weight_only_moves_traffic() {
    let mut current = status(Phase::Progressing, 2, 0.0);
    current.canary_weight = Some(10);
    let act = Case::new(spec(), current, 1.0).act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::SetWeight { weight: 50, create_canary: false, cohort: None, mirror: false }]);
}

#[test]
fn kserve_never_creates_a_canary_deployment() {
    let spec = spec_with(json!({"serving": {"kserve": {"inferenceService": "fraud"}}, "traffic": null}));
    let act = Case::new(spec, status(Phase::Progressing, 0, 0.0), 1.0).act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::SetWeight { weight: 10, create_canary: false, cohort: None, mirror: false }]);
}

#[test]
fn a_timed_pause_pauses_then_advances_when_it_ends() {
    let case = Case::new(spec(), status(Phase::Progressing, 3, 0.0), 0.5);
    let act = case.act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Paused));
    assert_eq!(act.requeue, Requeue::After(Duration::from_millis(1500)));
    assert_eq!(condition(&act.status, "Stalled"), "True");

    let waiting = Case::new(spec(), act.status.clone(), 1.0).act(Observation::Nothing);
    assert_eq!(waiting.status, act.status.clone().with_conditions_at(1.0), "no new write while it waits");
    assert!(waiting.event.is_none());

    let ended = Case::new(spec(), act.status, 2.5).act(Observation::Nothing);
    assert_eq!(ended.status.phase, Some(Phase::Progressing));
    assert_eq!(ended.status.current_step, Some(4));
    assert_eq!(ended.event.map(|e| e.reason), Some("PauseEnded"));
}

#[test]
fn a_pause_without_duration_waits_for_a_person() {
    let act = Case::new(spec(), status(Phase::Progressing, 4, 0.0), 100.0).act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Paused));
    assert_eq!(act.requeue, Requeue::OnChange);
    assert!(act.status.message.as_deref().unwrap().contains("rampart promote fraud-v2"));
    let again = Case::new(spec(), act.status, 10_000.0).act(Observation::Nothing);
    assert!(again.event.is_none() && again.effects.is_empty());
}

#[test]
fn the_promote_annotation_skips_the_remaining_steps() {
    for phase in [Phase::Progressing, Phase::Paused] {
        let mut case = Case::new(spec(), status(phase, 4, 0.0), 1.0);
        case.intent.promote = true;
        let act = case.act(Observation::Nothing);
        assert_eq!(act.status.phase, Some(Phase::Promoting));
        assert!(act.effects.is_empty(), "promotion moves nothing before the registry has the record");
    }
}

#[test]
fn after_the_last_step_promotion_starts() {
    let act = Case::new(spec(), status(Phase::Progressing, 6, 0.0), 1.0).act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Promoting));
    assert_eq!(act.status.message.as_deref(), Some("all steps completed"));
    assert_eq!(act.event.map(|e| e.reason), Some("Promoting"));
}

// ----- header cohorts -------------------------------------------------------------------------------------------

fn cohort_spec() -> ModelRolloutSpec {
    spec_with(json!({"steps": [
        {"cohort": {"headers": [{"name": "x-tenant", "value": "internal"}]}},
        {"analysis": {"duration": "30s", "interval": "3s"}},
        {"setWeight": 50},
        {"setWeight": 100}
    ]}))
}

fn tenant() -> Vec<rampart_api::v1alpha1::HeaderRule> {
    vec![rampart_api::v1alpha1::HeaderRule { name: "x-tenant".into(), value: "internal".into(), match_type: None }]
}

#[test]
fn a_cohort_step_creates_the_canary_and_routes_the_cohort_at_the_weight_it_has() {
    let act = Case::new(cohort_spec(), status(Phase::Progressing, 0, 0.0), 1.0).act(Observation::Nothing);
    assert_eq!(
        act.effects,
        vec![Effect::SetWeight { weight: 0, create_canary: true, cohort: Some(tenant()), mirror: false }]
    );
    assert_eq!(act.status.canary_weight, Some(0));
    assert_eq!(act.status.current_step, Some(1));
    assert_eq!(act.event.as_ref().map(|e| e.reason), Some("CohortRouted"));
    assert!(act.event.unwrap().message.contains("x-tenant=internal"));
}

#[test]
fn later_weights_keep_the_cohort_routed() {
    let mut current = status(Phase::Progressing, 2, 0.0);
    current.canary_weight = Some(0);
    let act = Case::new(cohort_spec(), current, 1.0).act(Observation::Nothing);
    assert_eq!(
        act.effects,
        vec![Effect::SetWeight { weight: 50, create_canary: true, cohort: Some(tenant()), mirror: false }]
    );
}

#[test]
fn the_split_check_is_off_while_a_cohort_is_routed() {
    // At weight 10 a canary that also answers the cohort's requests gets more than 10%: a sample-ratio mismatch,
    // were there no cohort.
    let analysing = ModelRolloutStatus { canary_weight: Some(10), ..status(Phase::Progressing, 1, 0.0) };
    let counts = |spec: ModelRolloutSpec| {
        let observed = Observation::Look(Ok(LookCounts {
            metrics: vec![ratio("accuracy", (9600.0, 10000.0), (9000.0, 10000.0))],
            requests: Some(rampart_analysis::ArmPair { canary: 30000.0, baseline: 70000.0 }),
        }));
        Case::new(spec, analysing.clone(), 4.5).act(observed)
    };
    let with_cohort = counts(cohort_spec());
    assert_eq!(with_cohort.status.current_step, Some(2), "{:?}", with_cohort.status.message);
    assert!(with_cohort.status.analysis.as_ref().unwrap().srm.is_none());

    let mut no_cohort = cohort_spec();
    no_cohort.steps[0] = rampart_api::v1alpha1::Step { set_weight: Some(10), ..Default::default() };
    let without = counts(no_cohort);
    assert_eq!(without.status.phase, Some(Phase::RollingBack), "the same counts fail the split check without one");
}
