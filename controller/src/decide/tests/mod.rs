//! The state machine, phase by phase and input by input, without I/O: each test builds the facts a reconcile would
//! see and checks the decision (what to observe, which effects in which order, the status, the Event, the requeue).

use std::time::Duration;

use jiff::Timestamp;
use rampart_analysis::{ArmCounts, MetricObservation};
use rampart_api::v1alpha1::{AnalysisStatus, CheckOutcome, CheckResult, ChecksStatus, Verdict};
use rampart_api::{ModelRolloutSpec, ModelRolloutStatus, Phase};
use serde_json::json;

use super::*;

mod analysis;
mod bake;
mod capacity;
mod checks;
mod finishing;
mod lifecycle;
mod shadow;
mod steps;
mod tenancy;
use crate::trail::TrailRecord;

pub(super) const T0: &str = "2026-12-01T10:00:00Z";

pub(super) fn at(seconds: f64) -> Timestamp {
    let t0: Timestamp = T0.parse().unwrap();
    t0.checked_add(jiff::SignedDuration::from_secs_f64(seconds)).unwrap()
}

/// setWeight 10 -> analysis 30s every 3s -> setWeight 50 -> pause 2s -> pause -> setWeight 100.
pub(super) fn spec_with(extra: serde_json::Value) -> ModelRolloutSpec {
    let mut spec = json!({
        "model": "fraud",
        "candidate": {"version": "v2", "artifact": {"uri": "s3://models/fraud/v2/", "digest": format!("sha256:{}", "a".repeat(64))}},
        "serving": {"deployment": {"name": "fraud", "modelEnv": "MODEL_URI"}},
        "traffic": {"gatewayAPI": {"httpRoute": "fraud", "baselineBackend": "fraud", "canaryBackend": "fraud-canary", "port": 8080}},
        "steps": [
            {"setWeight": 10},
            {"analysis": {"duration": "30s", "interval": "3s"}},
            {"setWeight": 50},
            {"pause": {"duration": "2s"}},
            {"pause": {}},
            {"setWeight": 100}
        ],
        "analysis": {
            "alpha": 0.05,
            "minSamples": 50,
            "metrics": [{
                "name": "accuracy", "kind": "ratio", "direction": "higherIsBetter", "tolerance": {"absolute": 0.05},
                "queries": {"success": "correct{version=\"{{version}}\"}", "total": "labelled{version=\"{{version}}\"}"}
            }]
        }
    });
    if let (Some(base), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            base.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(spec).expect("a valid spec")
}

pub(super) fn spec() -> ModelRolloutSpec {
    spec_with(json!({}))
}

pub(super) fn status(phase: Phase, step: i32, started: f64) -> ModelRolloutStatus {
    ModelRolloutStatus {
        phase: Some(phase),
        current_step: Some(step),
        canary_weight: Some(0),
        step_started_at: Some(at(started).to_string()),
        baseline_version: Some("v1".into()),
        stable_uri: Some("s3://models/fraud/v1/".into()),
        ..Default::default()
    }
}

pub(super) fn settings() -> Settings {
    Settings {
        registry: true,
        metrics_settle: Duration::from_secs(1),
        default_analysis_interval: Duration::from_secs(60),
        analysis_status_interval: Duration::ZERO,
        smoke_image_allow_list: vec!["registry.example.com/ml/".into()],
        state_key: Some(rampart_analysis::StateKey::new(b"decide tests: a fixed state key")),
        prometheus_allow: crate::prometheus::AllowList::new("http://prometheus:9090", &[]).expect("a URL"),
    }
}

/// Decides for `spec` and `status` at `now` seconds after T0.
pub(super) struct Case {
    pub(super) spec: ModelRolloutSpec,
    pub(super) status: ModelRolloutStatus,
    pub(super) intent: Intent,
    pub(super) settings: Settings,
    pub(super) now: f64,
    pub(super) deleted_at: Option<f64>,
    pub(super) has_finalizer: bool,
    pub(super) canary_refused: Option<String>,
    pub(super) registry_refused: Option<String>,
    pub(super) target_holder: Option<String>,
    pub(super) status_trust: crate::seal::Trust,
}

impl Case {
    pub(super) fn new(spec: ModelRolloutSpec, status: ModelRolloutStatus, now: f64) -> Self {
        Case {
            spec,
            status,
            intent: Intent::default(),
            settings: settings(),
            now,
            deleted_at: None,
            has_finalizer: true,
            canary_refused: None,
            registry_refused: None,
            target_holder: None,
            status_trust: crate::seal::Trust::Sealed,
        }
    }

    pub(super) fn decide(&self, observed: Observation) -> Decision {
        let facts = Facts {
            uid: "uid-1",
            namespace: "ml",
            name: "fraud-v2",
            generation: Some(2),
            spec: &self.spec,
            status: &self.status,
            intent: &self.intent,
            settings: &self.settings,
            now: at(self.now),
            deleted_at: self.deleted_at.map(at),
            registry_refused: self.registry_refused.clone(),
            has_finalizer: self.has_finalizer,
            target_holder: self.target_holder.clone(),
            observed,
            canary_refused: self.canary_refused.clone(),
            status_trust: self.status_trust,
        };
        decide(&facts).expect("a decision")
    }

    pub(super) fn act(&self, observed: Observation) -> Act {
        match self.decide(observed) {
            Decision::Act(act) => *act,
            other => panic!("expected an act, got {other:?}"),
        }
    }

    pub(super) fn need(&self) -> Need {
        match self.decide(Observation::Nothing) {
            Decision::Observe(need) => need,
            other => panic!("expected an observation, got {other:?}"),
        }
    }
}

pub(super) fn records(status: &ModelRolloutStatus) -> Vec<TrailRecord> {
    status.outbox.iter().flatten().map(|text| serde_json::from_str(text).unwrap()).collect()
}

pub(super) fn record_kinds(status: &ModelRolloutStatus) -> Vec<&'static str> {
    records(status)
        .iter()
        .map(|r| match r {
            TrailRecord::RegisterVersion { .. } => "register",
            TrailRecord::MarkVerified { .. } => "verified",
            TrailRecord::StartRollout { .. } => "start",
            TrailRecord::Step { .. } => "step",
            TrailRecord::Verdict { .. } => "verdict",
            TrailRecord::Rollback { .. } => "rollback",
            TrailRecord::Finish { .. } => "finish",
            TrailRecord::PromotedUnverified { .. } => "promoted-unverified",
            TrailRecord::RollbackAfterPromotion { .. } => "rollback-after-promotion",
        })
        .collect()
}

