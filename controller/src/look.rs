//! One analysis look's observation from Prometheus: for every metric, the increase of its counters per arm (canary
//! and baseline) since the step's counting started, and the request counts for the traffic-split check. Every query
//! of a look is evaluated at the same instant, so successes and trials never come from different scrapes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use rampart_analysis::{ArmCounts, ArmPair, MetricObservation};
use rampart_api::presets::MetricDefinition;
use rampart_api::v1alpha1::{Analysis, MetricKind};

use crate::decide::LookCounts;
use crate::prometheus::{Prometheus, QueryError, bucket_increase, render};

/// What a look compares: the versions of the two arms, in one namespace, over one window.
#[derive(Clone, Debug)]
pub struct LookWindow<'a> {
    /// The rollout's namespace (`{{namespace}}` in queries).
    pub namespace: &'a str,
    /// The candidate's version label (`{{version}}` for the canary arm).
    pub canary_version: &'a str,
    /// The baseline's version label (`{{version}}` for the baseline arm).
    pub baseline_version: &'a str,
    /// Counting starts here.
    pub since: Timestamp,
    /// Counting ends here (now).
    pub until: Timestamp,
}

/// Why a look could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LookError {
    /// A query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// A metric lacks a query its kind needs (admission normally refuses this).
    #[error("metric {metric} needs queries.{query}")]
    MissingQuery { metric: String, query: &'static str },
    /// A metric has neither a preset nor its own definition (admission normally refuses this).
    #[error("{0}")]
    Definition(String),
}

/// Prometheus clients, one per server address, kept between looks (a client holds a connection pool).
#[derive(Default)]
pub struct Clients {
    by_url: Mutex<HashMap<String, Prometheus>>,
}

impl Clients {
    /// The client for `url`, made on first use.
    pub fn get(&self, url: &str, timeout: Duration) -> Result<Prometheus, QueryError> {
        let mut clients = self.by_url.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(url) {
            return Ok(client.clone());
        }
        let client = Prometheus::new(url, timeout)?;
        clients.insert(url.to_string(), client.clone());
        Ok(client)
    }
}

/// Takes one look: every metric of `analysis` for both arms, and the request counts when the split is checked.
pub async fn take(
    prometheus: &Prometheus,
    analysis: &Analysis,
    window: &LookWindow<'_>,
) -> Result<LookCounts, LookError> {
    let mut metrics = Vec::with_capacity(analysis.metrics.len());
    let mut definitions = Vec::with_capacity(analysis.metrics.len());
    for metric in &analysis.metrics {
        let definition = metric.definition().map_err(LookError::Definition)?;
        metrics.push(MetricObservation {
            name: metric.name.clone(),
            canary: arm(prometheus, &metric.name, &definition, window, window.canary_version).await?,
            baseline: arm(prometheus, &metric.name, &definition, window, window.baseline_version).await?,
        });
        definitions.push(definition);
    }
    let srm = analysis.srm.clone().unwrap_or_default();
    let requests_query = srm
        .requests_query
        .clone()
        .or_else(|| definitions.iter().find(|d| d.kind == MetricKind::Ratio).and_then(|d| d.queries.total.clone()));
    let requests = match (srm.enabled.unwrap_or(true), requests_query) {
        (true, Some(query)) => Some(ArmPair {
            canary: increase(prometheus, &query, window, window.canary_version).await?,
            baseline: increase(prometheus, &query, window, window.baseline_version).await?,
        }),
        _ => None,
    };
    Ok(LookCounts { metrics, requests })
}

/// One arm's counts for one metric.
async fn arm(
    prometheus: &Prometheus,
    name: &str,
    metric: &MetricDefinition,
    window: &LookWindow<'_>,
    version: &str,
) -> Result<ArmCounts, LookError> {
    let query = |query: &'static str, text: &Option<String>| {
        text.clone().ok_or_else(|| LookError::MissingQuery { metric: name.to_string(), query })
    };
    let q = &metric.queries;
    Ok(match metric.kind {
        MetricKind::Ratio => ArmCounts::Ratio {
            successes: increase(prometheus, &query("success", &q.success)?, window, version).await?,
            trials: increase(prometheus, &query("total", &q.total)?, window, version).await?,
        },
        MetricKind::Mean => ArmCounts::Mean {
            sum: increase(prometheus, &query("sum", &q.sum)?, window, version).await?,
            sum_sq: increase(prometheus, &query("sumOfSquares", &q.sum_of_squares)?, window, version).await?,
            count: increase(prometheus, &query("count", &q.count)?, window, version).await?,
        },
        MetricKind::Latency => {
            let rendered = render(&query("buckets", &q.buckets)?, version, window.namespace);
            let now = prometheus.buckets(&rendered, Some(window.until)).await?;
            let before = prometheus.buckets(&rendered, Some(window.since)).await?;
            ArmCounts::Histogram { buckets: bucket_increase(&now, &before) }
        }
    })
}

/// How much a counter query grew over the window.
async fn increase(
    prometheus: &Prometheus,
    template: &str,
    window: &LookWindow<'_>,
    version: &str,
) -> Result<f64, QueryError> {
    query_increase(prometheus, &render(template, version, window.namespace), window).await
}

/// Which pairing counters a shadow look reads: those `rampart-shadow` exports for one model in one namespace.
#[derive(Clone, Debug)]
pub struct ShadowLabels<'a> {
    /// The `model` label (the step's `modelLabel`, or `spec.model`).
    pub model: &'a str,
}

/// Name of the agreement metric in a shadow look (and in status, Events and the registry).
pub const AGREEMENT: &str = "agreement";

/// Takes one shadow look: the candidate's agreements out of its pairs (the baseline arm agrees with itself on every
/// pair), and the responses per side for the pairing check (every mirrored request should be answered once by each).
pub async fn take_shadow(
    prometheus: &Prometheus,
    labels: &ShadowLabels<'_>,
    window: &LookWindow<'_>,
) -> Result<LookCounts, LookError> {
    let selector = |extra: &str| {
        format!("{{namespace=\"{}\",model=\"{}\"{extra}}}", escape_label(window.namespace), escape_label(labels.model))
    };
    let pairs = query_increase(prometheus, &format!("sum(rampart_shadow_pairs_total{})", selector("")), window).await?;
    let agreements =
        query_increase(prometheus, &format!("sum(rampart_shadow_agreements_total{})", selector("")), window).await?;
    let responses = |side: &str| {
        format!("sum(rampart_shadow_events_total{})", selector(&format!(",side=\"{side}\",type=\"response\"")))
    };
    let candidate = query_increase(prometheus, &responses("candidate"), window).await?;
    let baseline = query_increase(prometheus, &responses("baseline"), window).await?;
    Ok(LookCounts {
        metrics: vec![MetricObservation {
            name: AGREEMENT.into(),
            canary: ArmCounts::Ratio { successes: agreements.min(pairs), trials: pairs },
            baseline: ArmCounts::Ratio { successes: pairs, trials: pairs },
        }],
        requests: Some(ArmPair { canary: candidate, baseline }),
    })
}

/// How much a fully written query grew over the window.
async fn query_increase(prometheus: &Prometheus, query: &str, window: &LookWindow<'_>) -> Result<f64, QueryError> {
    let now = prometheus.value(query, Some(window.until)).await?;
    let before = prometheus.value(query, Some(window.since)).await?;
    Ok(crate::prometheus::counter_increase(now, before))
}

/// A label value inside double quotes in PromQL: backslashes, quotes and newlines escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
