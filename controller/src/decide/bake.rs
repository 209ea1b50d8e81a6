//! Baking (`spec.bake`): once the registry recorded the promotion (`production` names the candidate), the candidate
//! takes all traffic, still served by the canary Deployment, while the baseline Deployment keeps serving the previous
//! version, ready to take traffic back. Labels that arrive late keep coming in, and each look judges the ratio
//! metrics, candidate against the previous version, counted from the first canary step. A Fail rolls back after
//! promotion (traffic at once, then `production` through the registry trail); a window that ends without one
//! finishes the promotion (the baseline Deployment moves to the candidate).

use rampart_analysis::{StepVerdict, Verdict};
use rampart_api::v1alpha1::{Bake, BakeOutcome, BakeStatus, MetricKind};
use rampart_api::{ModelRolloutStatus, Phase};

use super::analysis::{Ending, Plan, describe_failure, interval, look_with};
use super::endings::{NEXT, act, begin_step, record, scale_down_delay, stay};
use super::{DecideError, Decision, Effect, Facts, Need, Note, Requeue, parse_duration, step_elapsed};
use crate::analysis::analysis_config;
use crate::status::{self, format_duration, parse_time};
use crate::trail::TrailRecord;

/// The bake's looks are kept as the step after the last one, so they start from nothing.
fn bake_index(facts: &Facts<'_>) -> i32 {
    i32::try_from(facts.spec.steps.len()).unwrap_or(i32::MAX)
}

/// The promotion is recorded: all traffic to the candidate, the previous version kept (at `previousReplicas`), and
/// the bake starts.
pub fn enter(
    facts: &Facts<'_>,
    mut status: ModelRolloutStatus,
    bake: &Bake,
    baseline_replicas: Option<i32>,
) -> Result<Decision, DecideError> {
    let duration = parse_duration(&bake.duration)?;
    let first_look = interval(facts, bake.interval.as_deref())?.min(duration);
    let weight = status.canary_weight.unwrap_or(0);
    // Promoted by hand before any traffic moved: the canary Deployment is made now.
    let effects = vec![Effect::SetWeight { weight: 100, create_canary: weight == 0, cohort: None, mirror: false }];
    // The baseline is scaled to `previousReplicas` by the bake's looks, after this status (with the replicas to give
    // back) is written: a restart in between cannot mistake the scaled-down count for the original one.
    let kept_replicas = match (bake.previous_replicas, baseline_replicas) {
        (Some(previous), Some(current)) if previous != current => Some(current),
        _ => None,
    };
    status.canary_weight = Some(100);
    let counting_since = status.canary_started_at.clone().unwrap_or_else(|| facts.now.to_string());
    status.bake = Some(BakeStatus {
        started_at: Some(facts.now.to_string()),
        counting_since: Some(counting_since),
        baseline_replicas: kept_replicas,
        outcome: None,
    });
    begin_step(facts, &mut status, bake_index(facts));
    let previous = status.baseline_version.clone().unwrap_or_else(|| "the previous version".into());
    let deployment = facts.spec.serving.deployment.as_ref().map(|d| d.name.as_str()).unwrap_or_default();
    let message = format!(
        "{} {} promoted: production names it and it takes all traffic; baking for {}, with {previous} ready on \
         Deployment {deployment} to take traffic back",
        facts.spec.model,
        facts.spec.candidate.version,
        format_duration(duration)
    );
    status::transition(&mut status, Phase::Baking, message.clone(), facts.now);
    let note = Note { warning: false, reason: "Baking", message };
    Ok(act(facts, status, effects, Some(note), Requeue::After(first_look)))
}

/// The bake's next move: an abort rolls back after promotion; otherwise a look when one is due.
pub fn bake(facts: &Facts<'_>) -> Result<Decision, DecideError> {
    let status = facts.status;
    let Some(bake) = &facts.spec.bake else {
        let message = "spec.bake was removed during the bake: finishing the promotion".to_string();
        return Ok(finish(facts, status.clone(), message));
    };
    if facts.intent.abort {
        let reason = "aborted during the bake by the rampart.dev/abort annotation (rampart abort)".to_string();
        return Ok(roll_back_after_promotion(facts, status.clone(), reason, false));
    }
    if let Some(refused) = &facts.canary_refused {
        return Ok(roll_back_after_promotion(facts, status.clone(), refused.clone(), false));
    }
    let index = bake_index(facts);
    let duration = parse_duration(&bake.duration)?;
    let elapsed = step_elapsed(status, facts.now);
    let decided = status.analysis.as_ref().filter(|a| a.step == Some(index)).and_then(|a| a.verdict);
    let judged: Vec<String> = facts
        .spec
        .analysis
        .iter()
        .flat_map(|a| &a.metrics)
        .filter(|m| m.definition().is_ok_and(|d| d.kind == MetricKind::Ratio))
        .map(|m| m.name.clone())
        .collect();
    if decided == Some(rampart_api::v1alpha1::Verdict::Pass) || judged.is_empty() {
        // Nothing left to judge: the previous version stays ready until the window ends.
        if elapsed >= duration {
            let message = format!("bake of {} ended without a failing look", format_duration(duration));
            return Ok(finish(facts, status.clone(), message));
        }
        return Ok(stay(facts, Requeue::After(duration - elapsed)));
    }
    let Some(spec_analysis) = &facts.spec.analysis else {
        return Err(DecideError::Spec("spec.bake judges the ratio metrics of spec.analysis, which is missing".into()));
    };
    let mut config = analysis_config(spec_analysis).map_err(DecideError::Spec)?;
    config.metrics.retain(|m| judged.contains(&m.name));
    // The counts span steps with different splits and the bake's all-candidate traffic: no expected split to check.
    config.srm.enabled = false;
    let since = status.bake.as_ref().and_then(|b| parse_time(b.counting_since.as_deref()));
    let plan = Plan {
        config,
        duration,
        interval: interval(facts, bake.interval.as_deref())?,
        expected_share: 1.0,
        need: |since| Need::Look { since },
        words: "bake",
        ongoing: "baking",
        passed_reason: "BakePassed",
        pass_effects: Vec::new(),
        pairing: false,
        since: Some(since.unwrap_or(facts.now)),
        ending: Ending::Bake,
    };
    look_with(facts, index, plan)
}

