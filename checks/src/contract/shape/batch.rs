//! Which axis of each graph input is the batch, found from how the input is used rather than from its
//! position alone.
//!
//! The batch is axis 0 of an ordinary input. A recurrent net's state input, however, is laid out
//! `[layers x directions, batch, hidden]`: if an input reaches the `initial_h`/`initial_c` input of an
//! `LSTM`, `GRU` or `RNN` (directly, or through the indexing and reshaping nodes exporters put in between,
//! in subgraphs too), its batch is axis 1 (axis 0 with `layout = 1`). Inputs of rank 0 have no batch.

use std::collections::HashMap;

use super::super::onnx_proto::{DimensionProto, GraphProto, NodeProto, ValueInfoProto};
use super::attrs::int_attr;

/// Nodes a state input passes through on its way to the recurrent node, keeping its batch where it was.
const PASS_THROUGH: &[&str] = &["Identity", "Cast", "Gather", "Slice", "Split", "Squeeze", "Unsqueeze", "Reshape"];
/// How many pass-through nodes are followed.
const MAX_HOPS: usize = 10;

/// The batch axis of each graph input (by name); `None` for inputs without one (scalars).
pub(crate) fn batch_axes(graph: &GraphProto) -> HashMap<&str, Option<usize>> {
    let mut uses = Uses::default();
    collect_uses(graph, &mut uses, 0);
    let dims = |input: &ValueInfoProto| -> Option<Vec<DimensionProto>> {
        input.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref().map(|s| s.dim.clone())
    };
    // The names other inputs give their batch (axis 0), e.g. `batch` in `input [batch, sequence]`.
    let batch_names: Vec<String> = graph
        .input
        .iter()
        .filter_map(|input| dims(input)?.first()?.dim_param.clone())
        .filter(|name| !name.is_empty())
        .collect();
    let mut axes = HashMap::new();
    for input in &graph.input {
        let shape = dims(input);
        let axis = match shape.as_deref() {
            Some([]) => None,
            Some(shape) if shape.len() == 3 => match recurrent_state_layout(input.name.as_str(), &uses) {
                Some(0) => Some(1),
                Some(_) => Some(0),
                None => shape
                    .iter()
                    .position(|d| d.dim_param.as_ref().is_some_and(|name| batch_names.contains(name)))
                    .or(Some(0)),
            },
            _ => Some(0),
        };
        axes.insert(input.name.as_str(), axis);
    }
    axes
}

/// Who reads each value, and which node output a subgraph output becomes (an `If` branch's outputs are
/// the `If` node's outputs).
#[derive(Default)]
struct Uses<'g> {
    consumers: HashMap<&'g str, Vec<(&'g NodeProto, usize)>>,
    aliases: HashMap<&'g str, Vec<&'g str>>,
}

/// Value name -> the nodes (in any graph, subgraphs included) that read it and at which input position.
fn collect_uses<'g>(graph: &'g GraphProto, uses: &mut Uses<'g>, depth: usize) {
    if depth > 32 {
        return;
    }
    for node in &graph.node {
        for (position, name) in node.input.iter().enumerate() {
            if !name.is_empty() {
                uses.consumers.entry(name.as_str()).or_default().push((node, position));
            }
        }
        // Loop bodies output the condition first; If branches and Scan bodies map one to one.
        let skip = usize::from(node.op_type == "Loop");
        for attribute in &node.attribute {
            for subgraph in attribute.g.iter().map(|g| g.as_ref()).chain(attribute.graphs.iter()) {
                for (inner, outer) in subgraph.output.iter().skip(skip).zip(&node.output) {
                    uses.aliases.entry(inner.name.as_str()).or_default().push(outer.as_str());
                }
                collect_uses(subgraph, uses, depth + 1);
            }
        }
    }
}

/// The `layout` of the recurrent node whose initial state `name` feeds, if it feeds one.
fn recurrent_state_layout(name: &str, uses: &Uses<'_>) -> Option<i64> {
    let mut frontier = vec![name];
    for _ in 0..=MAX_HOPS {
        let mut next = Vec::new();
        for value in frontier {
            next.extend(uses.aliases.get(value).map(Vec::as_slice).unwrap_or(&[]).iter().copied());
            for (node, position) in uses.consumers.get(value).map(Vec::as_slice).unwrap_or(&[]) {
                let op = node.op_type.as_str();
                let is_state = match op {
                    "LSTM" => *position == 5 || *position == 6,
                    "GRU" | "RNN" => *position == 5,
                    "DynamicQuantizeLSTM" => *position == 5 || *position == 6,
                    _ => false,
                };
                if is_state {
                    return Some(int_attr(node, "layout", 0));
                }
                if PASS_THROUGH.contains(&op) && *position == 0 {
                    next.extend(node.output.iter().map(String::as_str));
                }
            }
        }
        if next.is_empty() {
            return None;
        }
        next.truncate(64);
        frontier = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::super::onnx_proto::{TensorShapeProto, TensorTypeProto, TypeProto};
    use super::*;

    fn input(name: &str, rank: usize) -> ValueInfoProto {
        let dim = vec![DimensionProto { dim_value: Some(2), dim_param: None }; rank];
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto { elem_type: 1, shape: Some(TensorShapeProto { dim }) }),
            }),
        }
    }

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..NodeProto::default()
        }
    }

    #[test]
    fn a_state_input_that_reaches_an_lstm_has_its_batch_on_axis_one() {
        let graph = GraphProto {
            node: vec![
                node("Gather", &["state", "zero"], &["h"]),
                node("Unsqueeze", &["h", "zero"], &["h0"]),
                node("LSTM", &["x", "w", "r", "", "", "h0"], &["y"]),
            ],
            input: vec![input("x", 3), input("state", 3), input("sr", 0)],
            ..GraphProto::default()
        };
        let axes = batch_axes(&graph);
        assert_eq!(axes["x"], Some(0));
        assert_eq!(axes["state"], Some(1));
        assert_eq!(axes["sr"], None);
    }
}
