//! The shape-check driver: shape inference over an ONNX graph at a concrete batch size, reporting nodes
//! whose inputs cannot fit, and how much of the graph it could follow.
//!
//! Each graph input's batch axis (found from how the input is used, see [`batch`]) is set to the batch
//! size; other dynamic sizes become symbols. Shapes are propagated node by node through the per-operator
//! rules in [`rules`]; `If` branches, `Loop` and `Scan` bodies are walked here, with the enclosing
//! graph's values in scope. A definite mismatch becomes a [`ShapeFinding`]. Where a rule cannot tell,
//! the outputs become unknown, the node is listed as where inference stopped, and an elementwise node
//! whose inputs are unknown is counted as "not checked", never as fitting. Small integer tensors (shape
//! computations such as `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`) are tracked by value.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

mod attrs;
pub(crate) mod batch;
mod control_flow;
mod rules;
mod value;

use super::onnx_proto::{GraphProto, NodeProto, ValueInfoProto};
use super::types::{Dim, shape_text};
use rules::{infer_node, is_elementwise};
use value::{D, Value, constant_value, dims_text};

/// At most this many nodes are named in each coverage list (the counts are exact).
const MAX_LISTED: usize = 12;

/// A named input of a node and the shape it had at this batch size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedShape {
    /// Value name.
    pub name: String,
    /// Inferred shape; `None` when unknown.
    pub shape: Option<Vec<Dim>>,
}

/// A node whose inputs do not fit together at one batch size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeFinding {
    /// Node name (or `<op> #<index>` when the node has none).
    pub node: String,
    /// Operator, e.g. `Add`.
    pub op_type: String,
    /// The node's inputs with their inferred shapes.
    pub inputs: Vec<NamedShape>,
    /// What does not fit, in plain words.
    pub message: String,
}

impl ShapeFinding {
    /// One line for people: `Add "block_add": inputs "a" [8,16] and "b" [1,32] ...`.
    pub fn describe(&self) -> String {
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|input| format!("\"{}\" {}", input.name, shape_text(input.shape.as_deref())))
            .collect();
        format!("{} \"{}\" (inputs {}): {}", self.op_type, self.node, inputs.join(", "), self.message)
    }
}

/// The result of shape inference at one batch size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchShapeCheck {
    /// The batch size the graph inputs were given.
    pub batch_size: u64,
    /// True when no node had a definite shape mismatch.
    pub passed: bool,
    /// Nodes whose inputs do not fit.
    pub findings: Vec<ShapeFinding>,
    /// The graph outputs' shapes as inferred at this batch size (`None` where inference could not tell).
    pub outputs: Vec<NamedShape>,
    /// Things worth knowing that are not failures, e.g. an input whose batch dimension is fixed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// How much of the graph the check could follow.
    #[serde(default)]
    pub coverage: Coverage,
}

/// How much of the graph shape inference could follow at one batch size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Elementwise nodes that combine two or more tensors (`Add`, `Mul`, `Where`, ...), subgraphs included.
    pub elementwise_nodes: usize,
    /// Of those, the ones whose input shapes were known well enough to check every axis.
    pub elementwise_checked: usize,
    /// Some of the elementwise nodes that were not checked, with the reason (at most 12 are named).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<String>,
    /// Nodes where inference stopped: their inputs were known but some outputs became unknown (at most 12).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_from: Vec<String>,
    /// How many nodes in all made outputs unknown from known inputs.
    #[serde(default)]
    pub unknown_from_count: usize,
}

impl Coverage {
    /// `412 of 420 elementwise nodes checked`.
    pub fn summary(&self) -> String {
        format!("{} of {} elementwise nodes checked", self.elementwise_checked, self.elementwise_nodes)
    }

    /// True when every elementwise node was checked.
    pub fn complete(&self) -> bool {
        self.elementwise_checked == self.elementwise_nodes
    }
}

