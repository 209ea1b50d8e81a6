//! Why a model could not be read for a contract check.

use std::path::PathBuf;

/// A model file that could not be read or is not a model. `rampart-check contract` exits 2 on these.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// The file could not be opened or read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The bytes are not a readable ONNX model or safetensors file.
    #[error("{path} is not a readable model: {reason}")]
    NotAModel {
        /// The file.
        path: PathBuf,
        /// What is wrong, in plain words.
        reason: String,
    },
    /// An ONNX model that breaks ONNX's structural rules (what `onnx.checker` rejects).
    #[error("{path} is not a valid ONNX model (no runtime loads it): {}", problems.join("; "))]
    InvalidModel {
        /// The file.
        path: PathBuf,
        /// Every problem found, in plain words.
        problems: Vec<String>,
    },
}

impl ContractError {
    /// Short, stable label for counting failures in metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ContractError::Io { .. } => "io",
            ContractError::NotAModel { .. } => "not_a_model",
            ContractError::InvalidModel { .. } => "invalid_model",
        }
    }
}

impl ContractError {
    /// The error as the JSON a `--format json` caller reads on stdout instead of a report:
    /// `{"compatible": false, "error": {"kind", "path", "message", "problems"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let (path, problems) = match self {
            ContractError::Io { path, .. } | ContractError::NotAModel { path, .. } => (path, Vec::new()),
            ContractError::InvalidModel { path, problems } => (path, problems.clone()),
        };
        serde_json::json!({
            "compatible": false,
            "error": {
                "kind": self.metric_label(),
                "path": path.display().to_string(),
                "message": self.to_string(),
                "problems": problems,
            }
        })
    }
}
