//! The state machine, phase by phase and input by input, without I/O: each test builds the facts a reconcile would
//! see and checks the decision (what to observe, which effects in which order, the status, the Event, the requeue).

use std::time::Duration;

use jiff::Timestamp;
use rampart_analysis::{ArmCounts, MetricObservation};
use rampart_api::v1alpha1::{AnalysisStatus, CheckOutcome, CheckResult, ChecksStatus, Verdict};
use rampart_api::{ModelRolloutSpec, ModelRolloutStatus, Phase};
use serde_json::json;

use super::*;
use crate::trail::TrailRecord;

const T0: &str = "2026-12-01T10:00:00Z";

fn at(seconds: f64) -> Timestamp {
    let t0: Timestamp = T0.parse().unwrap();
    t0.checked_add(jiff::SignedDuration::from_secs_f64(seconds)).unwrap()
}

/// setWeight 10 -> analysis 30s every 3s -> setWeight 50 -> pause 2s -> pause -> setWeight 100.
fn spec_with(extra: serde_json::Value) -> ModelRolloutSpec {
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

fn spec() -> ModelRolloutSpec {
    spec_with(json!({}))
}

fn status(phase: Phase, step: i32, started: f64) -> ModelRolloutStatus {
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

fn settings() -> Settings {
    Settings {
        registry: true,
        metrics_settle: Duration::from_secs(1),
        default_analysis_interval: Duration::from_secs(60),
        analysis_status_interval: Duration::ZERO,
        smoke_image_allow_list: vec!["registry.example.com/ml/".into()],
    }
}

/// Decides for `spec` and `status` at `now` seconds after T0.
struct Case {
    spec: ModelRolloutSpec,
    status: ModelRolloutStatus,
    intent: Intent,
    settings: Settings,
    now: f64,
}

impl Case {
    fn new(spec: ModelRolloutSpec, status: ModelRolloutStatus, now: f64) -> Self {
        Case { spec, status, intent: Intent::default(), settings: settings(), now }
    }

    fn decide(&self, observed: Observation) -> Decision {
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
            observed,
        };
        decide(&facts).expect("a decision")
    }

    fn act(&self, observed: Observation) -> Act {
        match self.decide(observed) {
            Decision::Act(act) => *act,
            other => panic!("expected an act, got {other:?}"),
        }
    }

    fn need(&self) -> Need {
        match self.decide(Observation::Nothing) {
            Decision::Observe(need) => need,
            other => panic!("expected an observation, got {other:?}"),
        }
    }
}

fn records(status: &ModelRolloutStatus) -> Vec<TrailRecord> {
    status.outbox.iter().flatten().map(|text| serde_json::from_str(text).unwrap()).collect()
}

fn record_kinds(status: &ModelRolloutStatus) -> Vec<&'static str> {
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
        })
        .collect()
}

fn condition(status: &ModelRolloutStatus, type_: &str) -> String {
    status.conditions.iter().flatten().find(|c| c.type_ == type_).map(|c| c.status.clone()).unwrap_or_default()
}

fn signer() -> Signer {
    Signer { key_id: "key-1".into(), key_label: "team-ml.pem".into(), bundle: "{}".into() }
}

fn ratio(name: &str, canary: (f64, f64), baseline: (f64, f64)) -> MetricObservation {
    MetricObservation {
        name: name.into(),
        canary: ArmCounts::Ratio { successes: canary.0, trials: canary.1 },
        baseline: ArmCounts::Ratio { successes: baseline.0, trials: baseline.1 },
    }
}

fn look(canary: (f64, f64), baseline: (f64, f64)) -> Observation {
    Observation::Look(Ok(LookCounts { metrics: vec![ratio("accuracy", canary, baseline)], requests: None }))
}

const ACTIVE: [Phase; 6] =
    [Phase::Pending, Phase::Verifying, Phase::Checking, Phase::Progressing, Phase::Paused, Phase::Promoting];

// ----- finished rollouts ----------------------------------------------------------------------------------------

