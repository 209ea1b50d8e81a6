//! Capacity-aware steps (`serving.deployment.capacity`): for clusters that cannot run a full canary next to a full
//! baseline (GPU serving). The canary's pods grow as the baseline's shrink, so the two together never ask for more
//! than the baseline's replicas at the start plus the surge budget, and the canary's weight follows its ready share
//! of the pods, never ahead of it.
//!
//! Each reconcile makes one [`plan`] from the replicas it sees: shrink what has more pods than it needs (never below
//! what keeps the ready pods of both at least the baseline's size), grow the other side into the room that leaves,
//! and set the weight to the canary's ready share capped by the step's weight. Traffic leaves a side before it shrinks
//! and reaches a side only after its pods are ready, so the order of the effects is: a lower weight, the shrinking
//! Deployment, the growing one, a higher weight.
//!
//! Promotion moves everything to the canary first (the candidate serves all traffic from its own pods), swaps the
//! baseline's template while it has no pods, then moves back. A rollback routes all traffic to the baseline at once
//! (the bad model goes first, whatever the baseline's size), scales the canary to zero and the baseline back to its
//! size.

use std::time::Duration;

use rampart_api::v1alpha1::{Capacity, CapacityStatus, HeaderRule};

use rampart_api::{ModelRolloutSpec, ModelRolloutStatus};

use super::Effect;

/// Replicas of one Deployment as seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pods {
    /// `spec.replicas`.
    pub wanted: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
}

/// Both Deployments (the canary's pods are zero while it does not exist).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapacityObservation {
    /// The baseline Deployment.
    pub baseline: Pods,
    /// The canary Deployment.
    pub canary: Pods,
}

/// One move towards a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    /// The baseline's new `spec.replicas`.
    pub baseline: i32,
    /// The canary's new `spec.replicas`.
    pub canary: i32,
    /// The canary's weight after the move.
    pub weight: i32,
    /// The split is reached: nothing is left to move.
    pub done: bool,
}

/// Canary pods for `weight` percent of `total`: rounded up (a canary with traffic has at least one pod), at most all.
pub fn canary_pods(weight: i32, total: i32) -> i32 {
    if weight <= 0 || total <= 0 {
        return 0;
    }
    let pods = (i64::from(total) * i64::from(weight.min(100)) + 99) / 100;
    i32::try_from(pods).unwrap_or(total).clamp(1, total)
}

/// The canary's ready share of the ready pods, in whole percent (rounded down).
pub fn ready_share(canary_ready: i32, baseline_ready: i32) -> i32 {
    let (canary, baseline) = (i64::from(canary_ready.max(0)), i64::from(baseline_ready.max(0)));
    if canary + baseline == 0 {
        return 0;
    }
    i32::try_from(canary * 100 / (canary + baseline)).unwrap_or(0)
}

/// The next move from `seen` towards `target_canary` canary pods out of `total`, within `surge` extra pods, with the
/// weight capped at `max_weight`. The move is done when the pods are there and ready and the weight is the canary's
/// share of them (capped): 50% on 4 of 8 pods, 0% once the canary has none.
pub fn plan(total: i32, surge: i32, target_canary: i32, max_weight: i32, seen: CapacityObservation) -> Move {
    let target_canary = target_canary.clamp(0, total);
    let target_baseline = total - target_canary;
    let ceiling = total + surge.max(0);
    let (base, canary) = (seen.baseline, seen.canary);
    let mut new_base = base.wanted;
    let mut new_canary = canary.wanted;
    // Shrink first, and only as far as the other side's ready pods keep the ready total at the baseline's size.
    if base.wanted > target_baseline {
        new_base = target_baseline.max(total - canary.ready).min(base.wanted);
    }
    if canary.wanted > target_canary {
        new_canary = target_canary.max(total - base.ready).min(canary.wanted);
    }
    // Then grow into the room left under the ceiling.
    if new_canary < target_canary {
        new_canary = target_canary.min(ceiling - new_base).max(new_canary);
    }
    if new_base < target_baseline {
        new_base = target_baseline.min(ceiling - new_canary).max(new_base);
    }
    // Traffic follows the pods that are ready after the move (a shrinking canary's pods count as gone).
    let weight = max_weight.clamp(0, 100).min(ready_share(canary.ready.min(new_canary), base.ready));
    let done = new_base == target_baseline
        && new_canary == target_canary
        && base.wanted == target_baseline
        && canary.wanted == target_canary
        && canary.ready >= target_canary
        && base.ready >= target_baseline
        && weight == max_weight.clamp(0, 100).min(ready_share(target_canary, target_baseline));
    Move { baseline: new_base, canary: new_canary, weight, done }
}