/// Runs shape inference with the batch axis of each input set to `batch_size` and reports every mismatch.
pub fn check_shapes_at_batch(graph: &GraphProto, batch_size: u64) -> BatchShapeCheck {
    let batch = i64::try_from(batch_size).unwrap_or(i64::MAX);
    let batch_axes = batch::batch_axes(graph);
    let mut walker = Walker { scopes: vec![HashMap::new()], findings: Vec::new(), coverage: Coverage::default() };
    let mut notes = Vec::new();
    for tensor in &graph.initializer {
        walker.define(tensor.name.as_str(), constant_value(tensor));
    }
    for input in &graph.input {
        if walker.lookup(&input.name).is_some() {
            continue;
        }
        let axis = batch_axes.get(input.name.as_str()).copied().flatten();
        if let Some(message) = fixed_batch_message(input, axis, batch) {
            notes.push(format!("input \"{}\": {message}; it was checked with its declared shape", input.name));
        }
        walker.define(input.name.as_str(), input_value(input, axis, batch));
    }
    walker.walk(graph, "");
    let mut findings = std::mem::take(&mut walker.findings);
    let outputs = graph
        .output
        .iter()
        .map(|output| {
            let inferred = walker.lookup(&output.name).and_then(|v| v.shape.clone());
            if let Some(message) = inferred.as_deref().and_then(|dims| declared_output_mismatch(output, dims)) {
                notes.push(format!(
                    "output \"{}\": {message} (runtimes do not enforce declared output shapes, but callers that \
                     trust the declaration will be surprised)",
                    output.name
                ));
            }
            NamedShape { name: output.name.clone(), shape: inferred.map(|dims| dims.iter().map(D::to_dim).collect()) }
        })
        .collect();
    findings.truncate(1000);
    BatchShapeCheck { batch_size, passed: findings.is_empty(), findings, outputs, notes, coverage: walker.coverage }
}

/// Walks graphs node by node with a stack of scopes (a subgraph sees the values of the graphs around it).
struct Walker<'g> {
    scopes: Vec<HashMap<&'g str, Value>>,
    findings: Vec<ShapeFinding>,
    coverage: Coverage,
}

impl<'g> Walker<'g> {
    fn lookup(&self, name: &str) -> Option<&Value> {
        self.scopes.iter().rev().find_map(|scope| scope.get(name))
    }