#[test]
fn a_finished_rollout_stays_finished_and_writes_nothing_new() {
    for phase in [Phase::Succeeded, Phase::RolledBack, Phase::Failed] {
        let mut case = Case::new(spec(), status(phase, 6, 0.0), 100.0);
        // Bring the conditions up to date first, as the last transition did.
        case.status = case.act(Observation::Nothing).status;
        let act = case.act(Observation::Nothing);
        assert_eq!(act.status, case.status, "{phase:?}");
        assert!(act.effects.is_empty() && act.event.is_none(), "{phase:?}");
        assert_eq!(act.requeue, Requeue::OnChange);
    }
}

#[test]
fn a_new_retry_value_starts_again_from_step_0_and_deletes_old_check_jobs() {
    let mut case = Case::new(spec(), status(Phase::Failed, 0, 0.0), 10.0);
    case.status.checks = Some(ChecksStatus {
        contract: Some(CheckResult { result: CheckOutcome::Failed, message: None, signer: None, job: None }),
        ..Default::default()
    });
    case.intent.retry = Some("1".into());
    let act = case.act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::DeleteCheckJobs]);
    assert_eq!(act.status.phase, Some(Phase::Pending));
    assert_eq!(act.status.current_step, Some(0));
    assert_eq!(act.status.checks, None);
    assert_eq!(act.status.handled_retry.as_deref(), Some("1"));
    assert_eq!(act.event.map(|e| e.reason), Some("Retrying"));
}

#[test]
fn a_retry_value_already_acted_on_does_nothing() {
    let mut case = Case::new(spec(), status(Phase::RolledBack, 1, 0.0), 10.0);
    case.status.handled_retry = Some("1".into());
    case.intent.retry = Some("1".into());
    let act = case.act(Observation::Nothing);
    assert!(act.effects.is_empty());
    assert_eq!(act.status.phase, Some(Phase::RolledBack));
}

// ----- abort ----------------------------------------------------------------------------------------------------

#[test]
fn abort_in_any_active_phase_sends_all_traffic_to_the_baseline_first() {
    for phase in ACTIVE {
        let mut case = Case::new(spec(), status(phase, 2, 0.0), 10.0);
        case.status.canary_weight = Some(50);
        case.intent.abort = true;
        let act = case.act(Observation::Nothing);
        assert_eq!(act.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: false }], "{phase:?}");
        assert_eq!(act.status.phase, Some(Phase::RollingBack), "{phase:?}");
        assert_eq!(act.status.canary_weight, Some(0));
        assert_eq!(record_kinds(&act.status), vec!["finish"], "an abort is recorded as a finish");
        assert!(matches!(&records(&act.status)[0], TrailRecord::Finish { aborted: true, .. }));
        assert_eq!(act.event.as_ref().map(|e| (e.reason, e.warning)), Some(("RollingBack", true)));
    }
}

#[test]
fn abort_while_rolling_back_does_not_roll_back_twice() {
    let mut case =
        Case::new(spec_with(json!({"rollback": {"scaleDownDelay": "30s"}})), status(Phase::RollingBack, 2, 0.0), 5.0);
    case.intent.abort = true;
    let act = case.act(Observation::Nothing);
    assert!(act.effects.is_empty());
    assert!(act.status.outbox.is_none());
    assert_eq!(act.requeue, Requeue::After(Duration::from_secs(25)));
}

#[test]
fn abort_ignores_on_failure_false() {
    let mut case =
        Case::new(spec_with(json!({"rollback": {"onFailure": false}})), status(Phase::Progressing, 2, 0.0), 1.0);
    case.intent.abort = true;
    assert_eq!(case.act(Observation::Nothing).status.phase, Some(Phase::RollingBack));
}

// ----- start ----------------------------------------------------------------------------------------------------

#[test]
fn a_new_rollout_asks_for_its_signature_and_baseline() {
    for phase in [Phase::Pending, Phase::Verifying] {
        let case = Case::new(spec(), ModelRolloutStatus { phase: Some(phase), ..Default::default() }, 0.0);
        assert_eq!(case.need(), Need::Start);
    }
    let case = Case::new(spec(), ModelRolloutStatus::default(), 0.0);
    assert_eq!(case.need(), Need::Start, "no status at all is Pending");
}

#[test]
fn a_smoke_image_outside_the_allow_list_fails_before_anything_is_looked_at() {
    let spec = spec_with(json!({"checks": {"smokeTraining": {"image": "docker.io/evil/miner:latest"}}}));
    let act = Case::new(spec, ModelRolloutStatus::default(), 0.0).act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.status.message.as_deref().unwrap().contains("docker.io/evil/miner:latest"));
    assert_eq!(act.event.map(|e| e.reason), Some("ImageNotAllowed"));
    assert!(act.effects.is_empty());
}

