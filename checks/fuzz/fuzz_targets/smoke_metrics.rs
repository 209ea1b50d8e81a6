//! Fuzz target: arbitrary text through the smoke-training metric parser, evaluator and termination message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_checks::smoke::termination::MAX_TERMINATION_MESSAGE_BYTES;
use rampart_checks::smoke::{SmokeThresholds, evaluate, parse_metrics};

fuzz_target!(|data: &[u8]| {
    let metrics = parse_metrics(&String::from_utf8_lossy(data));
    let verdict = evaluate(&metrics, &SmokeThresholds::default());
    assert!(verdict.termination_message().to_json().len() < MAX_TERMINATION_MESSAGE_BYTES);
});
