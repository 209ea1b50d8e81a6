//! Tensor contracts of ONNX and safetensors models, and the comparison of candidate against baseline.
//!
//! [`check_contract`] is the entry point: it reads both files (ONNX with a hand-derived protobuf
//! reader, safetensors by header only), lists every difference between their contracts in plain
//! words, and runs shape inference on the candidate at each configured batch size to find residual
//! `Add`/`Mul`/`Sub`/`Concat` nodes (and other combining nodes) whose inputs do not fit.

mod compare;
mod error;
mod onnx;
pub mod onnx_proto;
mod safetensors;
mod shape;
mod structure;
mod types;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use compare::{Difference, compare_contracts};
pub use error::ContractError;
pub use onnx::{OnnxError, OnnxModel, decode_onnx};
pub use safetensors::read_safetensors_header;
pub use shape::{BatchShapeCheck, Coverage, NamedShape, ShapeFinding, check_shapes_at_batch};
pub use structure::validate_model;
pub use types::{Dim, ModelContract, ModelFormat, TensorSpec, shape_text};

use crate::smoke::termination::TerminationMessage;

/// Batch sizes the residual-shape check uses when none are configured.
pub const DEFAULT_BATCH_SIZES: [u64; 3] = [1, 8, 64];

/// How strict the contract check is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractOptions {
    /// Batch sizes to run shape inference at (default 1, 8, 64).
    pub batch_sizes: Vec<u64>,
    /// Whether the candidate may add outputs (or weight tensors) the baseline does not have (default true).
    pub allow_new_outputs: bool,
}

impl Default for ContractOptions {
    fn default() -> Self {
        ContractOptions { batch_sizes: DEFAULT_BATCH_SIZES.to_vec(), allow_new_outputs: true }
    }
}

/// A model read from disk: its contract, and for ONNX the graph for shape checks.
#[derive(Debug)]
pub struct LoadedModel {
    /// Where it was read from.
    pub path: PathBuf,
    /// What it promises callers.
    pub contract: ModelContract,
    /// The ONNX graph; `None` for safetensors.
    pub graph: Option<onnx_proto::GraphProto>,
}

/// The outcome of comparing a candidate with its baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractReport {
    /// True when nothing breaking was found: no breaking difference and no shape mismatch.
    pub compatible: bool,
    /// The candidate's contract.
    pub candidate: ModelContract,
    /// The baseline's contract, when a baseline was given.
    pub baseline: Option<ModelContract>,
    /// Every difference, breaking or not.
    pub differences: Vec<Difference>,
    /// Shape inference of the candidate at each batch size (empty for safetensors).
    pub residual_checks: Vec<BatchShapeCheck>,
}

/// Reads an ONNX model or a safetensors file (recognised by content, not by file name).
pub fn load_model(path: &Path) -> Result<LoadedModel, ContractError> {
    let io_error = |source| ContractError::Io { path: path.to_path_buf(), source };
    let not_a_model = |reason: String| ContractError::NotAModel { path: path.to_path_buf(), reason };
    let mut file = File::open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if metadata.is_dir() {
        return Err(not_a_model("it is a directory; give the model file".to_string()));
    }
    if !metadata.is_file() {
        return Err(not_a_model("it is not a regular file".to_string()));
    }
    let file_len = metadata.len();
    let mut prefix = [0u8; 9];
    let prefix_len = read_prefix(&mut file, &mut prefix).map_err(io_error)?;
    let by_name = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("safetensors"));
    if by_name || (prefix_len == 9 && prefix[8] == b'{') {
        let file = File::open(path).map_err(io_error)?;
        let contract = read_safetensors_header(BufReader::new(file), file_len).map_err(not_a_model)?;
        return Ok(LoadedModel { path: path.to_path_buf(), contract, graph: None });
    }
    let bytes = std::fs::read(path).map_err(io_error)?;
    let model = decode_onnx(Bytes::from(bytes)).map_err(|err| match err {
        OnnxError::Unreadable(reason) => not_a_model(format!("{reason} (tried ONNX and safetensors)")),
        OnnxError::Invalid(problems) => ContractError::InvalidModel { path: path.to_path_buf(), problems },
    })?;
    Ok(LoadedModel { path: path.to_path_buf(), contract: model.contract, graph: Some(model.graph) })
}