#[test]
fn a_failed_signature_fails_before_traffic_and_records_why() {
    let case = Case::new(spec(), ModelRolloutStatus::default(), 0.0);
    let act = case.act(Observation::Start(StartObservation {
        signature: Err("signed by an untrusted key".into()),
        baseline: Ok(Default::default()),
    }));
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.effects.is_empty(), "nothing moves");
    let signature = act.status.checks.as_ref().and_then(|c| c.signature.clone()).unwrap();
    assert_eq!(signature.result, CheckOutcome::Failed);
    assert_eq!(record_kinds(&act.status), vec!["register", "start", "finish"], "no verified record");
    assert_eq!(condition(&act.status, "Stalled"), "True");
    assert_eq!(condition(&act.status, "ChecksPassed"), "False");
    assert_eq!(act.event.map(|e| e.reason), Some("SignatureFailed"));
}

#[test]
fn an_unusable_baseline_fails_before_traffic() {
    let act = Case::new(spec(), ModelRolloutStatus::default(), 0.0).act(Observation::Start(StartObservation {
        signature: Ok(Some(signer())),
        baseline: Err("Deployment ml/fraud not found".into()),
    }));
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.status.message.as_deref().unwrap().contains("ml/fraud not found"));
    assert_eq!(record_kinds(&act.status), vec!["register", "verified", "start", "finish"]);
}

#[test]
fn a_verified_start_with_check_jobs_enters_checking() {
    let spec = spec_with(json!({"checks": {"contract": {"batchSizes": [1, 8]}}}));
    let act = Case::new(spec, ModelRolloutStatus::default(), 0.0).act(Observation::Start(StartObservation {
        signature: Ok(Some(signer())),
        baseline: Ok(BaselineFacts { version: Some("v1".into()), uri: Some("s3://models/fraud/v1/".into()) }),
    }));
    assert_eq!(act.status.phase, Some(Phase::Checking));
    assert_eq!(act.status.baseline_version.as_deref(), Some("v1"));
    assert_eq!(act.status.stable_uri.as_deref(), Some("s3://models/fraud/v1/"));
    assert_eq!(act.status.canary_weight, Some(0));
    assert_eq!(record_kinds(&act.status), vec!["register", "verified", "start"]);
    let started = records(&act.status).into_iter().find_map(|r| match r {
        TrailRecord::StartRollout { rollout } => Some(rollout),
        _ => None,
    });
    assert_eq!(started.and_then(|r| r.baseline_version).as_deref(), Some("v1"));
    assert_eq!(act.event.map(|e| e.reason), Some("Started"));
    assert_eq!(act.requeue, endings::NEXT);
}

#[test]
fn a_start_without_check_jobs_goes_straight_to_the_steps() {
    let act = Case::new(spec(), ModelRolloutStatus::default(), 0.0).act(Observation::Start(StartObservation {
        signature: Ok(None),
        baseline: Ok(BaselineFacts { version: Some("v1".into()), uri: None }),
    }));
    assert_eq!(act.status.phase, Some(Phase::Progressing));
    assert_eq!(act.status.current_step, Some(0));
    let signature = act.status.checks.as_ref().and_then(|c| c.signature.clone()).unwrap();
    assert_eq!(signature.result, CheckOutcome::Skipped);
    assert_eq!(record_kinds(&act.status), vec!["register", "start"], "an unsigned candidate is never marked verified");
}

#[test]
fn without_a_registry_nothing_is_queued() {
    let mut case = Case::new(spec(), ModelRolloutStatus::default(), 0.0);
    case.settings.registry = false;
    let act = case
        .act(Observation::Start(StartObservation { signature: Ok(Some(signer())), baseline: Ok(Default::default()) }));
    assert!(act.status.outbox.is_none());
}

// ----- checks ---------------------------------------------------------------------------------------------------

fn checking_spec() -> ModelRolloutSpec {
    spec_with(json!({"checks": {
        "contract": {"batchSizes": [1, 8]},
        "smokeTraining": {"image": "registry.example.com/ml/trainer:v2"}
    }}))
}

