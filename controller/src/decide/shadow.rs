//! A shadow step: the baseline's requests are mirrored to the candidate (users get only the baseline's answers), the
//! pairing component (`rampart-shadow`) pairs the two predictions of each request and counts agreements, and each
//! look judges agreement with the same anytime-valid ratio test as any metric: the candidate's agreement against the
//! baseline's agreement with itself (every pair), with `tolerance` as the margin. The pairing itself is checked like a
//! traffic split: every mirrored request should give one response on each side, so the candidate's share of the
//! responses should be one half; a candidate that drops mirrored requests fails that check instead of looking like
//! agreement.

use rampart_analysis::{AnalysisConfig, MetricConfig, Tolerance};
use rampart_api::v1alpha1::{AnalysisStatus, ShadowStep};

use super::analysis::{Plan, interval, look_with};
use super::endings;
use super::{DecideError, Decision, Effect, Facts, Need, Note, Requeue, parse_duration};
use crate::analysis::engine_config;
use crate::look::AGREEMENT;

/// Default largest share of disagreeing predictions.
pub const DEFAULT_TOLERANCE: f64 = 0.01;

/// The engine's configuration for a shadow step: one ratio metric (agreement, higher is better) and the pairing
/// check, with the rollout's alpha and minimum samples when it has `spec.analysis`.
pub fn shadow_config(facts: &Facts<'_>, step: &ShadowStep) -> Result<AnalysisConfig, DecideError> {
    let tolerance = step.tolerance.unwrap_or(DEFAULT_TOLERANCE);
    let metric = MetricConfig {
        name: AGREEMENT.into(),
        kind: rampart_analysis::MetricKind::Ratio { direction: rampart_analysis::Direction::HigherIsBetter },
        tolerance: Tolerance::Absolute(tolerance),
        min_samples: None,
    };
    let mut config = engine_config(vec![metric], facts.spec.analysis.as_ref());
    // The pairing check always runs: `srm.enabled: false` switches off the traffic-split check of analysis steps,
    // not the check that the candidate answered the mirrored requests.
    config.srm.enabled = true;
    config.validate().map_err(|err| DecideError::Spec(format!("the shadow step cannot be judged: {err}")))?;
    Ok(config)
}

/// The shadow step's decision: start mirroring, then look like an analysis step; passing stops the mirror.
pub fn look(facts: &Facts<'_>, index: i32, step: &ShadowStep) -> Result<Decision, DecideError> {
    let status = facts.status;
    let weight = status.canary_weight.unwrap_or(0);
    let started = status.analysis.as_ref().is_some_and(|a| a.step == Some(index));
    if !started {
        // The first reconcile of the step: create the canary, mirror to it, and mark the step's looks as started.
        let mut status = status.clone();
        status.analysis = Some(AnalysisStatus { step: Some(index), looks: Some(0), ..Default::default() });
        let effects = vec![Effect::SetWeight {
            weight,
            create_canary: facts.spec.serving.deployment.is_some() && weight == 0,
            cohort: None,
            mirror: true,
        }];
        let note = Note {
            warning: false,
            reason: "ShadowStarted",
            message: format!(
                "step {index}: mirroring the baseline's requests to the candidate; users get only the baseline's answers"
            ),
        };
        let first_look = interval(facts, step.interval.as_deref())?.min(parse_duration(&step.duration)?);
        return Ok(endings::act(facts, status, effects, Some(note), Requeue::After(first_look)));
    }
    let plan = Plan {
        config: shadow_config(facts, step)?,
        duration: parse_duration(&step.duration)?,
        interval: interval(facts, step.interval.as_deref())?,
        expected_share: 0.5,
        need: |since| Need::ShadowLook { since },
        words: "shadow comparison",
        ongoing: "comparing shadow predictions",
        passed_reason: "ShadowPassed",
        pass_effects: vec![Effect::SetWeight { weight, create_canary: false, cohort: None, mirror: false }],
        pairing: true,
        since: None,
        ending: super::analysis::Ending::Step,
    };
    look_with(facts, index, plan)
}
