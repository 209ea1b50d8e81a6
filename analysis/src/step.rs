//! One analysis look over all metrics: the function the controller calls every interval.
//!
//! Pipeline: validate configuration -> check the carried state -> sample-ratio-mismatch check -> assess each
//! metric -> Holm–Bonferroni over the fail p-values -> combine into the step verdict -> keep a reached Pass or Fail
//! final -> hand back the state for the next look.
//!
//! Decisions are final: once a metric has passed or failed it keeps that verdict for the rest of the step, and
//! once the step has passed or failed so does the step, whatever later looks show. Each decision is a test at its
//! own level when it is made; revising it later would only add chances to be wrong.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::AnalysisConfig;
use crate::error::AnalysisError;
use crate::format::p;
use crate::holm::holm_bonferroni;
use crate::input::StepInput;
use crate::metric::{Assessment, Settings, assess};
use crate::seal::StateSeal;
use crate::srm::{check_sample_ratio, srm_mixing_precision};
use crate::state::{AnalysisState, Decided, MetricState};
use crate::verdict::{MetricVerdict, StepVerdict, Verdict};

/// The verdict of a look and the state to pass to the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepOutcome {
    /// What to show and act on.
    pub verdict: StepVerdict,
    /// What to pass back as `previous` on the next look of the same step.
    pub state: AnalysisState,
}

/// Evaluates one look. `previous` is the state returned by the previous look of the same analysis step (`None`
/// on the first). Errors only for a broken configuration or counts for an unknown metric; bad data makes a
/// metric `Inconclusive` instead.
///
/// The carried state is checked first ([`AnalysisState::checked`]); parts that no correct look could have
/// produced start over. Use [`evaluate_step_sealed`] when the state is stored where others can write it.
pub fn evaluate_step(
    config: &AnalysisConfig,
    input: &StepInput,
    previous: Option<&AnalysisState>,
) -> Result<StepOutcome, AnalysisError> {
    evaluate(config, input, previous, Vec::new())
}

/// [`evaluate_step`] for a caller that keeps the state where others can write it (the ModelRollout status): a
/// `previous` state without this seal's digest is discarded whole (the analysis starts over from the counts, with
/// a note in the reason), and the returned state is sealed.
pub fn evaluate_step_sealed(
    config: &AnalysisConfig,
    input: &StepInput,
    previous: Option<&AnalysisState>,
    seal: &StateSeal,
) -> Result<StepOutcome, AnalysisError> {
    let mut notes = Vec::new();
    let previous = previous.filter(|state| {
        let intact = seal.verify(state);
        if !intact {
            notes.push("the carried analysis state was not sealed by this controller and was discarded".to_string());
        }
        intact
    });
    let mut outcome = evaluate(config, input, previous, notes)?;
    seal.seal(&mut outcome.state);
    Ok(outcome)
}