fn job() -> Box<k8s_openapi::api::batch::v1::Job> {
    let mut job = k8s_openapi::api::batch::v1::Job::default();
    job.metadata.name = Some("fraud-v2-contract".into());
    Box::new(job)
}

fn check_status(contract: Option<CheckOutcome>, smoke: Option<CheckOutcome>) -> ModelRolloutStatus {
    let result = |outcome: Option<CheckOutcome>| {
        outcome.map(|result| CheckResult { result, message: None, signer: None, job: Some("j".into()) })
    };
    ModelRolloutStatus {
        checks: Some(ChecksStatus { signature: None, contract: result(contract), smoke_training: result(smoke) }),
        ..status(Phase::Checking, 0, 0.0)
    }
}

#[test]
fn checking_builds_the_first_check_job() {
    let case = Case::new(checking_spec(), check_status(None, None), 1.0);
    assert_eq!(case.need(), Need::Job { check: Check::Contract, started: false });
}

#[test]
fn a_built_check_job_is_created_and_shown_running() {
    let case = Case::new(checking_spec(), check_status(None, None), 1.0);
    let act = case.act(Observation::JobToCreate { check: Check::Contract, job: Ok(job()) });
    assert_eq!(act.effects, vec![Effect::CreateCheckJob(job())]);
    let contract = act.status.checks.as_ref().and_then(|c| c.contract.clone()).unwrap();
    assert_eq!(contract.result, CheckOutcome::Running);
    assert_eq!(contract.job.as_deref(), Some("fraud-v2-contract"));
    assert_eq!(act.status.phase, Some(Phase::Checking));
    assert_eq!(condition(&act.status, "ChecksPassed"), "Unknown");
    assert_eq!(act.event.map(|e| e.reason), Some("CheckStarted"));
}

#[test]
fn a_check_job_that_cannot_be_built_fails_the_check() {
    let case = Case::new(checking_spec(), check_status(None, None), 1.0);
    let act = case.act(Observation::JobToCreate {
        check: Check::Contract,
        job: Err("the baseline's model URI is unknown".into()),
    });
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.effects.is_empty());
    assert!(act.status.message.as_deref().unwrap().contains("baseline's model URI is unknown"));
}

#[test]
fn a_running_check_job_is_read_and_waited_for() {
    let case = Case::new(checking_spec(), check_status(Some(CheckOutcome::Running), None), 1.0);
    assert_eq!(case.need(), Need::Job { check: Check::Contract, started: true });
    let act = case.act(Observation::Job { check: Check::Contract, state: JobState::Running });
    assert_eq!(act.status, case.status.clone().tap_conditions(&case));
    assert!(matches!(act.requeue, Requeue::After(_)));
}

#[test]
fn a_passed_contract_is_recorded_and_smoke_training_comes_next() {
    let case = Case::new(checking_spec(), check_status(Some(CheckOutcome::Running), None), 1.0);
    let act = case.act(Observation::Job { check: Check::Contract, state: JobState::Passed("compatible".into()) });
    let contract = act.status.checks.as_ref().and_then(|c| c.contract.clone()).unwrap();
    assert_eq!(contract.result, CheckOutcome::Passed);
    assert_eq!(act.status.phase, Some(Phase::Checking));
    assert_eq!(act.event.map(|e| e.reason), Some("CheckPassed"));
    let next = Case::new(checking_spec(), act.status, 2.0);
    assert_eq!(next.need(), Need::Job { check: Check::SmokeTraining, started: false });
}

#[test]
fn a_failed_check_job_fails_before_traffic_with_its_reason() {
    let case = Case::new(checking_spec(), check_status(Some(CheckOutcome::Passed), Some(CheckOutcome::Running)), 1.0);
    let act =
        case.act(Observation::Job { check: Check::SmokeTraining, state: JobState::Failed("loss diverged".into()) });
    assert_eq!(act.status.phase, Some(Phase::Failed));
    assert!(act.status.message.as_deref().unwrap().contains("loss diverged"));
    assert_eq!(record_kinds(&act.status), vec!["finish"]);
    assert_eq!(act.event.map(|e| e.reason), Some("CheckFailed"));
    assert!(act.effects.is_empty());
}

