//! Fuzz target: arbitrary bytes through the safetensors header reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_checks::contract::{compare_contracts, read_safetensors_header};

fuzz_target!(|data: &[u8]| {
    if let Ok(contract) = read_safetensors_header(data, data.len() as u64) {
        let _ = compare_contracts(&contract, &contract, true);
    }
});
