//! Translation between the ModelRollout's `spec.analysis` and the statistics engine, and from the engine's verdicts
//! to the strings shown in `status.analysis`.

use rampart_analysis::{AnalysisConfig, MetricConfig, MetricVerdict, SrmConfig, SrmVerdict, Tolerance};
use rampart_api::v1alpha1::{Analysis, Direction, MetricKind, MetricStatus};

/// Default minimum samples per version before a verdict.
pub const DEFAULT_MIN_SAMPLES: i64 = 100;

/// The engine configuration for a rollout's `spec.analysis`. Errors are messages for the user.
pub fn analysis_config(analysis: &Analysis) -> Result<AnalysisConfig, String> {
    let mut metrics = Vec::new();
    for metric in &analysis.metrics {
        let definition = metric.definition()?;
        let direction = match definition.direction {
            Direction::HigherIsBetter => rampart_analysis::Direction::HigherIsBetter,
            Direction::LowerIsBetter => rampart_analysis::Direction::LowerIsBetter,
        };
        let kind = match definition.kind {
            MetricKind::Ratio => rampart_analysis::MetricKind::Ratio { direction },
            MetricKind::Mean => rampart_analysis::MetricKind::Mean { direction },
            MetricKind::Latency => {
                let latency = metric.latency.clone().unwrap_or_default();
                rampart_analysis::MetricKind::Latency {
                    quantile: latency.quantile.unwrap_or(0.95),
                    threshold_slack: latency.threshold_slack.unwrap_or(0.1),
                    threshold_seconds: latency.threshold_seconds,
                }
            }
        };
        let tolerance = match &metric.tolerance {
            Some(t) => match (t.absolute, t.relative) {
                (Some(a), _) => Tolerance::Absolute(a),
                (None, Some(r)) => Tolerance::Relative(r),
                (None, None) => Tolerance::Absolute(0.0),
            },
            None => Tolerance::Absolute(0.0),
        };
        metrics.push(MetricConfig { name: metric.name.clone(), kind, tolerance, min_samples: None });
    }
    let config = engine_config(metrics, Some(analysis));
    config.validate().map_err(|err| format!("spec.analysis cannot be used: {err}"))?;
    Ok(config)
}

/// The engine configuration for `metrics` with the rollout's alpha, minimum samples and split-check settings from
/// `spec.analysis` (the defaults without one). Not validated.
pub fn engine_config(metrics: Vec<MetricConfig>, analysis: Option<&Analysis>) -> AnalysisConfig {
    let mut config = AnalysisConfig::with_metrics(metrics);
    if let Some(alpha) = analysis.and_then(|a| a.alpha) {
        config.alpha = alpha;
    }
    config.min_samples = analysis.and_then(|a| a.min_samples).unwrap_or(DEFAULT_MIN_SAMPLES) as f64;
    if let Some(srm) = analysis.and_then(|a| a.srm.as_ref()) {
        config.srm = SrmConfig {
            enabled: srm.enabled.unwrap_or(true),
            alpha: srm.p_value.unwrap_or(rampart_analysis::config::DEFAULT_SRM_ALPHA),
        };
    }
    config
}

/// A number for people: 4 significant digits, no exponent for everyday sizes.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-4..1e6).contains(&magnitude) {
        return format!("{value:.3e}");
    }
    let decimals = if magnitude >= 1000.0 {
        0
    } else if magnitude >= 1.0 {
        3
    } else {
        4
    };
    let text = format!("{value:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
}

/// The engine's verdict as written in status.
pub fn status_verdict(verdict: rampart_analysis::Verdict) -> rampart_api::v1alpha1::Verdict {
    use rampart_api::v1alpha1::Verdict as Shown;
    match verdict {
        rampart_analysis::Verdict::Pass => Shown::Pass,
        rampart_analysis::Verdict::Fail => Shown::Fail,
        rampart_analysis::Verdict::Continue => Shown::Continue,
        rampart_analysis::Verdict::Inconclusive => Shown::Inconclusive,
    }
}

/// One metric's verdict as shown in `status.analysis.metrics`.
pub fn metric_status(verdict: &MetricVerdict) -> MetricStatus {
    MetricStatus {
        name: verdict.name.clone(),
        verdict: status_verdict(verdict.verdict),
        canary: verdict.canary.as_ref().map(|a| number(a.estimate)),
        baseline: verdict.baseline.as_ref().map(|a| number(a.estimate)),
        effect: verdict.effect.map(number),
        interval: match (verdict.lower_bound, verdict.upper_bound) {
            (Some(low), Some(high)) => Some(format!("[{}, {}]", number(low), number(high))),
            _ => None,
        },
        // The p-value behind the verdict: the pass p for a Pass, the (Holm-adjusted) fail p otherwise.
        p_value: Some(number(if verdict.verdict == rampart_analysis::Verdict::Pass {
            verdict.pass_p
        } else {
            verdict.always_valid_p
        })),
        samples: match (&verdict.canary, &verdict.baseline) {
            (Some(c), Some(b)) => Some(format!("{}/{}", number(c.samples), number(b.samples))),
            _ => None,
        },
        reason: Some(verdict.reason.clone()),
    }
}

/// The traffic-split check as shown in `status.analysis.srm`.
pub fn srm_status(srm: &SrmVerdict) -> MetricStatus {
    MetricStatus {
        name: "sample-ratio".into(),
        verdict: status_verdict(srm.verdict),
        canary: Some(number(srm.observed_canary_share)),
        baseline: Some(number(srm.expected_canary_share)),
        effect: Some(number(srm.observed_canary_share - srm.expected_canary_share)),
        interval: None,
        p_value: srm.test.as_ref().map(|t| number(t.p_value)),
        samples: Some(format!("{}/{}", number(srm.canary_requests), number(srm.baseline_requests))),
        reason: Some(srm.reason.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(0.9), "0.9");
        assert_eq!(number(0.90123456), "0.9012");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(25000.0), "25000");
        assert_eq!(number(0.00001234), "1.234e-5");
        assert_eq!(number(0.0), "0");
    }
}