/// The effects of `step` from `seen`, in the order that keeps traffic on ready pods and pods under the ceiling:
/// a lower weight, the shrinking Deployment, the growing one, a higher weight (an unchanged weight is not written).
pub fn effects(
    step: &Move,
    seen: CapacityObservation,
    current_weight: i32,
    cohort: Option<Vec<HeaderRule>>,
) -> Vec<Effect> {
    let weight = Effect::SetWeight { weight: step.weight, create_canary: false, cohort, mirror: false };
    let mut effects = Vec::new();
    if step.weight < current_weight {
        effects.push(weight.clone());
    }
    let baseline = (step.baseline != seen.baseline.wanted).then_some(Effect::ScaleBaseline { replicas: step.baseline });
    let canary = (step.canary != seen.canary.wanted).then_some(Effect::ScaleCanary { replicas: step.canary });
    if step.baseline < seen.baseline.wanted {
        effects.extend(baseline);
        effects.extend(canary);
    } else {
        effects.extend(canary);
        effects.extend(baseline);
    }
    // An unchanged weight writes nothing: a move that only waits for pods does not touch the route.
    if step.weight > current_weight {
        effects.push(weight);
    }
    effects
}

/// `6/2 ready (baseline/canary)` for messages and status.
pub fn describe(seen: CapacityObservation) -> String {
    format!(
        "baseline {}/{} ready, canary {}/{} ready",
        seen.baseline.ready, seen.baseline.wanted, seen.canary.ready, seen.canary.wanted
    )
}

/// Keeps the ready counts just seen in `status.capacity.ready` (`baseline/canary`).
pub fn note_ready(status: &mut ModelRolloutStatus, seen: CapacityObservation) {
    if let Some(capacity) = status.capacity.as_mut() {
        capacity.ready = Some(format!("{}/{}", seen.baseline.ready, seen.canary.ready));
    }
}

/// How often a move looks again when no Deployment change wakes it first.
pub const MOVE_POLL: Duration = Duration::from_secs(2);

