//! Fuzz target: arbitrary bytes through ONNX's structural rules (`validate_model`) and the decoder that
//! applies them, subgraphs included. Nothing may panic, loop or recurse without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rampart_checks::contract::onnx_proto::ModelProto;
use rampart_checks::contract::{decode_onnx, validate_model};

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = ModelProto::decode(data) {
        let problems = validate_model(&model);
        assert!(problems.len() <= 20, "the problem list is capped");
    }
    let _ = decode_onnx(bytes::Bytes::copy_from_slice(data));
});
