//! Decisions: Rolling back and promoting.

use std::time::Duration;

use serde_json::json;

use super::*;

// ----- rolling back ---------------------------------------------------------------------------------------------

#[test]
fn rolling_back_waits_for_the_scale_down_delay_then_removes_the_canary() {
    let spec = spec_with(json!({"rollback": {"scaleDownDelay": "30s"}}));
    let waiting = Case::new(spec.clone(), status(Phase::RollingBack, 1, 0.0), 10.0).act(Observation::Nothing);
    assert!(waiting.effects.is_empty());
    assert_eq!(waiting.requeue, Requeue::After(Duration::from_secs(20)));

    let done = Case::new(spec, status(Phase::RollingBack, 1, 0.0), 31.0).act(Observation::Nothing);
    assert_eq!(done.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: false }, Effect::DeleteCanary]);
    assert_eq!(done.status.phase, Some(Phase::RolledBack));
    assert_eq!(condition(&done.status, "Stalled"), "True");
    assert_eq!(condition(&done.status, "Reconciling"), "False");
    assert_eq!(done.event.map(|e| e.reason), Some("RolledBack"));
}

// ----- promoting ------------------------------------------------------------------------------------------------

fn promotion(registry: Result<(), String>, baseline: BaselineState) -> Observation {
    Observation::Promotion(PromotionObservation { registry, baseline, capacity: None, baseline_replicas: Some(2) })
}

#[test]
fn promoting_asks_where_promotion_stands() {
    assert_eq!(Case::new(spec(), status(Phase::Promoting, 6, 0.0), 1.0).need(), Need::Promotion);
}

#[test]
fn promotion_waits_for_the_registry_and_moves_nothing() {
    let case = Case::new(spec(), status(Phase::Promoting, 6, 0.0), 1.0);
    let act = case.act(promotion(Err("Postgres is down".into()), BaselineState::NotApplicable));
    assert!(act.effects.is_empty());
    assert!(act.status.message.as_deref().unwrap().contains("waiting for the registry (Postgres is down)"));
    assert_eq!(act.status.phase, Some(Phase::Promoting));
    assert_eq!(act.requeue, Requeue::After(Duration::from_secs(2)));
}

#[test]
fn promotion_moves_the_baseline_then_waits_for_it_to_roll_out() {
    let case = Case::new(spec(), status(Phase::Promoting, 6, 0.0), 1.0);
    let act = case.act(promotion(Ok(()), BaselineState::ServesPrevious));
    assert_eq!(act.effects, vec![Effect::PromoteBaseline]);
    assert_eq!(act.status.phase, Some(Phase::Promoting));
    let rolling = Case::new(spec(), act.status.clone(), 2.0).act(promotion(Ok(()), BaselineState::RollingOut));
    assert!(rolling.effects.is_empty());
    assert_eq!(rolling.status, act.status.with_conditions_at(2.0), "waiting writes nothing new");
}

#[test]
fn a_rolled_out_baseline_takes_all_traffic_and_the_canary_goes() {
    let mut current = status(Phase::Promoting, 6, 0.0);
    current.canary_weight = Some(100);
    let act = Case::new(spec(), current, 1.0).act(promotion(Ok(()), BaselineState::RolledOut));
    assert_eq!(act.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: false }, Effect::DeleteCanary]);
    assert_eq!(act.status.phase, Some(Phase::Succeeded));
    assert_eq!(act.status.canary_weight, Some(0));
    assert_eq!(condition(&act.status, "Ready"), "True");
    assert_eq!(condition(&act.status, "Promoted"), "True");
    assert_eq!(act.event.map(|e| e.reason), Some("Promoted"));
}

#[test]
fn kserve_promotion_makes_the_candidate_the_default() {
    let spec = spec_with(json!({"serving": {"kserve": {"inferenceService": "fraud"}}, "traffic": null}));
    let act =
        Case::new(spec, status(Phase::Promoting, 6, 0.0), 1.0).act(promotion(Ok(()), BaselineState::NotApplicable));
    assert_eq!(act.effects, vec![Effect::PromoteKServe]);
    assert_eq!(act.status.phase, Some(Phase::Succeeded));
}

// ----- deletion -------------------------------------------------------------------------------------------------

#[test]
fn an_active_rollout_gets_the_finalizer_with_its_first_change() {
    let mut case = Case::new(spec(), status(Phase::Progressing, 0, 0.0), 1.0);
    case.has_finalizer = false;
    let act = case.act(Observation::Nothing);
    assert_eq!(
        act.effects,
        vec![Effect::AddFinalizer, Effect::SetWeight { weight: 10, create_canary: true, cohort: None, mirror: false }]
    );
    let mut done = Case::new(spec(), status(Phase::Succeeded, 6, 0.0), 1.0);
    done.has_finalizer = false;
    assert!(done.act(Observation::Nothing).effects.is_empty(), "a finished rollout needs no finalizer");
}

#[test]
fn deleting_a_rollout_at_full_weight_returns_all_traffic_first_and_records_it() {
    for phase in [Phase::Progressing, Phase::Paused, Phase::Promoting] {
        let mut current = status(phase, 5, 0.0);
        current.canary_weight = Some(100);
        let mut case = Case::new(spec(), current, 10.0);
        case.deleted_at = Some(9.0);
        let act = case.act(Observation::Nothing);
        assert_eq!(
            act.effects,
            vec![Effect::RouteAllToBaseline { after_failing_verdict: false }, Effect::DeleteCanary],
            "{phase:?}: the finalizer waits for the trail"
        );
        assert_eq!(act.status.canary_weight, Some(0));
        assert_eq!(act.status.phase, Some(Phase::RolledBack));
        assert_eq!(record_kinds(&act.status), vec!["finish"]);
        assert_eq!(act.event.map(|e| e.reason), Some("Deleted"));
    }
}

#[test]
fn a_deleted_rollout_goes_once_its_trail_is_written_or_the_grace_ran_out() {
    let mut case = Case::new(spec(), status(Phase::RolledBack, 1, 0.0), 10.0);
    case.deleted_at = Some(9.0);
    let act = case.act(Observation::Nothing);
    assert_eq!(act.effects.last(), Some(&Effect::ReleaseFinalizer));

    let mut waiting = Case::new(spec(), status(Phase::RolledBack, 1, 0.0), 10.0);
    waiting.status.outbox = Some(vec!["{}".into()]);
    waiting.deleted_at = Some(9.0);
    assert!(!waiting.act(Observation::Nothing).effects.contains(&Effect::ReleaseFinalizer));
    waiting.now = 9.0 + endings::DELETE_GRACE.as_secs_f64() + 1.0;
    assert_eq!(waiting.act(Observation::Nothing).effects.last(), Some(&Effect::ReleaseFinalizer));
}

#[test]
fn deleting_a_promoted_rollout_leaves_the_traffic_alone() {
    let mut case = Case::new(spec(), status(Phase::Succeeded, 6, 0.0), 10.0);
    case.deleted_at = Some(9.0);
    let act = case.act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::DeleteCanary, Effect::ReleaseFinalizer]);
}