/// Acts on one bake look's verdict: Fail rolls back after promotion; the end of the window finishes the promotion;
/// anything else waits for the next look (or, after a Pass, for the end of the window).
pub(super) fn after_look(
    facts: &Facts<'_>,
    mut status: ModelRolloutStatus,
    verdict: &StepVerdict,
    final_look: bool,
    interval: std::time::Duration,
    duration: std::time::Duration,
) -> Decision {
    match verdict.verdict {
        Verdict::Fail => {
            let reason = format!("bake failed: {}", describe_failure(verdict, None, 0.0));
            roll_back_after_promotion(facts, status, reason, true)
        }
        _ if final_look => {
            let message =
                format!("bake of {} ended without a failing look: {}", format_duration(duration), verdict.reason);
            finish(facts, status, message)
        }
        Verdict::Pass => {
            let left = duration.saturating_sub(step_elapsed(facts.status, facts.now));
            status.message = Some(format!(
                "baking: {}; the previous version stays ready for the rest of the window ({})",
                verdict.reason,
                format_duration(left)
            ));
            let effects = keep_previous(facts, &status);
            act(facts, status, effects, None, Requeue::After(left.max(std::time::Duration::from_millis(50))))
        }
        Verdict::Continue | Verdict::Inconclusive => {
            status.message = Some(format!("baking: {}", verdict.reason));
            let effects = keep_previous(facts, &status);
            act(facts, status, effects, None, Requeue::After(interval))
        }
    }
}

/// The baseline (the previous version) at `previousReplicas`, once the replicas to give back are in status; repeated
/// at every look, which changes nothing once it is done.
fn keep_previous(facts: &Facts<'_>, status: &ModelRolloutStatus) -> Vec<Effect> {
    let recorded = status.bake.as_ref().is_some_and(|b| b.baseline_replicas.is_some());
    match facts.spec.bake.as_ref().and_then(|b| b.previous_replicas) {
        Some(replicas) if recorded => vec![Effect::ScaleBaseline { replicas }],
        _ => Vec::new(),
    }
}

/// Rolls back after promotion, in this order: all traffic to the baseline Deployment, which serves the previous
/// version (waits for nothing), its replicas back if the bake scaled it, then the status with the trail record that
/// moves `production` back in the registry when Postgres answers; the canary (the candidate) goes after
/// `rollback.scaleDownDelay`.
pub fn roll_back_after_promotion(
    facts: &Facts<'_>,
    mut status: ModelRolloutStatus,
    reason: String,
    failing_verdict: bool,
) -> Decision {
    let mut effects = vec![Effect::RouteAllToBaseline { after_failing_verdict: failing_verdict }];
    let bake = status.bake.get_or_insert_with(Default::default);
    if let Some(replicas) = bake.baseline_replicas {
        effects.push(Effect::ScaleBaseline { replicas });
    }
    bake.outcome = Some(BakeOutcome::RolledBack);
    status.canary_weight = Some(0);
    status.step_started_at = Some(facts.now.to_string());
    let previous = status.baseline_version.clone().unwrap_or_else(|| "the previous version".into());
    let reason = format!("rolled back after promotion to {previous}: {reason}");
    // The bake's looks only (an abort before the first look has no numbers of its own).
    let index = bake_index(facts);
    let looks = status.analysis.as_ref().filter(|a| a.step == Some(index));
    let analysis = serde_json::to_value(looks).unwrap_or_default();
    let statistics = serde_json::json!({
        "metrics": analysis.get("metrics"),
        "lastError": analysis.get("lastError"),
        "countingSince": status.bake.as_ref().and_then(|b| b.counting_since.clone()),
    });
    record(
        facts,
        &mut status,
        TrailRecord::RollbackAfterPromotion { uid: facts.uid.into(), reason: reason.clone(), statistics },
    );
    status::transition(&mut status, Phase::RollingBack, reason.clone(), facts.now);
    let requeue = Requeue::After(scale_down_delay(facts).max(std::time::Duration::from_millis(50)));
    act(
        facts,
        status,
        effects,
        Some(Note { warning: true, reason: "RolledBackAfterPromotion", message: reason }),
        requeue,
    )
}

/// The bake ended without a Fail: back to Promoting, which now moves the baseline Deployment to the candidate.
pub fn finish(facts: &Facts<'_>, mut status: ModelRolloutStatus, message: String) -> Decision {
    status.bake.get_or_insert_with(Default::default).outcome = Some(BakeOutcome::Passed);
    status::transition(&mut status, Phase::Promoting, message.clone(), facts.now);
    act(facts, status, vec![], Some(Note { warning: false, reason: "BakePassed", message }), NEXT)
}