    fn define(&mut self, name: &'g str, value: Value) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name, value);
        }
    }

    /// Infers every node of `graph`; `path` prefixes node names in findings (`If "x" then_branch > `).
    fn walk(&mut self, graph: &'g GraphProto, path: &str) {
        for (index, in_cycle) in node_order(graph) {
            let node = &graph.node[index];
            let label = if node.name.is_empty() { format!("{} #{index}", node.op_type) } else { node.name.clone() };
            let label = format!("{path}{label}");
            let inputs: Vec<Option<Value>> = node
                .input
                .iter()
                .map(|name| if name.is_empty() { None } else { Some(self.lookup(name).cloned().unwrap_or_default()) })
                .collect();
            if is_elementwise(node) {
                self.count_elementwise(node, &inputs, &label);
            }
            let result = if in_cycle {
                Err("the node is part of a cycle in the graph".to_string())
            } else {
                self.infer(node, &inputs, &label)
            };
            let outputs = match result {
                Ok(outputs) => outputs,
                Err(message) => {
                    self.findings.push(ShapeFinding {
                        node: label.clone(),
                        op_type: node.op_type.clone(),
                        inputs: node
                            .input
                            .iter()
                            .zip(&inputs)
                            .filter_map(|(name, value)| {
                                value.as_ref().map(|value| NamedShape {
                                    name: name.clone(),
                                    shape: value.shape.as_ref().map(|dims| dims.iter().map(D::to_dim).collect()),
                                })
                            })
                            .collect(),
                        message,
                    });
                    // Downstream of a definite mismatch nothing is known; do not count it as a second cause.
                    for name in node.output.iter().filter(|n| !n.is_empty()) {
                        self.define(name.as_str(), Value::default());
                    }
                    continue;
                }
            };
            let inputs_known = inputs.iter().flatten().all(|v| v.shape.is_some());
            let mut lost = Vec::new();
            let mut outputs = outputs.into_iter();
            for name in &node.output {
                let mut value = outputs.next().unwrap_or_default();
                if !name.is_empty() {
                    name_unknown_sizes(&mut value, name);
                    if value.shape.is_none() {
                        lost.push(format!("\"{name}\""));
                    }
                    self.define(name.as_str(), value);
                }
            }
            if inputs_known && !lost.is_empty() {
                self.coverage.unknown_from_count += 1;
                if self.coverage.unknown_from.len() < MAX_LISTED {
                    let domain = if node.domain.is_empty() { String::new() } else { format!("{}:", node.domain) };
                    self.coverage.unknown_from.push(format!(
                        "{domain}{} \"{label}\": output {} unknown",
                        node.op_type,
                        lost.join(", ")
                    ));
                }
            }
        }
    }

    fn count_elementwise(&mut self, node: &NodeProto, inputs: &[Option<Value>], label: &str) {
        let present: Vec<(&String, &Value)> =
            node.input.iter().zip(inputs).filter_map(|(name, value)| value.as_ref().map(|v| (name, v))).collect();
        if present.len() < 2 {
            return;
        }
        self.coverage.elementwise_nodes += 1;
        let unknown: Vec<String> = present
            .iter()
            .filter(|(_, value)| value.shape.as_ref().is_none_or(|dims| dims.contains(&D::Unknown)))
            .map(|(name, _)| format!("\"{name}\""))
            .collect();
        let shapes: Vec<&[D]> = present.iter().filter_map(|(_, v)| v.shape.as_deref()).collect();
        let reason = if !unknown.is_empty() {
            Some(format!("input {} unknown", unknown.join(", ")))
        } else if !decidable(&shapes) {
            Some("inputs have different symbolic sizes".to_string())
        } else {
            None
        };
        match reason {
            None => self.coverage.elementwise_checked += 1,
            Some(reason) if self.coverage.not_checked.len() < MAX_LISTED => {
                self.coverage.not_checked.push(format!("{} \"{label}\" ({reason})", node.op_type));
            }
            Some(_) => {}
        }
    }

    fn infer(&mut self, node: &'g NodeProto, inputs: &[Option<Value>], label: &str) -> Result<Vec<Value>, String> {
        let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
        match node.op_type.as_str() {
            "If" if default_domain => Ok(self.infer_if(node, inputs, label)),
            "Loop" if default_domain => Ok(self.infer_loop(node, inputs, label)),
            "Scan" if default_domain => self.infer_scan(node, inputs, label),
            _ => infer_node(node, inputs),
        }
    }

    /// Walks `graph` in a new scope with its inputs bound, and returns its outputs' values.
    fn run_subgraph(&mut self, graph: &'g GraphProto, inputs: Vec<Value>, path: &str) -> Vec<Value> {
        let mut scope = HashMap::new();
        for tensor in &graph.initializer {
            scope.insert(tensor.name.as_str(), constant_value(tensor));
        }
        let mut inputs = inputs.into_iter();
        for input in &graph.input {
            let bound = inputs.next().unwrap_or_default();
            // A body input's declared shape is used where the enclosing node gave nothing.
            let value = if bound.shape.is_none() { input_value(input, None, 1) } else { bound };
            scope.insert(input.name.as_str(), value);
        }
        self.scopes.push(scope);
        self.walk(graph, path);
        let outputs = graph.output.iter().map(|o| self.lookup(&o.name).cloned().unwrap_or_default()).collect();
        self.scopes.pop();
        outputs
    }
}

/// Gives each unknown size of a value of known rank its own symbol (`<value>?<axis>`): one definite but
/// unknown size. Reshapes that copy it (`0`) can then cancel it, while it still never equals any other size,
/// so it can reveal a mismatch elsewhere but never cause a false one.
fn name_unknown_sizes(value: &mut Value, name: &str) {
    if let Some(shape) = value.shape.as_mut() {
        for (axis, dim) in shape.iter_mut().enumerate() {
            if *dim == D::Unknown {
                *dim = D::Sym(format!("{name}?{axis}"));
            }
        }
    }
}

