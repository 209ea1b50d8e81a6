//! Reading an ONNX model file into its contract and graph.

use std::collections::HashSet;

use bytes::Bytes;
use prost::Message;

use super::onnx_proto::{GraphProto, ModelProto, TensorProto, ValueInfoProto, dtype_name};
use super::shape::batch::batch_axes;
use super::structure::validate_model;

/// Constant tensors up to this many bytes keep their values (shape constants are tiny); larger ones
/// (weights) are dropped after decoding, so a loaded model holds no weights at all.
const KEPT_TENSOR_BYTES: usize = 1024;
use super::types::{Dim, ModelContract, ModelFormat, TensorSpec};

/// A decoded ONNX model: its contract plus the graph the shape checks walk.
#[derive(Debug)]
pub struct OnnxModel {
    /// Inputs and outputs.
    pub contract: ModelContract,
    /// The graph, without the values of large weights (see `release_weights`).
    pub graph: GraphProto,
}

/// Why bytes could not be taken as an ONNX model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnnxError {
    /// Not an ONNX protobuf with a graph at all (empty, garbled, truncated, another format).
    Unreadable(String),
    /// A `ModelProto`, but one that breaks ONNX's structural rules (see [`validate_model`]).
    Invalid(Vec<String>),
}

impl std::fmt::Display for OnnxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnnxError::Unreadable(reason) => f.write_str(reason),
            OnnxError::Invalid(problems) => {
                write!(f, "it breaks ONNX's structural rules, so no runtime loads it: {}", problems.join("; "))
            }
        }
    }
}

/// Decodes an ONNX model from the whole file's bytes and checks it against ONNX's structural rules.
pub fn decode_onnx(bytes: Bytes) -> Result<OnnxModel, OnnxError> {
    let unreadable = |reason: &str| OnnxError::Unreadable(reason.to_string());
    if bytes.is_empty() {
        return Err(unreadable("the file is empty"));
    }
    let model = ModelProto::decode(bytes)
        .map_err(|err| OnnxError::Unreadable(format!("not a valid ONNX protobuf (truncated or garbled?): {err}")))?;
    match &model.graph {
        None => return Err(unreadable("no graph in the file; is this an ONNX model?")),
        Some(graph) if graph.output.is_empty() => {
            return Err(unreadable("the graph declares no outputs; is this an ONNX model?"));
        }
        Some(_) => {}
    }
    let problems = validate_model(&model);
    if !problems.is_empty() {
        return Err(OnnxError::Invalid(problems));
    }
    let Some(mut graph) = model.graph else { return Err(unreadable("no graph in the file; is this an ONNX model?")) };
    release_weights(&mut graph);
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let batch_axes = batch_axes(&graph);
    let inputs = graph
        .input
        .iter()
        .filter(|input| !initializers.contains(input.name.as_str()))
        .map(|input| TensorSpec {
            batch_axis: batch_axes.get(input.name.as_str()).copied().flatten(),
            ..tensor_spec(input)
        })
        .collect();
    let outputs = graph.output.iter().map(tensor_spec).collect();
    let opsets = model
        .opset_import
        .iter()
        .map(|opset| {
            let domain = if opset.domain.is_empty() { "ai.onnx" } else { &opset.domain };
            format!("{domain}:{}", opset.version)
        })
        .collect();
    Ok(OnnxModel {
        contract: ModelContract { format: ModelFormat::Onnx, inputs, outputs, weights: Vec::new(), opsets },
        graph,
    })
}

/// The contract entry of a graph input or output.
fn tensor_spec(value: &ValueInfoProto) -> TensorSpec {
    let tensor_type = value.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    let Some(tensor_type) = tensor_type else {
        return TensorSpec {
            name: value.name.clone(),
            dtype: "not a tensor".to_string(),
            shape: None,
            batch_axis: None,
        };
    };
    let shape = tensor_type.shape.as_ref().map(|shape| {
        shape
            .dim
            .iter()
            .map(|dim| match (&dim.dim_value, &dim.dim_param) {
                (Some(size), _) if *size >= 0 => Dim::Fixed(size.unsigned_abs()),
                (_, Some(name)) if !name.is_empty() => Dim::Symbolic(name.clone()),
                _ => Dim::Unknown,
            })
            .collect()
    });
    TensorSpec { name: value.name.clone(), dtype: dtype_name(tensor_type.elem_type), shape, batch_axis: None }
}

/// Drops the values of large constant tensors and copies the small ones out of the file buffer.
///
/// `raw_data` fields are slices of the one buffer the file was read into; once no slice refers to
/// it, the buffer is freed. Peak memory is therefore the file once, and a loaded model keeps only
/// its structure and small constants, so comparing two large models never holds both files' weights.
fn release_weights(graph: &mut GraphProto) {
    for tensor in graph.initializer.iter_mut() {
        release_tensor(tensor);
    }
    for attribute in graph.node.iter_mut().flat_map(|n| n.attribute.iter_mut()) {
        if let Some(tensor) = attribute.t.as_mut() {
            release_tensor(tensor);
        }
        // Nesting is bounded by prost's decode recursion limit.
        if let Some(subgraph) = attribute.g.as_mut() {
            release_weights(subgraph);
        }
        for subgraph in attribute.graphs.iter_mut() {
            release_weights(subgraph);
        }
    }
}

fn release_tensor(tensor: &mut TensorProto) {
    if tensor.raw_data.len() <= KEPT_TENSOR_BYTES {
        tensor.raw_data = Bytes::copy_from_slice(&tensor.raw_data);
    } else {
        tensor.raw_data = Bytes::new();
    }
    let typed_bytes = (tensor.float_data.len() + tensor.int32_data.len()).saturating_mul(4)
        + tensor.int64_data.len().saturating_mul(8);
    if typed_bytes > KEPT_TENSOR_BYTES {
        tensor.float_data = Vec::new();
        tensor.int32_data = Vec::new();
        tensor.int64_data = Vec::new();
    }
}
