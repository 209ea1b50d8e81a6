//! Decisions: capacity-aware steps (the sizes taken at the start, one move per reconcile, promotion through the
//! canary, and a rollback that gives the baseline its pods back).

use serde_json::json;

use super::*;
use crate::decide::capacity::{CapacityObservation, Pods};
use rampart_api::v1alpha1::CapacityStatus;

fn capacity_spec(budget: serde_json::Value) -> ModelRolloutSpec {
    spec_with(json!({
        "serving": {"deployment": {"name": "fraud", "modelEnv": "MODEL_URI", "capacity": budget}},
    }))
}

fn with_sizes(mut status: ModelRolloutStatus) -> ModelRolloutStatus {
    status.capacity =
        Some(CapacityStatus { baseline_replicas: 8, surge_replicas: 1, gpus_per_pod: Some(1), ready: None });
    status
}

fn seen(base: (i32, i32), canary: (i32, i32)) -> Observation {
    Observation::Capacity(Ok(CapacityObservation {
        baseline: Pods { wanted: base.0, ready: base.1 },
        canary: Pods { wanted: canary.0, ready: canary.1 },
    }))
}

fn start(spec: ModelRolloutSpec, replicas: i32, gpus: i32) -> Act {
    Case::new(spec, ModelRolloutStatus::default(), 0.0).act(Observation::Start(StartObservation {
        signature: Ok(Some(signer())),
        baseline: Ok(BaselineFacts {
            version: Some("v1".into()),
            uri: Some("s3://models/fraud/v1/".into()),
            replicas: Some(replicas),
            gpus_per_pod: Some(Ok(gpus)),
        }),
    }))
}

#[test]
fn the_start_takes_the_baseline_size_and_the_budget_in_pods() {
    let act = start(capacity_spec(json!({"surgeGPUs": 4})), 8, 2);
    assert_eq!(act.status.phase, Some(Phase::Checking));
    let sizes = act.status.capacity.unwrap();
    assert_eq!((sizes.baseline_replicas, sizes.surge_replicas, sizes.gpus_per_pod), (8, 2, Some(2)));
}

#[test]
fn a_budget_smaller_than_one_pod_fails_before_traffic() {
    let act = start(capacity_spec(json!({"surgeGPUs": 1})), 8, 2);
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.effects.iter().all(|e| !matches!(e, Effect::SetWeight { .. } | Effect::ScaleCanary { .. })));
    let message = act.status.message.unwrap();
    assert!(message.contains("raise surgeGPUs to at least 2") && message.contains("no traffic was moved"), "{message}");
    assert_eq!(act.event.map(|e| e.reason), Some("CapacityUnusable"));
}

#[test]
fn a_capacity_step_moves_one_pod_at_a_time_and_advances_only_when_ready() {
    let case = Case::new(capacity_spec(json!({"surgeGPUs": 1})), with_sizes(status(Phase::Progressing, 0, 0.0)), 1.0);
    assert_eq!(case.need(), Need::Capacity);
    // Nothing ready on the canary yet: one pod is asked for, no traffic.
    let first = case.act(seen((8, 8), (0, 0)));
    assert_eq!(first.effects, vec![Effect::ScaleCanary { replicas: 1 }], "the route is not written for weight 0");
    assert_eq!(first.status.current_step, Some(0), "the step waits for its pods");
    assert!(first.status.message.unwrap().contains("follows its ready pods"));
    // setWeight 10 of 8 pods is one pod: once it is ready and the baseline gave one up, the step is done.
    let done = case.act(seen((7, 7), (1, 1)));
    assert_eq!(done.effects, vec![Effect::SetWeight { weight: 10, create_canary: false, cohort: None, mirror: false }]);
    assert_eq!(done.status.current_step, Some(1));
    assert_eq!(done.status.canary_weight, Some(10));
    assert_eq!(done.event.map(|e| e.reason), Some("WeightSet"));
}

#[test]
fn a_rollback_routes_traffic_first_then_gives_the_baseline_its_pods_back() {
    let mut current = with_sizes(status(Phase::Progressing, 2, 0.0));
    current.canary_weight = Some(50);
    let mut case = Case::new(capacity_spec(json!({"surgeReplicas": 1})), current, 1.0);
    case.intent.abort = true;
    let act = case.act(Observation::Nothing);
    assert_eq!(
        act.effects,
        vec![
            Effect::RouteAllToBaseline { after_failing_verdict: false },
            Effect::ScaleCanary { replicas: 0 },
            Effect::ScaleBaseline { replicas: 8 },
        ]
    );
    assert_eq!(act.status.phase, Some(Phase::RollingBack));
}

fn promotion(baseline: BaselineState, base: (i32, i32), canary: (i32, i32)) -> Observation {
    let Observation::Capacity(capacity) = seen(base, canary) else { unreachable!() };
    Observation::Promotion(PromotionObservation {
        registry: Ok(()),
        baseline,
        capacity: Some(capacity),
        baseline_replicas: Some(8),
    })
}

#[test]
fn promotion_moves_everything_to_the_canary_swaps_the_template_and_moves_back() {
    let spec = capacity_spec(json!({"surgeGPUs": 1}));
    let mut current = with_sizes(status(Phase::Promoting, 6, 0.0));
    current.canary_weight = Some(50);
    let case = Case::new(spec.clone(), current.clone(), 1.0);
    // At 50%: the canary grows first; the template stays.
    let growing = case.act(promotion(BaselineState::ServesPrevious, (4, 4), (4, 4)));
    assert!(growing.effects.contains(&Effect::ScaleCanary { replicas: 5 }), "{:?}", growing.effects);
    assert!(!growing.effects.contains(&Effect::PromoteBaseline));
    assert_eq!(growing.status.phase, Some(Phase::Promoting));
    // All on the canary: the baseline takes the candidate while it has no pods.
    current.canary_weight = Some(100);
    let case = Case::new(spec.clone(), current.clone(), 1.0);
    let swap = case.act(promotion(BaselineState::ServesPrevious, (0, 0), (8, 8)));
    assert_eq!(swap.effects.last(), Some(&Effect::PromoteBaseline));
    // Back on the baseline, which serves the candidate: the canary goes and the rollout succeeds.
    current.canary_weight = Some(0);
    let case = Case::new(spec, current, 1.0);
    let done = case.act(promotion(BaselineState::RolledOut, (8, 8), (0, 0)));
    assert_eq!(done.status.phase, Some(Phase::Succeeded));
    assert!(
        done.effects.ends_with(&[Effect::RouteAllToBaseline { after_failing_verdict: false }, Effect::DeleteCanary])
    );
}