#[test]
fn an_observation_for_another_check_is_not_taken_for_this_one() {
    let case = Case::new(checking_spec(), check_status(Some(CheckOutcome::Running), None), 1.0);
    let decision = case.decide(Observation::Job { check: Check::SmokeTraining, state: JobState::Passed("x".into()) });
    assert_eq!(decision, Decision::Observe(Need::Job { check: Check::Contract, started: true }));
}

#[test]
fn all_checks_passed_start_the_steps() {
    let case = Case::new(checking_spec(), check_status(Some(CheckOutcome::Passed), Some(CheckOutcome::Passed)), 1.0);
    let act = case.act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Progressing));
    assert_eq!(act.status.current_step, Some(0));
    assert_eq!(act.event.map(|e| e.reason), Some("ChecksPassed"));
}

// ----- steps ----------------------------------------------------------------------------------------------------

#[test]
fn the_first_set_weight_creates_the_canary_and_moves_traffic() {
    let act = Case::new(spec(), status(Phase::Progressing, 0, 0.0), 1.0).act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::SetWeight { weight: 10, create_canary: true }]);
    assert_eq!(act.status.canary_weight, Some(10));
    assert_eq!(act.status.current_step, Some(1));
    assert_eq!(act.status.step_started_at, Some(at(1.0).to_string()));
    assert_eq!(record_kinds(&act.status), vec!["step"]);
    assert_eq!(act.event.map(|e| e.reason), Some("WeightSet"));
}

#[test]
fn a_later_set_weight_only_moves_traffic() {
    let mut current = status(Phase::Progressing, 2, 0.0);
    current.canary_weight = Some(10);
    let act = Case::new(spec(), current, 1.0).act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::SetWeight { weight: 50, create_canary: false }]);
}

#[test]
fn kserve_never_creates_a_canary_deployment() {
    let spec = spec_with(json!({"serving": {"kserve": {"inferenceService": "fraud"}}, "traffic": null}));
    let act = Case::new(spec, status(Phase::Progressing, 0, 0.0), 1.0).act(Observation::Nothing);
    assert_eq!(act.effects, vec![Effect::SetWeight { weight: 10, create_canary: false }]);
}

#[test]
fn a_timed_pause_pauses_then_advances_when_it_ends() {
    let case = Case::new(spec(), status(Phase::Progressing, 3, 0.0), 0.5);
    let act = case.act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Paused));
    assert_eq!(act.requeue, Requeue::After(Duration::from_millis(1500)));
    assert_eq!(condition(&act.status, "Stalled"), "True");

    let waiting = Case::new(spec(), act.status.clone(), 1.0).act(Observation::Nothing);
    assert_eq!(waiting.status, act.status.clone().with_conditions_at(1.0), "no new write while it waits");
    assert!(waiting.event.is_none());

    let ended = Case::new(spec(), act.status, 2.5).act(Observation::Nothing);
    assert_eq!(ended.status.phase, Some(Phase::Progressing));
    assert_eq!(ended.status.current_step, Some(4));
    assert_eq!(ended.event.map(|e| e.reason), Some("PauseEnded"));
}

#[test]
fn a_pause_without_duration_waits_for_a_person() {
    let act = Case::new(spec(), status(Phase::Progressing, 4, 0.0), 100.0).act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Paused));
    assert_eq!(act.requeue, Requeue::OnChange);
    assert!(act.status.message.as_deref().unwrap().contains("rampart promote fraud-v2"));
    let again = Case::new(spec(), act.status, 10_000.0).act(Observation::Nothing);
    assert!(again.event.is_none() && again.effects.is_empty());
}

#[test]
fn the_promote_annotation_skips_the_remaining_steps() {
    for phase in [Phase::Progressing, Phase::Paused] {
        let mut case = Case::new(spec(), status(phase, 4, 0.0), 1.0);
        case.intent.promote = true;
        let act = case.act(Observation::Nothing);
        assert_eq!(act.status.phase, Some(Phase::Promoting));
        assert!(act.effects.is_empty(), "promotion moves nothing before the registry has the record");
    }
}

#[test]
fn after_the_last_step_promotion_starts() {
    let act = Case::new(spec(), status(Phase::Progressing, 6, 0.0), 1.0).act(Observation::Nothing);
    assert_eq!(act.status.phase, Some(Phase::Promoting));
    assert_eq!(act.status.message.as_deref(), Some("all steps completed"));
    assert_eq!(act.event.map(|e| e.reason), Some("Promoting"));
}

