//! The controller's own Prometheus metrics (`/metrics`): rollout phase and canary weight per rollout, per-metric
//! verdicts, and reconcile duration and errors by stage.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rampart_api::Phase;

/// Labels of a per-rollout series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub namespace: String,
    pub rollout: String,
}

/// Labels of the phase series: one series per phase, 1 for the current one.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub rollout: String,
    pub phase: String,
}

/// Labels of a per-metric verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub namespace: String,
    pub rollout: String,
    pub metric: String,
}

/// Labels of reconcile errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

/// Labels of notification deliveries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

/// Labels of failed notification deliveries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkFailureLabels {
    pub sink: String,
    pub reason: String,
}

/// All the controller's metrics, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub phase: Family<PhaseLabels, Gauge>,
    pub canary_weight: Family<RolloutLabels, Gauge>,
    pub verdict: Family<VerdictLabels, Gauge>,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<StageLabels, Counter>,
    pub is_leader: Gauge,
    pub rollback_latency: Histogram,
    pub notifications_delivered: Family<SinkLabels, Counter>,
    pub notification_failures: Family<SinkFailureLabels, Counter>,
    pub notification_backlog: Gauge,
}

const PHASES: [Phase; 11] = [
    Phase::Pending,
    Phase::Verifying,
    Phase::Checking,
    Phase::Progressing,
    Phase::Paused,
    Phase::Promoting,
    Phase::Baking,
    Phase::Succeeded,
    Phase::RollingBack,
    Phase::RolledBack,
    Phase::Failed,
];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rampart");
        let phase = Family::<PhaseLabels, Gauge>::default();
        let canary_weight = Family::<RolloutLabels, Gauge>::default();
        let verdict = Family::<VerdictLabels, Gauge>::default();
        let reconcile_duration = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let reconcile_errors = Family::<StageLabels, Counter>::default();
        let is_leader = Gauge::default();
        let rollback_latency = Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]);
        registry.register("rollout_phase", "1 for the phase each rollout is in, 0 for the others", phase.clone());
        registry.register("rollout_canary_weight", "Percentage of traffic sent to the canary", canary_weight.clone());
        registry.register(
            "analysis_verdict",
            "Latest verdict per metric: 1 Pass, 0 Continue, -1 Fail, -2 Inconclusive",
            verdict.clone(),
        );
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", reconcile_duration.clone());
        registry.register("reconcile_errors", "Failed reconciles by stage", reconcile_errors.clone());
        registry.register("leader", "1 when this replica holds the leader lease", is_leader.clone());
        registry.register(
            "rollback_latency_seconds",
            "Time from a failing verdict to the canary's traffic weight being 0",
            rollback_latency.clone(),
        );
        let notifications_delivered = Family::<SinkLabels, Counter>::default();
        let notification_failures = Family::<SinkFailureLabels, Counter>::default();
        let notification_backlog = Gauge::default();
        registry.register(
            "notifications_delivered",
            "Notifications a sink acknowledged (2xx), by sink",
            notifications_delivered.clone(),
        );
        registry.register(
            "notification_failures",
            "Failed notification attempts by sink and reason (each is retried with backoff)",
            notification_failures.clone(),
        );
        registry.register(
            "notification_backlog",
            "Notification deliveries queued and not yet acknowledged",
            notification_backlog.clone(),
        );
        Self {
            registry: Arc::new(registry),
            phase,
            canary_weight,
            verdict,
            reconcile_duration,
            reconcile_errors,
            is_leader,
            rollback_latency,
            notifications_delivered,
            notification_failures,
            notification_backlog,
        }
    }
}

impl Metrics {
    /// Records the phase and weight of one rollout.
    pub fn set_rollout(&self, namespace: &str, rollout: &str, phase: Phase, weight: i32) {
        for p in PHASES {
            let labels = PhaseLabels { namespace: namespace.into(), rollout: rollout.into(), phase: format!("{p:?}") };
            self.phase.get_or_create(&labels).set(i64::from(p == phase));
        }
        self.canary_weight
            .get_or_create(&RolloutLabels { namespace: namespace.into(), rollout: rollout.into() })
            .set(i64::from(weight));
    }

    /// Records one metric's verdict.
    pub fn set_verdict(&self, namespace: &str, rollout: &str, metric: &str, verdict: rampart_api::v1alpha1::Verdict) {
        use rampart_api::v1alpha1::Verdict;
        let value = match verdict {
            Verdict::Pass => 1,
            Verdict::Continue => 0,
            Verdict::Fail => -1,
            Verdict::Inconclusive | Verdict::Unknown => -2,
        };
        self.verdict
            .get_or_create(&VerdictLabels {
                namespace: namespace.into(),
                rollout: rollout.into(),
                metric: metric.into(),
            })
            .set(value);
    }

    /// Counts one failure of `stage` (see `Error::metric_label`), including ones that do not fail the reconcile
    /// (a Prometheus look without metrics is part of the analysis, not an error of the reconcile).
    pub fn count_error(&self, stage: &str) {
        self.reconcile_errors.get_or_create(&StageLabels { stage: stage.into() }).inc();
    }

    /// Counts one notification a sink acknowledged.
    pub fn count_notification_delivered(&self, sink: &str) {
        self.notifications_delivered.get_or_create(&SinkLabels { sink: sink.into() }).inc();
    }

    /// Counts one failed notification attempt.
    pub fn count_notification_failure(&self, sink: &str, reason: &str) {
        self.notification_failures.get_or_create(&SinkFailureLabels { sink: sink.into(), reason: reason.into() }).inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_latency_is_exposed_with_sum_and_count() {
        let metrics = Metrics::default();
        metrics.rollback_latency.observe(0.25);
        let text = metrics.encode();
        assert!(text.contains("rampart_rollback_latency_seconds_count 1"), "{text}");
        assert!(text.contains("rampart_rollback_latency_seconds_sum 0.25"), "{text}");
    }
}
