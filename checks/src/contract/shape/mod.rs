//! Shape inference over an ONNX graph at a concrete batch size, reporting nodes whose inputs cannot fit.
//!
//! The graph inputs' symbolic (or unknown) leading dimension is set to the batch size and shapes are
//! propagated node by node. Operators that combine tensors (`Add`, `Mul`, `Sub`, `Concat`, `MatMul`,
//! `Conv`, `Reshape`, ...) are checked where the sizes are known; a definite mismatch becomes a
//! [`ShapeFinding`]. Operators this module does not know produce unknown shapes, which are never
//! reported: the check only speaks when it is sure. Small integer tensors (shape computations such as
//! `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`) are tracked by value so dynamic reshapes resolve.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

mod attrs;
mod rules;
mod value;

use super::onnx_proto::{GraphProto, ValueInfoProto};
use super::types::{Dim, shape_text};
use rules::infer_node;
use value::{D, Value, constant_value, dims_text};

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
}

pub fn check_shapes_at_batch(graph: &GraphProto, batch_size: u64) -> BatchShapeCheck {
    let batch = i64::try_from(batch_size).unwrap_or(i64::MAX);
    let mut env: HashMap<&str, Value> = HashMap::new();
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    for tensor in &graph.initializer {
        env.insert(tensor.name.as_str(), constant_value(tensor));
    }
    for input in &graph.input {
        if env.contains_key(input.name.as_str()) {
            continue;
        }
        let value = input_value(input, batch);
        if let Some(message) = fixed_batch_message(input, batch) {
            notes.push(format!("input \"{}\": {message}; it was checked with its declared shape", input.name));
        }
        env.insert(input.name.as_str(), value);
    }

    for (index, in_cycle) in node_order(graph) {
        let node = &graph.node[index];
        let node_name = if node.name.is_empty() { format!("{} #{index}", node.op_type) } else { node.name.clone() };
        let inputs: Vec<Option<Value>> = node
            .input
            .iter()
            .map(|name| if name.is_empty() { None } else { Some(env.get(name.as_str()).cloned().unwrap_or_default()) })
            .collect();
        let result = if in_cycle {
            Err("the node is part of a cycle in the graph".to_string())
        } else {
            infer_node(node, &inputs)
        };
        let outputs = match result {
            Ok(outputs) => outputs,
            Err(message) => {
                findings.push(ShapeFinding {
                    node: node_name,
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
                Vec::new()
            }
        };
        let mut outputs = outputs.into_iter();
        for name in &node.output {
            let value = outputs.next().unwrap_or_default();
            if !name.is_empty() {
                env.insert(name.as_str(), value);
            }
        }
    }
    let outputs = graph
        .output
        .iter()
        .map(|output| {
            let inferred = env.get(output.name.as_str()).and_then(|v| v.shape.clone());
            if let Some(message) = inferred.as_deref().and_then(|dims| declared_output_mismatch(output, dims)) {
                findings.push(ShapeFinding {
                    node: output.name.clone(),
                    op_type: "graph output".to_string(),
                    inputs: vec![NamedShape {
                        name: output.name.clone(),
                        shape: inferred.as_ref().map(|dims| dims.iter().map(D::to_dim).collect()),
                    }],
                    message,
                });
            }
            NamedShape { name: output.name.clone(), shape: inferred.map(|dims| dims.iter().map(D::to_dim).collect()) }
        })
        .collect();
    BatchShapeCheck { batch_size, passed: findings.is_empty(), findings, outputs, notes }
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

fn input_value(input: &ValueInfoProto, batch: i64) -> Value {
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
                _ if axis == 0 => D::Known(batch),
                (_, Some(name)) if !name.is_empty() => D::Sym(name.clone()),
                _ => D::Unknown,
            })
            .collect()
    });
    Value { dtype: Some(tensor_type.elem_type), shape, ints: None }
}

/// A graph input of rank >= 2 whose leading dimension is fixed to another size cannot take this batch.
/// That is a note, not a finding: a fixed batch is part of the declared contract, and a change from
/// symbolic to fixed is caught by the contract comparison.
fn fixed_batch_message(input: &ValueInfoProto, batch: i64) -> Option<String> {
    let dims = &input.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref()?.dim;
    let first = dims.first()?.dim_value?;
    (dims.len() >= 2 && first >= 0 && first != batch)
        .then(|| format!("its batch dimension is fixed to {first}, so the model cannot take batch size {batch}"))
}
