//! Fuzz target: arbitrary bytes through the ONNX reader, shape inference and the contract comparison.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_checks::contract::{check_shapes_at_batch, compare_contracts, decode_onnx};

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = decode_onnx(bytes::Bytes::copy_from_slice(data)) {
        for batch in [1, 8, u64::MAX] {
            let check = check_shapes_at_batch(&model.graph, batch);
            for finding in &check.findings {
                let _ = finding.describe();
            }
        }
        let _ = compare_contracts(&model.contract, &model.contract, false);
    }
});