pub(super) fn condition(status: &ModelRolloutStatus, type_: &str) -> String {
    status.conditions.iter().flatten().find(|c| c.type_ == type_).map(|c| c.status.clone()).unwrap_or_default()
}

pub(super) fn signer() -> Signer {
    Signer {
        key_id: "key-1".into(),
        key_label: "team-ml.pem".into(),
        bundle: "{}".into(),
        model_name: "fraud".into(),
        files: vec![("weights.bin".into(), "b".repeat(64))],
        single_file: false,
    }
}

pub(super) fn ratio(name: &str, canary: (f64, f64), baseline: (f64, f64)) -> MetricObservation {
    MetricObservation {
        name: name.into(),
        canary: ArmCounts::Ratio { successes: canary.0, trials: canary.1 },
        baseline: ArmCounts::Ratio { successes: baseline.0, trials: baseline.1 },
    }
}

pub(super) fn look(canary: (f64, f64), baseline: (f64, f64)) -> Observation {
    Observation::Look(Ok(LookCounts { metrics: vec![ratio("accuracy", canary, baseline)], requests: None }))
}

pub(super) const ACTIVE: [Phase; 6] =
    [Phase::Pending, Phase::Verifying, Phase::Checking, Phase::Progressing, Phase::Paused, Phase::Promoting];

// ----- helpers for "nothing changed" ----------------------------------------------------------------------------

pub(super) trait WithConditions {
    fn with_conditions_at(self, now: f64) -> ModelRolloutStatus;
}

impl WithConditions for ModelRolloutStatus {
    /// The status as a decision that changes nothing returns it: conditions brought up to date.
    fn with_conditions_at(mut self, now: f64) -> ModelRolloutStatus {
        crate::status::set_conditions(&mut self, at(now), Some(2));
        self.observed_generation = Some(2);
        self
    }
}