fn read_prefix(file: &mut File, prefix: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < prefix.len() {
        match file.read(&mut prefix[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

/// Reads just the contract of a model file.
pub fn read_contract(path: &Path) -> Result<ModelContract, ContractError> {
    load_model(path).map(|model| model.contract)
}

/// Compares already loaded models (pure: no I/O). Without a baseline only the shape checks run.
pub fn compare_models(
    candidate: &LoadedModel,
    baseline: Option<&LoadedModel>,
    options: &ContractOptions,
) -> ContractReport {
    let differences = baseline
        .map(|baseline| compare_contracts(&candidate.contract, &baseline.contract, options.allow_new_outputs))
        .unwrap_or_default();
    let mut residual_checks: Vec<BatchShapeCheck> = match &candidate.graph {
        Some(graph) => options.batch_sizes.iter().map(|&batch| check_shapes_at_batch(graph, batch)).collect(),
        None => Vec::new(),
    };
    if let Some(baseline) = baseline {
        for check in &mut residual_checks {
            for finding in pinned_batch_findings(&candidate.contract, &baseline.contract, check.batch_size) {
                check.findings.insert(0, finding);
                check.passed = false;
            }
        }
    }
    let compatible = !differences.iter().any(|d| d.breaking) && residual_checks.iter().all(|c| c.passed);
    ContractReport {
        compatible,
        candidate: candidate.contract.clone(),
        baseline: baseline.map(|b| b.contract.clone()),
        differences,
        residual_checks,
    }
}

/// Inputs whose batch axis was dynamic in the baseline (symbolic, `-1` or unnamed) and is fixed in the
/// candidate to another size than `batch`: callers sending that batch size break.
fn pinned_batch_findings(candidate: &ModelContract, baseline: &ModelContract, batch: u64) -> Vec<ShapeFinding> {
    let mut findings = Vec::new();
    for now in &candidate.inputs {
        let Some(old) = baseline.inputs.iter().find(|old| old.name == now.name) else { continue };
        let Some(axis) = now.batch_axis.or(old.batch_axis) else { continue };
        let (Some(old_shape), Some(now_shape)) = (&old.shape, &now.shape) else { continue };
        let (Some(was), Some(Dim::Fixed(fixed))) = (old_shape.get(axis), now_shape.get(axis)) else { continue };
        if matches!(was, Dim::Fixed(_)) || *fixed == batch {
            continue;
        }
        findings.push(ShapeFinding {
            node: now.name.clone(),
            op_type: "graph input".to_string(),
            inputs: vec![NamedShape { name: now.name.clone(), shape: now.shape.clone() }],
            message: format!(
                "the batch axis (axis {axis}) was dynamic ({was}) in the baseline and is fixed to {fixed} in the \
                 candidate, so batch size {batch} cannot be taken"
            ),
        });
    }
    findings
}

/// Reads both models and compares them. Errors only when a file cannot be read as a model.
pub fn check_contract(
    candidate: &Path,
    baseline: Option<&Path>,
    options: &ContractOptions,
) -> Result<ContractReport, ContractError> {
    let candidate = load_model(candidate)?;
    let baseline = baseline.map(load_model).transpose()?;
    Ok(compare_models(&candidate, baseline.as_ref(), options))
}

impl ContractReport {
    /// Every breaking problem in plain words: breaking differences, then shape mismatches per batch size.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> =
            self.differences.iter().filter(|d| d.breaking).map(|d| d.message.clone()).collect();
        for check in &self.residual_checks {
            for finding in &check.findings {
                problems.push(format!("batch {}: {}", check.batch_size, finding.describe()));
            }
        }
        problems
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        let contract = &self.candidate;
        line(format!("candidate ({}):", contract.format));
        for (word, specs) in [("input", &contract.inputs), ("output", &contract.outputs), ("tensor", &contract.weights)]
        {
            for spec in specs.iter() {
                line(format!("  {word} {spec}"));
            }
        }
        if self.baseline.is_some() {
            if self.differences.is_empty() {
                line("contract: same as the baseline".to_string());
            } else {
                line("differences from the baseline:".to_string());
                for difference in &self.differences {
                    let tag = if difference.breaking { "breaking" } else { "note" };
                    line(format!("  - [{tag}] {}", difference.message));
                }
            }
        } else {
            line("contract: no baseline given, only shape checks ran".to_string());
        }
        if !self.residual_checks.is_empty() {
            line("shape checks:".to_string());
            for check in &self.residual_checks {
                for note in &check.notes {
                    line(format!("  batch {}: note: {note}", check.batch_size));
                }
                let coverage = &check.coverage;
                if check.passed && coverage.complete() {
                    line(format!("  batch {}: all nodes fit ({})", check.batch_size, coverage.summary()));
                } else if check.passed {
                    line(format!(
                        "  batch {}: no mismatch among the nodes checked ({}; the rest are not checked, not passed)",
                        check.batch_size,
                        coverage.summary()
                    ));
                } else {
                    line(format!(
                        "  batch {}: {} node(s) do not fit ({})",
                        check.batch_size,
                        check.findings.len(),
                        coverage.summary()
                    ));
                    for finding in &check.findings {
                        line(format!("    - {}", finding.describe()));
                    }
                }
                for node in &coverage.not_checked {
                    line(format!("    not checked: {node}"));
                }
                for node in &coverage.unknown_from {
                    line(format!("    shapes unknown from: {node}"));
                }
                if coverage.unknown_from_count > coverage.unknown_from.len() {
                    line(format!(
                        "    shapes unknown from {} more node(s)",
                        coverage.unknown_from_count - coverage.unknown_from.len()
                    ));
                }
            }
        }
        line(format!(
            "verdict: {}{}",
            if self.compatible { "compatible" } else { "INCOMPATIBLE" },
            self.coverage_note()
        ));
        out
    }

    /// `` (412 of 420 elementwise nodes checked at batch 8)`` when the shape checks did not cover every
    /// elementwise node at some batch size; empty when they did (or did not run).
    pub fn coverage_note(&self) -> String {
        match self.residual_checks.iter().min_by_key(|c| (c.coverage.complete(), c.coverage.elementwise_checked)) {
            Some(check) if !check.coverage.complete() => {
                format!(" ({} at batch {})", check.coverage.summary(), check.batch_size)
            }
            _ => String::new(),
        }
    }

    /// The short form for a Pod's termination message (see [`TerminationMessage::to_json`]).
    pub fn termination_message(&self) -> TerminationMessage {
        let breaking = self.differences.iter().filter(|d| d.breaking).count();
        let mismatches: usize = self.residual_checks.iter().map(|c| c.findings.len()).sum();
        TerminationMessage {
            curve: Vec::new(),
            files: Vec::new(),
            check: "contract".to_string(),
            passed: self.compatible,
            summary: format!(
                "{}: {breaking} breaking difference(s), {mismatches} shape mismatch(es) at batch sizes {:?}{}",
                if self.compatible { "compatible" } else { "incompatible" },
                self.residual_checks.iter().map(|c| c.batch_size).collect::<Vec<_>>(),
                self.coverage_note()
            ),
            reasons: self.problems(),
        }
    }
}
