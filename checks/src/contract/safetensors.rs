//! Reading the header of a safetensors file (never its weights) into a contract.
//!
//! Layout: 8 bytes little-endian header length `N`, then `N` bytes of JSON mapping tensor names to
//! `{"dtype", "shape", "data_offsets"}` (plus an optional `__metadata__` map of strings), then the data.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;

use super::types::{Dim, ModelContract, ModelFormat, TensorSpec};

/// The largest header accepted, as in the reference implementation.
pub const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// Reads the header from `reader` (positioned at the start) of a file `file_len` bytes long.
pub fn read_safetensors_header(mut reader: impl Read, file_len: u64) -> Result<ModelContract, String> {
    let mut len_bytes = [0u8; 8];
    reader.read_exact(&mut len_bytes).map_err(|_| "shorter than the 8-byte safetensors header length".to_string())?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES {
        return Err(format!("safetensors header claims {header_len} bytes (more than the {MAX_HEADER_BYTES} allowed)"));
    }
    let data_start = header_len.checked_add(8).ok_or("safetensors header length overflows")?;
    if data_start > file_len {
        return Err(format!(
            "truncated: the safetensors header claims {header_len} bytes but the file has only {file_len}"
        ));
    }
    let mut header = Vec::new();
    reader
        .take(header_len)
        .read_to_end(&mut header)
        .map_err(|err| format!("cannot read the safetensors header: {err}"))?;
    if header.len() as u64 != header_len {
        return Err("truncated safetensors header".to_string());
    }
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|err| format!("the safetensors header is not a JSON object: {err}"))?;
    if let Some(metadata) = entries.remove("__metadata__") {
        serde_json::from_value::<BTreeMap<String, String>>(metadata)
            .map_err(|err| format!("safetensors __metadata__ is not a map of strings: {err}"))?;
    }
    let data_len = file_len - data_start;
    let mut spans = Vec::with_capacity(entries.len());
    let mut weights = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let entry: HeaderEntry = serde_json::from_value(value)
            .map_err(|err| format!("safetensors tensor \"{name}\" has a malformed entry: {err}"))?;
        let dtype =
            dtype_name(&entry.dtype).ok_or_else(|| format!("tensor \"{name}\": unknown dtype {}", entry.dtype))?;
        let [begin, end] = entry.data_offsets;
        if begin > end || end > data_len {
            return Err(format!(
                "tensor \"{name}\": data offsets {begin}..{end} lie outside the {data_len} data bytes (truncated file?)"
            ));
        }
        let bits = dtype_bits(&entry.dtype);
        let expected_bits = entry
            .shape
            .iter()
            .try_fold(bits, |acc, &dim| acc.checked_mul(dim))
            .ok_or_else(|| format!("tensor \"{name}\": the shape's element count overflows"))?;
        if expected_bits.div_ceil(8) != end - begin {
            return Err(format!(
                "tensor \"{name}\": {} {:?} needs {} bytes but its data offsets span {}",
                entry.dtype,
                entry.shape,
                expected_bits.div_ceil(8),
                end - begin
            ));
        }
        spans.push((begin, end, name.clone()));
        weights.push(TensorSpec {
            name,
            dtype: dtype.to_string(),
            shape: Some(entry.shape.into_iter().map(Dim::Fixed).collect()),
            batch_axis: None,
        });
    }
    spans.sort();
    for pair in spans.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(format!("tensors \"{}\" and \"{}\" overlap in the data section", pair[0].2, pair[1].2));
        }
    }
    Ok(ModelContract {
        format: ModelFormat::Safetensors,
        inputs: Vec::new(),
        outputs: Vec::new(),
        weights,
        opsets: Vec::new(),
    })
}

/// Plain name of a safetensors dtype, or `None` when unknown.
fn dtype_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "BOOL" => "bool",
        "U8" => "uint8",
        "I8" => "int8",
        "F8_E5M2" => "float8e5m2",
        "F8_E4M3" => "float8e4m3fn",
        "F8_E8M0" => "float8e8m0",
        "F4" => "float4e2m1",
        "F6_E2M3" => "float6e2m3",
        "F6_E3M2" => "float6e3m2",
        "I16" => "int16",
        "U16" => "uint16",
        "F16" => "float16",
        "BF16" => "bfloat16",
        "I32" => "int32",
        "U32" => "uint32",
        "F32" => "float32",
        "F64" => "float64",
        "I64" => "int64",
        "U64" => "uint64",
        "C64" => "complex64",
        _ => return None,
    })
}

/// Bits per element of a known safetensors dtype.
fn dtype_bits(code: &str) -> u64 {
    match code {
        "F4" => 4,
        "F6_E2M3" | "F6_E3M2" => 6,
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 8,
        "I16" | "U16" | "F16" | "BF16" => 16,
        "I32" | "U32" | "F32" => 32,
        "C64" | "F64" | "I64" | "U64" => 64,
        _ => 8,
    }
}