// ----- analysis -------------------------------------------------------------------------------------------------

fn analysing(started: f64) -> ModelRolloutStatus {
    ModelRolloutStatus { canary_weight: Some(10), ..status(Phase::Progressing, 1, started) }
}

#[test]
fn an_analysis_waits_for_the_settle_time_and_the_first_interval() {
    let act = Case::new(spec(), analysing(0.0), 2.0).act(Observation::Nothing);
    assert_eq!(act.requeue, Requeue::After(Duration::from_secs(2)), "settle 1s + interval 3s - elapsed 2s");
    assert!(act.effects.is_empty() && act.event.is_none());
}

#[test]
fn a_due_look_asks_for_the_counts_since_the_weight_settled() {
    let case = Case::new(spec(), analysing(0.0), 4.5);
    assert_eq!(case.need(), Need::Look { since: at(1.0) });
}

#[test]
fn a_failing_verdict_rolls_back_in_the_same_decision() {
    let case = Case::new(spec(), analysing(0.0), 4.5);
    let act = case.act(look((700.0, 1000.0), (9500.0, 10000.0)));
    assert_eq!(act.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: true }]);
    assert_eq!(act.status.phase, Some(Phase::RollingBack));
    assert_eq!(act.status.canary_weight, Some(0));
    assert!(act.status.message.as_deref().unwrap().starts_with("step 1: analysis failed: accuracy"));
    assert_eq!(record_kinds(&act.status), vec!["verdict", "rollback"]);
    let analysis = act.status.analysis.as_ref().unwrap();
    assert_eq!(analysis.verdict, Some(Verdict::Fail));
    assert_eq!(analysis.metrics.as_ref().unwrap()[0].verdict, Verdict::Fail);
    assert_eq!(condition(&act.status, "Ready"), "False");
}

#[test]
fn a_failing_verdict_with_on_failure_false_halts_at_weight_0() {
    let case = Case::new(spec_with(json!({"rollback": {"onFailure": false}})), analysing(0.0), 4.5);
    let act = case.act(look((700.0, 1000.0), (9500.0, 10000.0)));
    assert_eq!(act.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: true }]);
    assert_eq!(act.status.phase, Some(Phase::Paused));
    assert_eq!(act.event.map(|e| e.reason), Some("Halted"));
    let later = Case::new(spec_with(json!({"rollback": {"onFailure": false}})), act.status, 60.0);
    assert!(later.act(Observation::Nothing).effects.is_empty(), "a halted analysis waits for a person");
}

#[test]
fn a_passing_verdict_advances_to_the_next_step() {
    let act = Case::new(spec(), analysing(0.0), 4.5).act(look((9600.0, 10000.0), (9000.0, 10000.0)));
    assert_eq!(act.status.phase, Some(Phase::Progressing));
    assert_eq!(act.status.current_step, Some(2));
    assert_eq!(record_kinds(&act.status), vec!["verdict", "step"]);
    assert_eq!(act.event.map(|e| e.reason), Some("AnalysisPassed"));
}

#[test]
fn an_undecided_look_writes_the_numbers_and_waits_for_the_next() {
    let act = Case::new(spec(), analysing(0.0), 4.5).act(look((45.0, 50.0), (46.0, 50.0)));
    assert_eq!(act.status.phase, Some(Phase::Progressing));
    let analysis = act.status.analysis.as_ref().unwrap();
    assert_eq!(analysis.verdict, Some(Verdict::Continue));
    assert_eq!(analysis.looks, Some(1));
    assert_eq!(analysis.last_look_at, Some(at(4.5).to_string()));
    assert_eq!(act.requeue, Requeue::After(Duration::from_secs(3)));
    assert!(act.event.is_none());

    // The next reconcile in the same slot waits for the next slot instead of looking again.
    let same_slot = Case::new(spec(), act.status.clone(), 5.0).act(Observation::Nothing);
    assert_eq!(same_slot.requeue, Requeue::After(Duration::from_secs(2)));
    // In the next slot it looks again.
    assert!(matches!(Case::new(spec(), act.status, 7.5).need(), Need::Look { .. }));
}

