//! Metric presets: named metric definitions for common model servers (today vLLM-style LLM servers), so a rollout
//! names `preset: vllm-time-to-first-token` instead of writing PromQL. A preset fixes the metric's kind, direction and
//! queries; the rollout still chooses its name and tolerance. docs/llm-metrics.md lists them with their queries.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::v1alpha1::{Direction, Metric, MetricKind, MetricQueries};

/// A named metric definition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MetricPreset {
    /// Time to first token (`vllm:time_to_first_token_seconds`), a latency histogram; lower is better.
    VllmTimeToFirstToken,
    /// Time between two generated tokens (`vllm:inter_token_latency_seconds`), a latency histogram; lower is better.
    VllmInterTokenLatency,
    /// Whole-request latency (`vllm:e2e_request_latency_seconds`), a latency histogram; lower is better.
    VllmE2eRequestLatency,
    /// Share of OpenAI-API requests answered with a 5xx status (`http_requests_total`), a ratio; lower is better.
    VllmRequestErrorRate,
}

/// Every preset, in documentation order.
pub const ALL: [MetricPreset; 4] = [
    MetricPreset::VllmTimeToFirstToken,
    MetricPreset::VllmInterTokenLatency,
    MetricPreset::VllmE2eRequestLatency,
    MetricPreset::VllmRequestErrorRate,
];

/// The selector every preset query uses: the rollout's namespace and one version, as scrape labels.
const SELECTOR: &str = r#"namespace="{{namespace}}",version="{{version}}""#;

/// What a metric compares, with presets resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricDefinition {
    /// Ratio, mean or latency.
    pub kind: MetricKind,
    /// Which way is better.
    pub direction: Direction,
    /// The PromQL templates.
    pub queries: MetricQueries,
}

impl MetricPreset {
    /// The name written in a rollout, e.g. `vllm-time-to-first-token`.
    pub fn name(self) -> &'static str {
        match self {
            MetricPreset::VllmTimeToFirstToken => "vllm-time-to-first-token",
            MetricPreset::VllmInterTokenLatency => "vllm-inter-token-latency",
            MetricPreset::VllmE2eRequestLatency => "vllm-e2e-request-latency",
            MetricPreset::VllmRequestErrorRate => "vllm-request-error-rate",
        }
    }

    /// The preset's kind, direction and queries.
    pub fn definition(self) -> MetricDefinition {
        let histogram = |family: &str| MetricDefinition {
            kind: MetricKind::Latency,
            direction: Direction::LowerIsBetter,
            queries: MetricQueries {
                buckets: Some(format!("sum by (le) ({family}_bucket{{{SELECTOR}}})")),
                ..Default::default()
            },
        };
        match self {
            MetricPreset::VllmTimeToFirstToken => histogram("vllm:time_to_first_token_seconds"),
            MetricPreset::VllmInterTokenLatency => histogram("vllm:inter_token_latency_seconds"),
            MetricPreset::VllmE2eRequestLatency => histogram("vllm:e2e_request_latency_seconds"),
            MetricPreset::VllmRequestErrorRate => MetricDefinition {
                kind: MetricKind::Ratio,
                direction: Direction::LowerIsBetter,
                queries: MetricQueries {
                    // The HTTP instrumentation groups status codes (`5xx`) by default; `5..` matches both forms.
                    success: Some(format!(r#"sum(http_requests_total{{{SELECTOR},handler=~"/v1/.*",status=~"5.."}})"#)),
                    total: Some(format!(r#"sum(http_requests_total{{{SELECTOR},handler=~"/v1/.*"}})"#)),
                    ..Default::default()
                },
            },
        }
    }
}

impl Metric {
    /// The metric's kind, direction and queries: its preset's, or its own. Admission refuses a metric with neither
    /// (and one with both); the error says what is missing for one that got past it.
    pub fn definition(&self) -> Result<MetricDefinition, String> {
        if let Some(preset) = self.preset {
            return Ok(preset.definition());
        }
        match (self.kind, self.direction) {
            (Some(kind), Some(direction)) => {
                Ok(MetricDefinition { kind, direction, queries: self.queries.clone().unwrap_or_default() })
            }
            _ => Err(format!(
                "metric {} needs kind, direction and queries, or a preset (one of: {})",
                self.name,
                ALL.map(MetricPreset::name).join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_names_are_what_serde_reads_and_writes() {
        for preset in ALL {
            let text = serde_json::to_string(&preset).unwrap();
            assert_eq!(text, format!("\"{}\"", preset.name()));
            let back: MetricPreset = serde_json::from_str(&text).unwrap();
            assert_eq!(back, preset);
        }
    }

    #[test]
    fn a_preset_metric_takes_its_definition_from_the_preset() {
        let metric: Metric = serde_json::from_value(serde_json::json!({
            "name": "ttft", "preset": "vllm-time-to-first-token", "tolerance": {"absolute": 0.05}
        }))
        .unwrap();
        let definition = metric.definition().unwrap();
        assert_eq!(definition.kind, MetricKind::Latency);
        assert_eq!(definition.direction, Direction::LowerIsBetter);
        assert_eq!(
            definition.queries.buckets.as_deref(),
            Some(
                r#"sum by (le) (vllm:time_to_first_token_seconds_bucket{namespace="{{namespace}}",version="{{version}}"})"#
            )
        );
    }

    #[test]
    fn a_metric_without_preset_or_kind_says_what_it_needs() {
        let metric: Metric = serde_json::from_value(serde_json::json!({"name": "ttft"})).unwrap();
        let err = metric.definition().unwrap_err();
        assert!(err.contains("needs kind, direction and queries, or a preset"), "{err}");
        assert!(err.contains("vllm-time-to-first-token"), "{err}");
    }

    #[test]
    fn every_preset_has_the_queries_its_kind_needs() {
        for preset in ALL {
            let d = preset.definition();
            let q = &d.queries;
            let complete = match d.kind {
                MetricKind::Ratio => q.success.is_some() && q.total.is_some(),
                MetricKind::Mean => q.sum.is_some() && q.sum_of_squares.is_some() && q.count.is_some(),
                MetricKind::Latency => q.buckets.is_some(),
            };
            assert!(complete, "{} lacks queries for {:?}", preset.name(), d.kind);
            for text in [&q.success, &q.total, &q.buckets].into_iter().flatten() {
                assert!(text.contains("{{version}}") && text.contains("{{namespace}}"), "{text}");
            }
        }
    }
}
