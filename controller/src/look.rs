//! One analysis look's observation from Prometheus: for every metric, the increase of its counters per arm (canary
//! and baseline) since the step's counting started, and the request counts for the traffic-split check. Every query
//! of a look is evaluated at the same instant, so successes and trials never come from different scrapes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use rampart_analysis::{ArmCounts, ArmPair, MetricObservation};
use rampart_api::v1alpha1::{Analysis, Metric, MetricKind};

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
    for metric in &analysis.metrics {
        metrics.push(MetricObservation {
            name: metric.name.clone(),
            canary: arm(prometheus, metric, window, window.canary_version).await?,
            baseline: arm(prometheus, metric, window, window.baseline_version).await?,
        });
    }
    let srm = analysis.srm.clone().unwrap_or_default();
    let requests_query = srm.requests_query.clone().or_else(|| {
        analysis.metrics.iter().find(|m| m.kind == MetricKind::Ratio).and_then(|m| m.queries.total.clone())
    });
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
    metric: &Metric,
    window: &LookWindow<'_>,
    version: &str,
) -> Result<ArmCounts, LookError> {
    let query = |query: &'static str, text: &Option<String>| {
        text.clone().ok_or_else(|| LookError::MissingQuery { metric: metric.name.clone(), query })
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
    let query = render(template, version, window.namespace);
    let now = prometheus.value(&query, Some(window.until)).await?;
    let before = prometheus.value(&query, Some(window.since)).await?;
    Ok(crate::prometheus::counter_increase(now, before))
}
