//! Decisions: Analysis looks and what each verdict leads to.

use std::time::Duration;

use serde_json::json;

use super::*;

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
fn a_pass_written_into_the_engine_state_by_someone_else_does_not_advance() {
    let first = Case::new(spec(), analysing(0.0), 4.5).act(look((45.0, 50.0), (46.0, 50.0)));
    assert_eq!(first.status.analysis.as_ref().unwrap().verdict, Some(Verdict::Continue));
    // Someone with write access to the status claims the analysis already passed.
    let mut forged = first.status.clone();
    let analysis = forged.analysis.as_mut().unwrap();
    let mut state: rampart_analysis::AnalysisState =
        serde_json::from_str(analysis.engine_state.as_deref().unwrap()).unwrap();
    assert!(state.seal.is_some(), "the controller seals the state it writes");
    for metric in state.metrics.values_mut() {
        metric.pass_p = 1e-9;
        metric.decided = Some(rampart_analysis::Verdict::Pass);
    }
    state.decided = Some(rampart_analysis::Decided { verdict: rampart_analysis::Verdict::Pass, look: 1 });
    analysis.engine_state = Some(serde_json::to_string(&state).unwrap());
    let act = Case::new(spec(), forged, 7.5).act(look((90.0, 100.0), (92.0, 100.0)));
    assert_eq!(act.status.current_step, Some(1), "{:?}", act.status.message);
    assert_ne!(act.status.analysis.as_ref().unwrap().verdict, Some(Verdict::Pass));
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
