//! The controller's errors: one variant per reconcile stage, each saying what failed on which object, with a
//! `metric_label()` so every failure is countable in Prometheus.

/// A failure while reconciling one ModelRollout.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rollout's spec cannot be acted on (it passed admission, but refers to something unusable).
    #[error("rollout {rollout}: {message}")]
    InvalidSpec { rollout: String, message: String },
    /// Reading or changing a Kubernetes object failed.
    #[error("rollout {rollout}: failed to {action}: {source}")]
    Kube {
        rollout: String,
        action: String,
        #[source]
        source: kube::Error,
    },
    /// Writing the rollout's status failed.
    #[error("rollout {rollout}: failed to write status: {source}")]
    Status {
        rollout: String,
        #[source]
        source: kube::Error,
    },
    /// Querying Prometheus failed.
    #[error("{0}")]
    Metrics(#[from] crate::prometheus::QueryError),
    /// The statistics engine refused the configuration or the counts.
    #[error("rollout {rollout}: analysis failed: {source}")]
    Analysis {
        rollout: String,
        #[source]
        source: rampart_analysis::AnalysisError,
    },
    /// This replica does not hold the leader lease, so it must not write.
    #[error("not the leader: this replica does not write")]
    NotLeader,
}

impl Error {
    /// A short, stable label for the `rampart_reconcile_errors_total{stage=...}` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec { .. } => "spec",
            Error::Kube { .. } => "kubernetes",
            Error::Status { .. } => "status",
            Error::Metrics(_) => "metrics",
            Error::Analysis { .. } => "analysis",
            Error::NotLeader => "leadership",
        }
    }
}
