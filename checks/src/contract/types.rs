//! The tensor contract of a model: named inputs and outputs (or weights) with dtypes and shapes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size, e.g. `16`.
    Fixed(u64),
    /// A symbolic size such as `batch`, chosen by the caller at run time.
    Symbolic(String),
    /// Neither fixed nor named: the model does not say (JSON `null`).
    Unknown,
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(size) => write!(f, "{size}"),
            Dim::Symbolic(name) => write!(f, "{name}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// Writes a shape as `[batch,3,224,224]`, or `[?]` when its rank is unknown.
pub fn shape_text(shape: Option<&[Dim]>) -> String {
    match shape {
        None => "[?]".to_string(),
        Some(dims) => {
            let parts: Vec<String> = dims.iter().map(Dim::to_string).collect();
            format!("[{}]", parts.join(","))
        }
    }
}

/// A named tensor of the contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Name callers use, e.g. `pixels`.
    pub name: String,
    /// Element type in plain words, e.g. `float32`.
    pub dtype: String,
    /// Declared shape; `None` when the model does not declare one.
    pub shape: Option<Vec<Dim>>,
    /// Which axis is the batch (ONNX inputs only), found from how the input is used: axis 1 for a
    /// recurrent state `[layers, batch, hidden]`, otherwise axis 0; `None` for scalars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_axis: Option<usize>,
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" {} {}", self.name, self.dtype, shape_text(self.shape.as_deref()))
    }
}

/// File format of a model artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// An ONNX model (`ModelProto`).
    Onnx,
    /// A safetensors weights file.
    Safetensors,
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelFormat::Onnx => "onnx",
            ModelFormat::Safetensors => "safetensors",
        })
    }
}

/// What a model promises its callers.
///
/// For ONNX that is the graph inputs (without initializers) and outputs. A safetensors file has no
/// graph, so its contract is the list of weight tensors a loader will look up by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelContract {
    /// File format.
    pub format: ModelFormat,
    /// Inputs callers must feed (ONNX only).
    pub inputs: Vec<TensorSpec>,
    /// Outputs callers read (ONNX only).
    pub outputs: Vec<TensorSpec>,
    /// Weight tensors (safetensors only).
    pub weights: Vec<TensorSpec>,
    /// Operator sets as `domain:version` (ONNX only; empty domain written as `ai.onnx`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opsets: Vec<String>,
}
