//! Decisions: the bake after promotion (`spec.bake`): entering it, its looks over late labels, rolling back after
//! promotion and finishing the promotion.

use std::time::Duration;

use rampart_api::v1alpha1::{BakeOutcome, BakeStatus};
use serde_json::json;

use super::*;

/// The example spec with a 60 s bake, looks every 5 s, the previous version kept at 1 replica.
fn baking_spec() -> ModelRolloutSpec {
    spec_with(json!({"bake": {"duration": "60s", "interval": "5s", "previousReplicas": 1}}))
}

fn promotion(baseline: BaselineState) -> Observation {
    Observation::Promotion(PromotionObservation {
        registry: Ok(()),
        baseline,
        capacity: None,
        baseline_replicas: Some(2),
    })
}

/// Baking since 100 s, the canary having first had traffic at 5 s, the baseline scaled down from 2 replicas.
fn baking(started: f64) -> ModelRolloutStatus {
    let mut status = status(Phase::Baking, 6, started);
    status.canary_weight = Some(100);
    status.canary_started_at = Some(at(5.0).to_string());
    status.bake = Some(BakeStatus {
        started_at: Some(at(started).to_string()),
        counting_since: Some(at(5.0).to_string()),
        baseline_replicas: Some(2),
        outcome: None,
    });
    status
}

#[test]
fn the_first_weight_above_zero_notes_when_the_canary_started() {
    let act = Case::new(spec(), status(Phase::Progressing, 0, 0.0), 3.0).act(Observation::Nothing);
    assert_eq!(act.status.canary_started_at, Some(at(3.0).to_string()));
    let mut later = status(Phase::Progressing, 2, 10.0);
    later.canary_weight = Some(10);
    later.canary_started_at = Some(at(3.0).to_string());
    let act = Case::new(spec(), later, 11.0).act(Observation::Nothing);
    assert_eq!(act.status.canary_started_at, Some(at(3.0).to_string()), "a later weight keeps the first time");
}

#[test]
fn a_recorded_promotion_with_a_bake_sends_all_traffic_to_the_candidate_and_keeps_the_previous_version_ready() {
    let mut promoting = status(Phase::Promoting, 6, 90.0);
    promoting.canary_weight = Some(100);
    promoting.canary_started_at = Some(at(5.0).to_string());
    let act = Case::new(baking_spec(), promoting, 100.0).act(promotion(BaselineState::ServesPrevious));
    assert_eq!(
        act.effects,
        vec![Effect::SetWeight { weight: 100, create_canary: false, cohort: None, mirror: false }],
        "the baseline Deployment keeps the previous version (no PromoteBaseline)"
    );
    assert_eq!(act.status.phase, Some(Phase::Baking));
    let bake = act.status.bake.clone().unwrap();
    assert_eq!(bake.counting_since, Some(at(5.0).to_string()), "counted from the first canary step");
    assert_eq!(bake.baseline_replicas, Some(2), "the replicas to give back");
    assert_eq!(bake.outcome, None);
    assert_eq!(act.status.step_started_at, Some(at(100.0).to_string()));
    assert_eq!(act.requeue, Requeue::After(Duration::from_secs(5)));
    assert_eq!(act.event.as_ref().map(|e| e.reason), Some("Baking"));
    assert!(act.status.message.clone().unwrap().contains("v1 ready on Deployment fraud to take traffic back"));
    assert_eq!(condition(&act.status, "Promoted"), "False", "Promoted once the bake passed");
    assert_eq!(condition(&act.status, "Reconciling"), "True");
}

#[test]
fn a_bake_look_counts_from_the_first_canary_step_so_late_labels_count() {
    let case = Case::new(baking_spec(), baking(100.0), 106.5);
    assert_eq!(case.need(), Need::Look { since: at(5.0) });
}

#[test]
fn a_failing_bake_look_rolls_back_after_promotion_traffic_first_then_the_registry() {
    let case = Case::new(baking_spec(), baking(100.0), 106.5);
    // The late labels show the candidate 15 points worse than the previous version.
    let act = case.act(look((3500.0, 5000.0), (4600.0, 5000.0)));
    assert_eq!(
        act.effects,
        vec![Effect::RouteAllToBaseline { after_failing_verdict: true }, Effect::ScaleBaseline { replicas: 2 }],
        "traffic back to the previous version first, then its replicas"
    );
    assert_eq!(act.status.phase, Some(Phase::RollingBack));
    assert_eq!(act.status.canary_weight, Some(0));
    assert_eq!(act.status.bake.as_ref().and_then(|b| b.outcome), Some(BakeOutcome::RolledBack));
    let message = act.status.message.clone().unwrap();
    assert!(message.starts_with("rolled back after promotion to v1: bake failed: accuracy:"), "{message}");
    assert_eq!(act.event.as_ref().map(|e| e.reason), Some("RolledBackAfterPromotion"));
    assert_eq!(record_kinds(&act.status), vec!["rollback-after-promotion"], "no verdict records after promotion");
    let TrailRecord::RollbackAfterPromotion { uid, reason, statistics } = &records(&act.status)[0] else {
        panic!("a rollback after promotion")
    };
    assert_eq!(uid, "uid-1");
    assert_eq!(reason, &message);
    assert_eq!(statistics["metrics"][0]["verdict"], "Fail", "{statistics}");
    assert_eq!(statistics["countingSince"], at(5.0).to_string());

    // Then the usual end of a rollback: the canary (the candidate) goes.
    let done = Case::new(baking_spec(), act.status, 107.0).act(Observation::Nothing);
    assert_eq!(done.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: false }, Effect::DeleteCanary]);
    assert_eq!(done.status.phase, Some(Phase::RolledBack));
}