/// True when broadcasting these shapes can be decided at every axis: the sizes other than 1 at an axis are
/// all known numbers, or all the same symbol.
fn decidable(shapes: &[&[D]]) -> bool {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..rank).all(|position| {
        let mut known = false;
        let mut symbol: Option<&str> = None;
        for shape in shapes {
            let Some(offset) = (position + shape.len()).checked_sub(rank) else { continue };
            match &shape[offset] {
                D::Known(1) => {}
                D::Known(_) => known = true,
                D::Sym(name) => match symbol {
                    Some(previous) if previous != name => return false,
                    _ => symbol = Some(name),
                },
                D::Unknown => return false,
            }
        }
        !(known && symbol.is_some())
    })
}

/// Says how a computed output shape contradicts a fixed size the graph declares for it.
fn declared_output_mismatch(output: &ValueInfoProto, inferred: &[D]) -> Option<String> {
    let declared = &output.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref()?.dim;
    if declared.len() != inferred.len() {
        return Some(format!(
            "the graph computes rank {} ({}) but declares rank {}",
            inferred.len(),
            dims_text(inferred),
            declared.len()
        ));
    }
    declared.iter().zip(inferred).enumerate().find_map(|(axis, (dim, computed))| match (dim.dim_value, computed) {
        (Some(size), D::Known(value)) if size >= 0 && size != *value => {
            Some(format!("the graph computes {} but declares size {size} at axis {axis}", dims_text(inferred)))
        }
        _ => None,
    })
}

/// Node indices in a topological order (ties broken by file order). Nodes on a cycle come last, flagged.
fn node_order(graph: &GraphProto) -> Vec<(usize, bool)> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (index, node) in graph.node.iter().enumerate() {
        for output in &node.output {
            if !output.is_empty() {
                producer.entry(output.as_str()).or_insert(index);
            }
        }
    }
    let mut waiting_on = vec![0usize; graph.node.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (index, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            if let Some(&from) = producer.get(input.as_str()) {
                waiting_on[index] += 1;
                consumers[from].push(index);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        waiting_on.iter().enumerate().filter(|(_, count)| **count == 0).map(|(index, _)| Reverse(index)).collect();
    let mut order = Vec::with_capacity(graph.node.len());
    let mut done = vec![false; graph.node.len()];
    while let Some(Reverse(index)) = ready.pop() {
        done[index] = true;
        order.push((index, false));
        for &next in &consumers[index] {
            waiting_on[next] -= 1;
            if waiting_on[next] == 0 {
                ready.push(Reverse(next));
            }
        }
    }
    order.extend(done.iter().enumerate().filter(|(_, done)| !**done).map(|(index, _)| (index, true)));
    order
}

/// The value of a graph input: its batch axis set to `batch` when dynamic, other dynamic sizes symbols
/// (the declared name, or `<input>:<axis>` when the model leaves the size unnamed).
fn input_value(input: &ValueInfoProto, batch_axis: Option<usize>, batch: i64) -> Value {
    let Some(tensor_type) = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
        return Value::default();
    };
    let shape = tensor_type.shape.as_ref().map(|shape| {
        shape
            .dim
            .iter()
            .enumerate()
            .map(|(axis, dim)| match (&dim.dim_value, &dim.dim_param) {
                (Some(size), _) if *size >= 0 => D::Known(*size),
                _ if Some(axis) == batch_axis => D::Known(batch),
                (_, Some(name)) if !name.is_empty() => D::Sym(name.clone()),
                _ => D::Sym(format!("{}:{axis}", input.name)),
            })
            .collect()
    });
    Value { dtype: Some(tensor_type.elem_type), shape, ints: None, floats: None }
}

/// A graph input whose batch axis is fixed to another size cannot take this batch.
/// That is a note, not a finding: a fixed batch is part of the declared contract, and a change from a
/// dynamic batch to a fixed one is caught by the comparison with the baseline.
fn fixed_batch_message(input: &ValueInfoProto, batch_axis: Option<usize>, batch: i64) -> Option<String> {
    let axis = batch_axis?;
    let dims = &input.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref()?.dim;
    let fixed = dims.get(axis)?.dim_value?;
    (dims.len() >= 2 && fixed >= 0 && fixed != batch).then(|| {
        format!("its batch axis (axis {axis}) is fixed to {fixed}, so the model cannot take batch size {batch}")
    })
}