#[test]
fn an_undecided_look_within_the_status_interval_writes_nothing() {
    let mut case = Case::new(spec(), analysing(0.0), 4.5);
    case.settings.analysis_status_interval = Duration::from_secs(10);
    let first = case.act(look((45.0, 50.0), (46.0, 50.0)));
    assert_ne!(first.status, case.status, "the first look is written");
    let mut second = Case::new(spec(), first.status.clone(), 7.5);
    second.settings.analysis_status_interval = Duration::from_secs(10);
    let act = second.act(look((90.0, 100.0), (91.0, 100.0)));
    assert_eq!(act.status, first.status.clone().with_conditions_at(7.5), "an unchanged Continue is not written");
    let mut third = Case::new(spec(), first.status, 15.0);
    third.settings.analysis_status_interval = Duration::from_secs(10);
    let act = third.act(look((135.0, 150.0), (136.0, 150.0)));
    assert_eq!(act.status.analysis.as_ref().unwrap().looks, Some(2), "written again once the interval passed");
}

#[test]
fn unreadable_metrics_warn_once_and_never_promote() {
    let case = Case::new(spec(), analysing(0.0), 4.5);
    let act = case.act(Observation::Look(Err("Prometheus at http://p:9090 is unreachable".into())));
    assert_eq!(act.status.phase, Some(Phase::Progressing));
    let analysis = act.status.analysis.clone().unwrap();
    assert_eq!(analysis.provider_errors, Some(1));
    assert_eq!(analysis.verdict, Some(Verdict::Continue));
    assert_eq!(act.event.as_ref().map(|e| (e.reason, e.warning)), Some(("MetricsUnavailable", true)));
    let again = Case::new(spec(), act.status, 7.5).act(Observation::Look(Err("still down".into())));
    assert_eq!(again.status.analysis.unwrap().provider_errors, Some(2));
    assert!(again.event.is_none(), "one warning per outage");
}

#[test]
fn unreadable_metrics_at_the_end_of_the_step_follow_on_inconclusive() {
    for (policy, phase, effects) in [
        ("rollback", Phase::RollingBack, vec![Effect::RouteAllToBaseline { after_failing_verdict: false }]),
        ("pause", Phase::Paused, vec![]),
        ("promote", Phase::Progressing, vec![]),
    ] {
        let mut spec = spec();
        spec.analysis.as_mut().unwrap().on_inconclusive = serde_json::from_value(json!(policy)).unwrap();
        let act = Case::new(spec, analysing(0.0), 31.0).act(Observation::Look(Err("down".into())));
        assert_eq!(act.status.phase, Some(phase), "{policy}");
        assert_eq!(act.effects, effects, "{policy}");
        assert!(act.status.message.as_deref().unwrap().contains("analysis ended without a verdict"), "{policy}");
        assert_eq!(act.status.analysis.unwrap().verdict, Some(Verdict::Inconclusive), "{policy}");
    }
}

#[test]
fn an_undecided_final_look_follows_on_inconclusive() {
    let act = Case::new(spec(), analysing(0.0), 31.0).act(look((45.0, 50.0), (46.0, 50.0)));
    assert_eq!(act.status.phase, Some(Phase::RollingBack), "the default policy rolls back");
    assert_eq!(act.status.analysis.unwrap().verdict, Some(Verdict::Inconclusive));
}

#[test]
fn a_new_analysis_step_does_not_inherit_the_previous_steps_looks() {
    let mut current = analysing(0.0);
    current.analysis = Some(AnalysisStatus {
        step: Some(0),
        looks: Some(9),
        last_look_at: Some(at(4.0).to_string()),
        ..Default::default()
    });
    assert!(matches!(Case::new(spec(), current, 4.5).need(), Need::Look { .. }));
}

// ----- rolling back ---------------------------------------------------------------------------------------------

