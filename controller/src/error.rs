//! The controller's errors, one variant per kind of failure (what failed, not where in the code), each saying which
//! rollout and what it was doing, with a `metric_label()` so `rampart_reconcile_errors_total{stage}` tells the truth.

/// A failure while reconciling one ModelRollout.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rollout's spec cannot be acted on (it passed admission, but refers to something unusable).
    #[error("rollout {rollout}: {message}")]
    InvalidSpec { rollout: String, message: String },
    /// Moving traffic failed (the HTTPRoute's weights or the InferenceService's canary percentage).
    #[error("rollout {rollout}: failed to move traffic: {message}")]
    Traffic { rollout: String, message: String },
    /// Changing the serving Deployments failed (creating or deleting the canary, moving the baseline).
    #[error("rollout {rollout}: failed to change serving: {message}")]
    Serving { rollout: String, message: String },
    /// Creating, reading or deleting a check Job failed.
    #[error("rollout {rollout}: failed to {action}: {source}")]
    Checks {
        rollout: String,
        action: String,
        #[source]
        source: kube::Error,
    },
    /// Reading a Kubernetes object failed.
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
    /// The statistics engine refused the configuration or the counts.
    #[error("rollout {rollout}: analysis failed: {source}")]
    Analysis {
        rollout: String,
        #[source]
        source: rampart_analysis::AnalysisError,
    },
    /// Taking or confirming the rollout's claim on its targets failed (see `crate::claims`).
    #[error("rollout {rollout}: failed to claim its targets: {source}")]
    Claim {
        rollout: String,
        #[source]
        source: crate::claims::ClaimError,
    },
    /// This replica does not hold the leader lease, so it must not write.
    #[error("not the leader: this replica does not write")]
    NotLeader,
}

impl Error {
    /// A short, stable label for the `rampart_reconcile_errors_total{stage=...}` metric. Prometheus and registry
    /// failures never fail a reconcile (a look without metrics and a registry outage are part of the state machine);
    /// they are counted as `prometheus` and `registry` where they happen.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec { .. } => "spec",
            Error::Traffic { .. } => "traffic",
            Error::Serving { .. } => "serving",
            Error::Checks { .. } => "checks",
            Error::Kube { .. } => "kubernetes",
            Error::Status { .. } => "status",
            Error::Analysis { .. } => "analysis",
            Error::Claim { .. } => "claim",
            Error::NotLeader => "leadership",
        }
    }

    /// True for a write conflict (someone changed the rollout since it was read): retried at once.
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Status { source: kube::Error::Api(status), .. } => status.code == 409,
            Error::Claim { source, .. } => source.is_conflict(),
            _ => false,
        }
    }
}