/// GPUs one pod of `template` asks for: the sum over its containers of every `*/gpu` resource, from requests or, when
/// a container requests none, its limits (Kubernetes sets an extended resource's request from its limit).
pub fn gpus_per_pod(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> Result<i32, String> {
    let mut total: i64 = 0;
    for container in template.spec.iter().flat_map(|s| s.containers.iter()) {
        let resources = container.resources.as_ref();
        let gpus = |map: Option<
            &std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >| {
            map.into_iter()
                .flatten()
                .filter(|(name, _)| name.ends_with("/gpu"))
                .map(|(name, quantity)| {
                    quantity.0.trim().parse::<i64>().map_err(|_| {
                        format!(
                            "container {} asks for {name}: {:?}, which is not a whole number of GPUs",
                            container.name, quantity.0
                        )
                    })
                })
                .collect::<Result<Vec<i64>, String>>()
        };
        let requested = gpus(resources.and_then(|r| r.requests.as_ref()))?;
        let counted = if requested.is_empty() { gpus(resources.and_then(|r| r.limits.as_ref()))? } else { requested };
        total = total.saturating_add(counted.iter().copied().map(|g| g.max(0)).sum());
    }
    i32::try_from(total).map_err(|_| format!("{total} GPUs per pod is more than Rampart counts"))
}

/// The sizes a rollout with `capacity` works within, from the baseline's replicas and its pods' GPUs; or why the
/// budget cannot work.
pub fn sizes(
    capacity: &Capacity,
    deployment: &str,
    replicas: i32,
    gpus: Result<i32, String>,
) -> Result<CapacityStatus, String> {
    if replicas < 1 {
        return Err(format!(
            "capacity-aware steps need a running baseline, and Deployment {deployment} has {replicas} replicas: scale \
             it up, then rampart retry"
        ));
    }
    let (surge, gpus_per_pod) = match (capacity.surge_replicas, capacity.surge_gpus) {
        (Some(pods), _) => (pods, gpus.ok().filter(|g| *g > 0)),
        (None, Some(budget)) => {
            let per_pod = gpus.map_err(|why| format!("capacity.surgeGPUs cannot be counted: {why}"))?;
            if per_pod < 1 {
                return Err(format!(
                    "capacity.surgeGPUs is {budget}, but the pods of Deployment {deployment} request no GPUs (no \
                     nvidia.com/gpu or other */gpu resource): use capacity.surgeReplicas instead"
                ));
            }
            if budget < per_pod {
                return Err(format!(
                    "capacity.surgeGPUs is {budget}, less than one pod of Deployment {deployment} needs ({per_pod} \
                     GPUs), so the canary could never start: raise surgeGPUs to at least {per_pod}"
                ));
            }
            (budget / per_pod, Some(per_pod))
        }
        (None, None) => return Err("capacity needs surgeReplicas or surgeGPUs".into()),
    };
    Ok(CapacityStatus { baseline_replicas: replicas, surge_replicas: surge, gpus_per_pod, ready: None })
}

/// The effects that give the baseline its pods back after traffic left the canary (rollback, deletion): the canary to
/// zero first, so the two never exceed the budget, then the baseline to its size.
pub fn return_pods(spec: &ModelRolloutSpec, status: &ModelRolloutStatus) -> Vec<Effect> {
    match &status.capacity {
        Some(sizes) if spec.serving.deployment.is_some() => {
            vec![Effect::ScaleCanary { replicas: 0 }, Effect::ScaleBaseline { replicas: sizes.baseline_replicas }]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays a Deployment controller that makes every wanted pod ready at once, and checks the ceiling and the
    /// weight on every move.
    fn converge(
        total: i32,
        surge: i32,
        from: CapacityObservation,
        target: i32,
        max_weight: i32,
    ) -> (CapacityObservation, i32, usize) {
        let mut seen = from;
        for moves in 0..1000 {
            let step = plan(total, surge, target, max_weight, seen);
            // The shrinking side goes first, so the pods after each single change stay under the ceiling.
            let after_shrink = step.baseline.min(seen.baseline.wanted) + step.canary.min(seen.canary.wanted);
            assert!(after_shrink <= total + surge, "{step:?} from {seen:?}");
            assert!(step.baseline + step.canary <= total + surge, "{step:?} from {seen:?}");
            // The weight never exceeds the canary's share of the pods that are ready once the shrinks took effect.
            let share = ready_share(seen.canary.ready.min(step.canary), seen.baseline.ready.min(step.baseline));
            assert!(step.weight <= share, "{step:?} from {seen:?}: share {share}");
            if step.done {
                return (seen, step.weight, moves);
            }
            seen = CapacityObservation {
                baseline: Pods { wanted: step.baseline, ready: step.baseline },
                canary: Pods { wanted: step.canary, ready: step.canary },
            };
        }
        panic!("no convergence from {from:?} to {target}");
    }

    fn at(base: i32, canary: i32) -> CapacityObservation {
        CapacityObservation {
            baseline: Pods { wanted: base, ready: base },
            canary: Pods { wanted: canary, ready: canary },
        }
    }

    #[test]
    fn canary_pods_round_up_and_never_exceed_the_total() {
        assert_eq!(canary_pods(10, 8), 1);
        assert_eq!(canary_pods(50, 8), 4);
        assert_eq!(canary_pods(51, 8), 5);
        assert_eq!(canary_pods(100, 8), 8);
        assert_eq!(canary_pods(0, 8), 0);
        assert_eq!(canary_pods(1, 1), 1);
    }

    #[test]
    fn a_surge_of_one_pod_moves_eight_replicas_one_pod_at_a_time() {
        let (seen, weight, moves) = converge(8, 1, at(8, 0), 4, 50);
        assert_eq!(seen, at(4, 4));
        assert_eq!(weight, 50);
        assert!(moves >= 4, "one pod per move: {moves}");
        let (seen, weight, _) = converge(8, 1, seen, 8, 100);
        assert_eq!((seen, weight), (at(0, 8), 100));
        // And back (promotion's return, or a setWeight 0).
        let (seen, weight, _) = converge(8, 1, seen, 0, 100);
        assert_eq!((seen, weight), (at(8, 0), 0));
    }

    #[test]
    fn the_weight_waits_for_ready_pods() {
        // The canary asked for one pod that is not ready: no traffic yet.
        let seen = CapacityObservation { baseline: Pods { wanted: 8, ready: 8 }, canary: Pods { wanted: 1, ready: 0 } };
        let step = plan(8, 1, 4, 50, seen);
        assert_eq!((step.baseline, step.canary, step.weight, step.done), (8, 1, 0, false));
        // Ready: one pod of nine, 11%, and the baseline may now give one pod up.
        let seen = CapacityObservation { baseline: Pods { wanted: 8, ready: 8 }, canary: Pods { wanted: 1, ready: 1 } };
        let step = plan(8, 1, 4, 50, seen);
        assert_eq!((step.baseline, step.canary, step.weight), (7, 2, 11));
        let order = effects(&step, seen, 0, None);
        assert_eq!(
            order,
            vec![
                Effect::ScaleBaseline { replicas: 7 },
                Effect::ScaleCanary { replicas: 2 },
                Effect::SetWeight { weight: 11, create_canary: false, cohort: None, mirror: false },
            ]
        );
    }

    #[test]
    fn a_lower_weight_goes_before_the_canary_shrinks() {
        let seen = CapacityObservation { baseline: Pods { wanted: 1, ready: 1 }, canary: Pods { wanted: 8, ready: 8 } };
        let step = plan(8, 1, 0, 100, seen);
        assert_eq!((step.baseline, step.canary), (2, 7));
        assert_eq!(step.weight, ready_share(7, 1));
        let order = effects(&step, seen, 100, None);
        assert!(matches!(order[0], Effect::SetWeight { weight: 87, .. }), "{order:?}");
        assert_eq!(order[1], Effect::ScaleCanary { replicas: 7 });
        assert_eq!(order[2], Effect::ScaleBaseline { replicas: 2 });
    }

    #[test]
    fn a_larger_budget_moves_faster_and_lost_pods_lower_the_weight() {
        let (_, _, slow) = converge(8, 1, at(8, 0), 8, 100);
        let (_, _, fast) = converge(8, 4, at(8, 0), 8, 100);
        assert!(fast < slow, "surge 4 took {fast} moves, surge 1 {slow}");
        // A canary pod dies at 50%: the weight drops to the ready share.
        let seen = CapacityObservation { baseline: Pods { wanted: 4, ready: 4 }, canary: Pods { wanted: 4, ready: 3 } };
        let step = plan(8, 1, 4, 50, seen);
        assert_eq!(step.weight, ready_share(3, 4));
        assert!(!step.done);
    }

    #[test]
    fn the_gpu_budget_is_counted_in_pods() {
        let capacity = Capacity { surge_replicas: None, surge_gpus: Some(3) };
        let sizes = sizes(&capacity, "model", 8, Ok(2)).unwrap();
        assert_eq!((sizes.surge_replicas, sizes.gpus_per_pod), (1, Some(2)));
        let too_small = super::sizes(&Capacity { surge_replicas: None, surge_gpus: Some(1) }, "model", 8, Ok(2));
        assert!(too_small.unwrap_err().contains("raise surgeGPUs to at least 2"));
        let none = super::sizes(&capacity, "model", 8, Ok(0));
        assert!(none.unwrap_err().contains("use capacity.surgeReplicas"));
        let empty = super::sizes(&capacity, "model", 0, Ok(1));
        assert!(empty.unwrap_err().contains("0 replicas"));
    }

    #[test]
    fn gpus_come_from_requests_or_limits() {
        let template: k8s_openapi::api::core::v1::PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [
                {"name": "server", "resources": {"limits": {"nvidia.com/gpu": "2", "cpu": "4"}}},
                {"name": "sidecar", "resources": {"requests": {"amd.com/gpu": "1"}, "limits": {"amd.com/gpu": "1"}}},
                {"name": "logger"},
            ]}
        }))
        .unwrap();
        assert_eq!(gpus_per_pod(&template), Ok(3));
        let odd: k8s_openapi::api::core::v1::PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "server", "resources": {"limits": {"nvidia.com/gpu": "500m"}}}]}
        }))
        .unwrap();
        assert!(gpus_per_pod(&odd).unwrap_err().contains("not a whole number"));
    }
}
