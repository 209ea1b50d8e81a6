//! LLM metric presets end to end on the real API server and a real Prometheus: model servers that export what a
//! vLLM server exports (time to first token, inter-token latency, request errors), and rollouts that judge them by
//! preset name alone, without writing PromQL.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use rampart_api::Phase;
use rampart_api::v1alpha1::Verdict;
use rampart_testenv::model_server::ModelServerConfig;
use serde_json::json;
use support::{Rig, rollout};

const QUICK: Duration = Duration::from_millis(2);

/// An LLM server playing version `version` with the given median time to first token.
fn llm_server(version: &str, time_to_first_token: Duration) -> ModelServerConfig {
    ModelServerConfig::new(version).latency(QUICK, 0.3).llm_metrics().time_to_first_token(time_to_first_token, 0.25)
}

/// The split check is off in these tests: they are about the presets, and with the two model servers scraped
/// separately every 250 ms, a first look over about a second of traffic can see one arm's counter a scrape further
/// along than the other's (a CI run failed a 50% split as 60% that way). `controller/tests/rollouts.rs` tests the
/// split check itself.
fn no_split_check() -> serde_json::Value {
    json!({"srm": {"enabled": false}})
}

/// The metrics a team serving an LLM would judge, all by preset.
fn llm_metrics() -> serde_json::Value {
    json!([
        {"name": "ttft", "preset": "vllm-time-to-first-token", "tolerance": {"absolute": 0.05}},
        {"name": "inter-token", "preset": "vllm-inter-token-latency", "tolerance": {"absolute": 0.05}},
        {"name": "errors", "preset": "vllm-request-error-rate", "tolerance": {"absolute": 0.02}},
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_with_a_thirty_percent_slower_time_to_first_token_is_rolled_back_by_the_preset() {
    let baseline = llm_server("v1", Duration::from_millis(50));
    let candidate = llm_server("v2", Duration::from_millis(65));
    let mut rig = Rig::with_servers("llm-slow", baseline, candidate, None).await;
    rig.start_controller();
    let steps = json!([{"setWeight": 50}, {"analysis": {"duration": "90s", "interval": "1s"}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("tenant", steps, llm_metrics(), no_split_check())).await;

    let done = rig.wait_for_phase("tenant", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(150)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::RolledBack), "{:?}", status.message);
    let message = status.message.clone().unwrap();
    eprintln!("slower time to first token: {message}");
    assert!(message.contains("ttft"), "the time-to-first-token preset is what failed: {message}");
    let analysis = status.analysis.unwrap();
    assert_eq!(analysis.verdict, Some(Verdict::Fail), "a failing verdict, not a timeout");
    let metrics = analysis.metrics.unwrap();
    let by_name = |name: &str| metrics.iter().find(|m| m.name == name).unwrap();
    assert_eq!(by_name("ttft").verdict, Verdict::Fail, "{:?}", by_name("ttft"));
    assert_ne!(by_name("inter-token").verdict, Verdict::Fail, "{:?}", by_name("inter-token"));
    assert_ne!(by_name("errors").verdict, Verdict::Fail, "{:?}", by_name("errors"));
    rig.stop_controller().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_candidate_as_fast_as_production_is_promoted_on_the_presets() {
    let baseline = llm_server("v1", Duration::from_millis(50));
    let candidate = llm_server("v2", Duration::from_millis(50));
    let mut rig = Rig::with_servers("llm-ok", baseline, candidate, None).await;
    rig.start_controller();
    let steps = json!([{"setWeight": 50}, {"analysis": {"duration": "90s", "interval": "1s"}}, {"setWeight": 100}]);
    rig.create_rollout(rollout("tenant", steps, llm_metrics(), no_split_check())).await;

    let done = rig.wait_for_phase("tenant", &[Phase::Succeeded, Phase::RolledBack], Duration::from_secs(150)).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.message);
    rig.stop_controller().await;
}