#[test]
fn rolling_back_waits_for_the_scale_down_delay_then_removes_the_canary() {
    let spec = spec_with(json!({"rollback": {"scaleDownDelay": "30s"}}));
    let waiting = Case::new(spec.clone(), status(Phase::RollingBack, 1, 0.0), 10.0).act(Observation::Nothing);
    assert!(waiting.effects.is_empty());
    assert_eq!(waiting.requeue, Requeue::After(Duration::from_secs(20)));

    let done = Case::new(spec, status(Phase::RollingBack, 1, 0.0), 31.0).act(Observation::Nothing);
    assert_eq!(done.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: false }, Effect::DeleteCanary]);
    assert_eq!(done.status.phase, Some(Phase::RolledBack));
    assert_eq!(condition(&done.status, "Stalled"), "True");
    assert_eq!(condition(&done.status, "Reconciling"), "False");
    assert_eq!(done.event.map(|e| e.reason), Some("RolledBack"));
}

// ----- promoting ------------------------------------------------------------------------------------------------

fn promotion(registry: Result<(), String>, baseline: BaselineState) -> Observation {
    Observation::Promotion(PromotionObservation { registry, baseline })
}

#[test]
fn promoting_asks_where_promotion_stands() {
    assert_eq!(Case::new(spec(), status(Phase::Promoting, 6, 0.0), 1.0).need(), Need::Promotion);
}

#[test]
fn promotion_waits_for_the_registry_and_moves_nothing() {
    let case = Case::new(spec(), status(Phase::Promoting, 6, 0.0), 1.0);
    let act = case.act(promotion(Err("Postgres is down".into()), BaselineState::NotApplicable));
    assert!(act.effects.is_empty());
    assert!(act.status.message.as_deref().unwrap().contains("waiting for the registry (Postgres is down)"));
    assert_eq!(act.status.phase, Some(Phase::Promoting));
    assert_eq!(act.requeue, Requeue::After(Duration::from_secs(2)));
}

#[test]
fn promotion_moves_the_baseline_then_waits_for_it_to_roll_out() {
    let case = Case::new(spec(), status(Phase::Promoting, 6, 0.0), 1.0);
    let act = case.act(promotion(Ok(()), BaselineState::ServesPrevious));
    assert_eq!(act.effects, vec![Effect::PromoteBaseline]);
    assert_eq!(act.status.phase, Some(Phase::Promoting));
    let rolling = Case::new(spec(), act.status.clone(), 2.0).act(promotion(Ok(()), BaselineState::RollingOut));
    assert!(rolling.effects.is_empty());
    assert_eq!(rolling.status, act.status.with_conditions_at(2.0), "waiting writes nothing new");
}

#[test]
fn a_rolled_out_baseline_takes_all_traffic_and_the_canary_goes() {
    let mut current = status(Phase::Promoting, 6, 0.0);
    current.canary_weight = Some(100);
    let act = Case::new(spec(), current, 1.0).act(promotion(Ok(()), BaselineState::RolledOut));
    assert_eq!(act.effects, vec![Effect::RouteAllToBaseline { after_failing_verdict: false }, Effect::DeleteCanary]);
    assert_eq!(act.status.phase, Some(Phase::Succeeded));
    assert_eq!(act.status.canary_weight, Some(0));
    assert_eq!(condition(&act.status, "Ready"), "True");
    assert_eq!(condition(&act.status, "Promoted"), "True");
    assert_eq!(act.event.map(|e| e.reason), Some("Promoted"));
}

#[test]
fn kserve_promotion_makes_the_candidate_the_default() {
    let spec = spec_with(json!({"serving": {"kserve": {"inferenceService": "fraud"}}, "traffic": null}));
    let act =
        Case::new(spec, status(Phase::Promoting, 6, 0.0), 1.0).act(promotion(Ok(()), BaselineState::NotApplicable));
    assert_eq!(act.effects, vec![Effect::PromoteKServe]);
    assert_eq!(act.status.phase, Some(Phase::Succeeded));
}

// ----- helpers for "nothing changed" ----------------------------------------------------------------------------

trait WithConditions {
    fn with_conditions_at(self, now: f64) -> ModelRolloutStatus;
    fn tap_conditions(self, case: &Case) -> ModelRolloutStatus;
}

impl WithConditions for ModelRolloutStatus {
    /// The status as a decision that changes nothing returns it: conditions brought up to date.
    fn with_conditions_at(mut self, now: f64) -> ModelRolloutStatus {
        crate::status::set_conditions(&mut self, at(now), Some(2));
        self.observed_generation = Some(2);
        self
    }

    fn tap_conditions(self, case: &Case) -> ModelRolloutStatus {
        self.with_conditions_at(case.now)
    }
}
