//! Decisions: the shadow step (mirror on, looks at the pairing counters, mirror off when it passes) and the start
//! gate that keeps shadow steps before live traffic.

use rampart_analysis::ArmPair;
use serde_json::json;

use super::*;

/// shadow (60 s, looks every 1 s, tolerance 0.01) -> setWeight 100.
fn shadow_spec() -> ModelRolloutSpec {
    spec_with(json!({"steps": [
        {"shadow": {"duration": "60s", "interval": "1s", "tolerance": 0.01}},
        {"setWeight": 100}
    ]}))
}

/// One shadow look: `agreements` of `pairs`, and the responses each side logged.
fn shadow_look(agreements: f64, pairs: f64, candidate: f64, baseline: f64) -> Observation {
    Observation::Look(Ok(LookCounts {
        metrics: vec![ratio("agreement", (agreements, pairs), (pairs, pairs))],
        requests: Some(ArmPair { canary: candidate, baseline }),
    }))
}

/// The status after the step's first reconcile (mirror on).
fn started() -> ModelRolloutStatus {
    let act = Case::new(shadow_spec(), status(Phase::Progressing, 0, 0.0), 0.1).act(Observation::Nothing);
    act.status
}

#[test]
fn a_shadow_step_creates_the_canary_and_mirrors_to_it_without_moving_live_traffic() {
    let act = Case::new(shadow_spec(), status(Phase::Progressing, 0, 0.0), 0.1).act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::SetWeight { weight: 0, create_canary: true, cohort: None, mirror: true }]);
    assert_eq!(act.status.canary_weight, Some(0));
    assert_eq!(act.status.current_step, Some(0));
    assert_eq!(act.event.map(|e| e.reason), Some("ShadowStarted"));
}

#[test]
fn a_shadow_look_asks_for_the_pairing_counters() {
    let need = Case::new(shadow_spec(), started(), 5.0).need();
    assert!(matches!(need, Need::ShadowLook { .. }), "{need:?}");
}

#[test]
fn agreeing_predictions_pass_and_the_mirror_is_removed_before_the_next_step() {
    let act = Case::new(shadow_spec(), started(), 30.0).act(shadow_look(20_000.0, 20_000.0, 20_000.0, 20_000.0));
    assert_eq!(act.status.analysis.as_ref().and_then(|a| a.verdict), Some(rampart_api::v1alpha1::Verdict::Pass));
    assert_eq!(act.effects, vec![Effect::SetWeight { weight: 0, create_canary: false, cohort: None, mirror: false }]);
    assert_eq!(act.status.current_step, Some(1));
    assert_eq!(act.event.map(|e| e.reason), Some("ShadowPassed"));
}

#[test]
fn three_percent_disagreement_fails_a_one_percent_tolerance_with_the_estimate() {
    let act = Case::new(shadow_spec(), started(), 30.0).act(shadow_look(19_400.0, 20_000.0, 20_000.0, 20_000.0));
    assert_eq!(act.status.phase, Some(Phase::RollingBack), "{:?}", act.status.message);
    let message = act.status.message.unwrap();
    assert!(message.contains("shadow comparison failed") && message.contains("agreement"), "{message}");
    assert!(act.effects.contains(&Effect::RouteAllToBaseline { after_failing_verdict: true }), "{:?}", act.effects);
}

#[test]
fn a_candidate_that_drops_mirrored_requests_fails_the_pairing_check() {
    // 20% of the candidate's answers are missing; the pairs that did form all agree.
    let act = Case::new(shadow_spec(), started(), 30.0).act(shadow_look(16_000.0, 16_000.0, 16_000.0, 20_000.0));
    assert_eq!(act.status.phase, Some(Phase::RollingBack), "{:?}", act.status.message);
    let message = act.status.message.unwrap();
    assert!(message.contains("pairing check failed"), "{message}");
    assert!(message.contains("16000") && message.contains("20000"), "{message}");
}

#[test]
fn a_shadow_step_after_live_traffic_is_refused_before_anything_is_created() {
    let spec = spec_with(json!({"steps": [
        {"setWeight": 10},
        {"shadow": {"duration": "60s"}},
        {"setWeight": 100}
    ]}));
    let act = Case::new(spec, ModelRolloutStatus::default(), 0.0).act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.effects.is_empty(), "{:?}", act.effects);
    let message = act.status.message.unwrap();
    assert!(message.contains("step 1 is a shadow step after step 0"), "{message}");
}