fn evaluate(
    config: &AnalysisConfig,
    input: &StepInput,
    previous: Option<&AnalysisState>,
    mut notes: Vec<String>,
) -> Result<StepOutcome, AnalysisError> {
    config.validate()?;
    if !(input.configured_canary_weight >= 0.0 && input.configured_canary_weight <= 1.0) {
        return Err(AnalysisError::config(
            "configuredCanaryWeight",
            format!("is {}; use the canary's share of traffic in [0, 1]", input.configured_canary_weight),
        ));
    }
    if let Some(unknown) = input.metrics.iter().find(|o| !config.metrics.iter().any(|m| m.name == o.name)) {
        return Err(AnalysisError::UnknownMetric(unknown.name.clone()));
    }
    let settings = Settings { alpha: config.alpha, mixture: config.effect_mixture()?, min_samples: config.min_samples };
    let previous = match previous {
        Some(state) => {
            let (checked, mut dropped) = state.checked(config);
            notes.append(&mut dropped);
            checked
        }
        None => AnalysisState::default(),
    };
    let previous = &previous;
    let look = previous.looks + 1;

    let (srm, srm_state) = match (config.srm.enabled, input.requests) {
        (true, Some(requests)) => {
            let (verdict, sums) = check_sample_ratio(
                requests,
                input.configured_canary_weight,
                config.srm.alpha,
                srm_mixing_precision(config.expected_samples(), input.configured_canary_weight, config.srm.alpha),
                previous.srm_p,
                previous.srm.as_ref(),
            );
            (Some(verdict), sums)
        }
        _ => (None, previous.srm),
    };

    let mut assessments: Vec<Assessment> = config
        .metrics
        .iter()
        .map(|metric| {
            let observation = input.metrics.iter().find(|o| o.name == metric.name);
            let prior = previous.metrics.get(&metric.name).cloned().unwrap_or_default();
            assess(metric, observation, &prior, settings)
        })
        .collect();

    // Holm–Bonferroni over every configured metric's smallest fail p-value so far.
    let fail_p: Vec<f64> = assessments.iter().map(|a| a.state.fail_p).collect();
    let holm = holm_bonferroni(&fail_p, config.alpha);
    for (assessment, (level, rejected)) in assessments.iter_mut().zip(holm) {
        let already_failed = assessment.state.decided == Some(Verdict::Fail);
        let already_passed = assessment.state.decided == Some(Verdict::Pass);
        let v = &mut assessment.verdict;
        v.fail_threshold = Some(level);
        if already_passed {
            // Final: a later look does not turn a Pass into anything else.
            let now = if assessment.tested { assessment.summary.as_str() } else { v.reason.as_str() };
            v.reason =
                format!("passed at an earlier look (pass p {}), final for this step; this look: {now}", p(v.pass_p));
            v.verdict = Verdict::Pass;
        } else if rejected || already_failed {
            v.verdict = Verdict::Fail;
            v.reason = if assessment.tested {
                format!(
                    "{}: worse than the tolerance (always-valid p {} <= {} after Holm-Bonferroni over {} metrics)",
                    assessment.summary,
                    p(v.always_valid_p),
                    p(level),
                    fail_p.len()
                )
            } else {
                format!("failed at an earlier look (always-valid p {}); {}", p(v.always_valid_p), v.reason)
            };
            assessment.state.decided = Some(Verdict::Fail);
        } else if v.verdict == Verdict::Pass {
            assessment.state.decided = Some(Verdict::Pass);
        } else if assessment.tested && v.always_valid_p <= config.alpha {
            v.reason = format!(
                "{}: would fail alone (p {}) but not after Holm-Bonferroni over {} metrics (needs <= {})",
                assessment.summary,
                p(v.always_valid_p),
                fail_p.len(),
                p(level)
            );
        }
        if input.final_look && v.verdict == Verdict::Continue {
            v.verdict = Verdict::Inconclusive;
            v.reason = format!("the step ended before the evidence was conclusive; {}", v.reason);
        }
    }

    let metrics: Vec<MetricVerdict> = assessments.iter().map(|a| a.verdict.clone()).collect();
    let (mut verdict, mut reason) = combine(srm.as_ref(), &metrics, look);
    let decided = match previous.decided {
        Some(decided) => {
            if verdict != decided.verdict {
                reason = format!(
                    "{} at look {} is final for this step; this look alone would say {verdict}: {reason}",
                    decided.verdict, decided.look
                );
            }
            verdict = decided.verdict;
            Some(decided)
        }
        None if matches!(verdict, Verdict::Pass | Verdict::Fail) => Some(Decided { verdict, look }),
        None => None,
    };
    if !notes.is_empty() {
        reason = format!("{reason} (note: {})", notes.join("; "));
    }
    let state = AnalysisState {
        looks: look,
        srm: srm_state,
        decided,
        seal: None,
        srm_p: srm.as_ref().map_or(previous.srm_p, |s| s.always_valid_p),
        metrics: config
            .metrics
            .iter()
            .zip(&assessments)
            .map(|(m, a)| (m.name.clone(), a.state.clone()))
            .collect::<std::collections::BTreeMap<String, MetricState>>(),
    };
    Ok(StepOutcome { verdict: StepVerdict { verdict, reason, look, srm, metrics }, state })
}

/// Combines the SRM check and the metric verdicts into the step's verdict and one-line reason.
fn combine(srm: Option<&crate::verdict::SrmVerdict>, metrics: &[MetricVerdict], look: u64) -> (Verdict, String) {
    if let Some(srm) = srm.filter(|s| s.verdict == Verdict::Fail) {
        return (Verdict::Fail, srm.reason.clone());
    }
    let named = |verdict: Verdict| -> Vec<&MetricVerdict> { metrics.iter().filter(|m| m.verdict == verdict).collect() };
    let failed = named(Verdict::Fail);
    if let Some(first) = failed.first() {
        return (Verdict::Fail, format!("{} failed: {}", list(&failed), first.reason));
    }
    let inconclusive = named(Verdict::Inconclusive);
    if let Some(first) = inconclusive.first() {
        return (Verdict::Inconclusive, format!("{} inconclusive: {}", list(&inconclusive), first.reason));
    }
    if let Some(srm) = srm.filter(|s| s.verdict == Verdict::Inconclusive) {
        return (Verdict::Inconclusive, srm.reason.clone());
    }
    if metrics.iter().all(|m| m.verdict == Verdict::Pass) {
        return (
            Verdict::Pass,
            format!(
                "all {} metrics are within tolerance: {}",
                metrics.len(),
                list(metrics.iter().collect::<Vec<_>>().as_slice())
            ),
        );
    }
    let waiting = named(Verdict::Continue);
    (
        Verdict::Continue,
        format!(
            "look {look}: {} still collecting evidence; {}",
            list(&waiting),
            waiting.first().map_or("", |m| m.reason.as_str())
        ),
    )
}

fn list(metrics: &[&MetricVerdict]) -> String {
    metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
}