#[test]
fn a_bake_look_without_enough_labels_keeps_baking() {
    let act = Case::new(baking_spec(), baking(100.0), 106.5).act(look((10.0, 12.0), (11.0, 12.0)));
    assert_eq!(
        act.effects,
        vec![Effect::ScaleBaseline { replicas: 1 }],
        "the previous version is kept at previousReplicas once the replicas to give back are in status"
    );
    assert_eq!(act.status.phase, Some(Phase::Baking));
    assert!(act.status.message.unwrap().starts_with("baking: "));
    assert_eq!(act.requeue, Requeue::After(Duration::from_secs(5)));
}

#[test]
fn a_canary_pod_refusing_the_artifact_during_the_bake_rolls_back_after_promotion() {
    let mut case = Case::new(baking_spec(), baking(100.0), 101.0);
    case.canary_refused = Some("model.onnx: sha256 differs from the signed manifest".into());
    let act = case.act(Observation::Nothing);
    assert_eq!(act.effects[0], Effect::RouteAllToBaseline { after_failing_verdict: false });
    assert_eq!(act.status.phase, Some(Phase::RollingBack));
    assert!(act.status.message.unwrap().contains("sha256 differs"));
}

#[test]
fn a_bake_that_ends_without_a_fail_finishes_the_promotion_and_gives_the_baseline_its_replicas_back() {
    let act = Case::new(baking_spec(), baking(100.0), 161.0).act(look((900.0, 1000.0), (900.0, 1000.0)));
    assert!(act.effects.is_empty());
    assert_eq!(act.status.phase, Some(Phase::Promoting));
    assert_eq!(act.status.bake.as_ref().and_then(|b| b.outcome), Some(BakeOutcome::Passed));
    assert_eq!(act.event.as_ref().map(|e| e.reason), Some("BakePassed"));

    // Promoting again does not bake again: the baseline moves to the candidate, with its replicas back.
    let moving = Case::new(baking_spec(), act.status, 162.0).act(promotion(BaselineState::ServesPrevious));
    assert_eq!(moving.effects, vec![Effect::ScaleBaseline { replicas: 2 }, Effect::PromoteBaseline]);
    let done = Case::new(baking_spec(), moving.status, 170.0).act(promotion(BaselineState::RolledOut));
    assert_eq!(done.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: false }, Effect::DeleteCanary]);
    assert_eq!(done.status.phase, Some(Phase::Succeeded));
    assert_eq!(condition(&done.status, "Promoted"), "True");
}

#[test]
fn an_abort_during_the_bake_rolls_back_after_promotion() {
    let mut case = Case::new(baking_spec(), baking(100.0), 101.0);
    case.intent.abort = true;
    let act = case.act(Observation::Nothing);
    assert_eq!(act.effects[0], Effect::RouteAllToBaseline { after_failing_verdict: false });
    assert_eq!(act.status.phase, Some(Phase::RollingBack));
    assert_eq!(record_kinds(&act.status), vec!["rollback-after-promotion"]);
    assert!(act.status.message.unwrap().contains("aborted during the bake"));
}

#[test]
fn a_promote_request_does_not_end_the_bake() {
    // `rampart promote` may have skipped the steps earlier; the annotation stays, and the bake still runs.
    let mut case = Case::new(baking_spec(), baking(100.0), 101.0);
    case.intent.promote = true;
    let act = case.act(Observation::Nothing);
    assert!(act.effects.is_empty());
    assert_eq!(act.status.phase, Some(Phase::Baking));
}

#[test]
fn deleting_a_baking_rollout_returns_traffic_and_production_to_the_previous_version() {
    let mut case = Case::new(baking_spec(), baking(100.0), 110.0);
    case.deleted_at = Some(109.0);
    let act = case.act(Observation::Nothing);
    assert_eq!(
        act.effects[..2],
        [Effect::RouteAllToBaseline { after_failing_verdict: false }, Effect::ScaleBaseline { replicas: 2 }]
    );
    assert!(act.effects.contains(&Effect::DeleteCanary));
    assert_eq!(record_kinds(&act.status), vec!["rollback-after-promotion"]);
    assert_eq!(act.status.phase, Some(Phase::RolledBack));
}

#[test]
fn without_a_bake_promotion_is_unchanged() {
    let act = Case::new(spec(), status(Phase::Promoting, 6, 0.0), 1.0).act(promotion(BaselineState::ServesPrevious));
    assert_eq!(act.effects, vec![Effect::PromoteBaseline]);
    assert_eq!(act.status.bake, None);
}
