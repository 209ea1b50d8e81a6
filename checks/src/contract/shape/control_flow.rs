//! Control flow for the shape-check driver: `If` branches, `Loop` and `Scan` bodies are walked as
//! subgraphs, with the enclosing graph's values in scope, and their outputs become the node's outputs.

use super::super::onnx_proto::NodeProto;
use super::Walker;
use super::attrs::{self, attribute, int_attr, ints_attr};
use super::value::{D, Value};

impl<'g> Walker<'g> {
    /// `If`: when the condition is known (exporters branch on shapes, e.g. squeeze an axis only when it is 1),
    /// only the branch taken is walked; otherwise both are, and their outputs merged.
    pub(super) fn infer_if(&mut self, node: &'g NodeProto, inputs: &[Option<Value>], label: &str) -> Vec<Value> {
        let condition =
            inputs.first().and_then(|v| v.as_ref()).and_then(|v| v.ints.as_ref()).and_then(|i| match i.as_slice() {
                [D::Known(value)] => Some(*value != 0),
                _ => None,
            });
        let taken: &[&str] = match condition {
            Some(true) => &["then_branch"],
            Some(false) => &["else_branch"],
            None => &["then_branch", "else_branch"],
        };
        let mut branches = Vec::new();
        for &name in taken {
            if let Some(graph) = attribute(node, name).and_then(|a| a.g.as_deref()) {
                branches.push(self.run_subgraph(graph, Vec::new(), &format!("{label} {name} > ")));
            }
        }
        match branches.as_slice() {
            [then, otherwise] => then.iter().zip(otherwise).map(|(a, b)| merge(a, b)).collect(),
            [only] => only.clone(),
            _ => Vec::new(),
        }
    }

    /// `Loop`: the body gets the iteration number, the condition and the loop-carried values; the node's
    /// outputs are the carried values' final shapes, then each scan output with the iterations stacked first.
    pub(super) fn infer_loop(&mut self, node: &'g NodeProto, inputs: &[Option<Value>], label: &str) -> Vec<Value> {
        let Some(body) = attribute(node, "body").and_then(|a| a.g.as_deref()) else { return Vec::new() };
        let carried: Vec<Value> = inputs.iter().skip(2).map(|v| v.clone().unwrap_or_default()).collect();
        let mut bound = vec![Value::with_shape(Some(7), Vec::new()), Value::with_shape(Some(9), Vec::new())];
        bound.extend(carried.iter().cloned());
        let outputs = self.run_subgraph(body, bound, &format!("{label} body > "));
        let trips =
            inputs.first().and_then(|v| v.as_ref()).and_then(|v| v.ints.as_ref()).and_then(|i| i.first().cloned());
        let mut results: Vec<Value> =
            carried.iter().zip(outputs.iter().skip(1)).map(|(initial, last)| merge(initial, last)).collect();
        for scanned in outputs.iter().skip(1 + carried.len()) {
            let shape = scanned.shape.as_ref().map(|dims| {
                let mut stacked = vec![trips.clone().unwrap_or(D::Unknown)];
                stacked.extend(dims.iter().cloned());
                stacked
            });
            results.push(Value { dtype: scanned.dtype, shape, ints: None, floats: None });
        }
        results
    }

    /// `Scan` (opset 9+): states, then scan inputs sliced along their scan axis; outputs are the final
    /// states, then each scan output with the sequence axis put back.
    pub(super) fn infer_scan(
        &mut self,
        node: &'g NodeProto,
        inputs: &[Option<Value>],
        label: &str,
    ) -> Result<Vec<Value>, String> {
        let Some(body) = attribute(node, "body").and_then(|a| a.g.as_deref()) else { return Ok(Vec::new()) };
        let scan_count = usize::try_from(int_attr(node, "num_scan_inputs", 0)).unwrap_or(0).min(inputs.len());
        let state_count = inputs.len() - scan_count;
        let input_axes = ints_attr(node, "scan_input_axes").unwrap_or(&[]);
        let mut bound: Vec<Value> = inputs[..state_count].iter().map(|v| v.clone().unwrap_or_default()).collect();
        let mut sequence = None;
        for (position, scanned) in inputs[state_count..].iter().enumerate() {
            let value = scanned.clone().unwrap_or_default();
            let slice = match &value.shape {
                Some(dims) if !dims.is_empty() => {
                    let axis = attrs::axis_index(input_axes.get(position).copied().unwrap_or(0), dims.len())?;
                    sequence.get_or_insert_with(|| dims[axis].clone());
                    let mut rest = dims.clone();
                    rest.remove(axis);
                    Some(rest)
                }
                _ => None,
            };
            bound.push(Value { dtype: value.dtype, shape: slice, ints: None, floats: None });
        }
        let outputs = self.run_subgraph(body, bound, &format!("{label} body > "));
        let output_axes = ints_attr(node, "scan_output_axes").unwrap_or(&[]);
        let mut results: Vec<Value> = outputs.iter().take(state_count).cloned().collect();
        for (position, element) in outputs.iter().skip(state_count).enumerate() {
            let shape = match &element.shape {
                Some(dims) => {
                    let axis = attrs::axis_index(output_axes.get(position).copied().unwrap_or(0), dims.len() + 1)?;
                    let mut stacked = dims.clone();
                    stacked.insert(axis, sequence.clone().unwrap_or(D::Unknown));
                    Some(stacked)
                }
                None => None,
            };
            results.push(Value { dtype: element.dtype, shape, ints: None, floats: None });
        }
        Ok(results)
    }
}

/// What is known about a value that is one of two things (the branches of an `If`, a loop's first and
/// later iterations): sizes that agree are kept, others become unknown, and different ranks unknown shape.
pub(super) fn merge(a: &Value, b: &Value) -> Value {
    let shape = match (&a.shape, &b.shape) {
        (Some(x), Some(y)) if x.len() == y.len() => {
            Some(x.iter().zip(y).map(|(p, q)| if p == q { p.clone() } else { D::Unknown }).collect())
        }
        _ => None,
    };
    let dtype = if a.dtype == b.dtype { a.dtype } else { None };
    let ints = if a.ints == b.ints { a.ints.clone() } else { None };
    Value { dtype, shape, ints, floats: None }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::super::onnx_proto::{
        AttributeProto, DimensionProto, GraphProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
        ValueInfoProto,
    };
    use super::super::check_shapes_at_batch;
    use super::*;

    fn value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| DimensionProto { dim_value: *d, dim_param: d.is_none().then(|| "batch".to_string()) })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto { elem_type: 1, shape: Some(TensorShapeProto { dim }) }),
            }),
        }
    }

    fn node(op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: outputs[0].into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute,
            ..NodeProto::default()
        }
    }

    fn branch(name: &str, nodes: Vec<NodeProto>, output: &str) -> AttributeProto {
        let graph = GraphProto { node: nodes, output: vec![value(output, &[])], ..GraphProto::default() };
        AttributeProto { name: name.into(), g: Some(Box::new(graph)), r#type: 5, ..AttributeProto::default() }
    }

    fn ints(name: &str, values: &[i64]) -> TensorProto {
        TensorProto {
            dims: vec![values.len() as i64],
            data_type: 7,
            int64_data: values.to_vec(),
            name: name.into(),
            ..TensorProto::default()
        }
    }

    /// `if cond: x + reshape(x, [1, -1]) else: x`, on input `x [batch, 4]`.
    fn graph_with_if(condition: &str) -> GraphProto {
        let then_branch = branch(
            "then_branch",
            vec![node("Reshape", &["x", "fold"], &["folded"], vec![]), node("Add", &["x", "folded"], &["sum"], vec![])],
            "sum",
        );
        let else_branch = branch("else_branch", vec![node("Identity", &["x"], &["same"], vec![])], "same");
        GraphProto {
            node: vec![node("If", &[condition], &["y"], vec![then_branch, else_branch])],
            initializer: vec![ints("fold", &[1, -1]), ints("yes", &[1]), ints("no", &[0])],
            input: vec![value("x", &[None, Some(4)]), value("flag", &[])],
            output: vec![value("y", &[None, Some(4)])],
            ..GraphProto::default()
        }
    }

    #[test]
    fn a_mismatch_inside_a_branch_is_reported_with_its_path() {
        let check = check_shapes_at_batch(&graph_with_if("flag"), 8);
        assert_eq!(check.findings.len(), 1, "{:?}", check.findings);
        assert_eq!(check.findings[0].node, "y then_branch > sum");
        assert!(check_shapes_at_batch(&graph_with_if("flag"), 1).passed);
    }

    #[test]
    fn a_known_condition_walks_only_the_branch_taken() {
        assert!(!check_shapes_at_batch(&graph_with_if("yes"), 8).passed);
        let not_taken = check_shapes_at_batch(&graph_with_if("no"), 8);
        assert!(not_taken.passed, "{:?}", not_taken.findings);
        assert_eq!(not_taken.outputs[0].shape.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn branches_that_disagree_merge_to_unknown_sizes() {
        let a = Value::with_shape(Some(1), vec![D::Known(8), D::Known(4)]);
        let b = Value::with_shape(Some(1), vec![D::Known(8), D::Known(5)]);
        assert_eq!(merge(&a, &b).shape, Some(vec![D::Known(8), D::Unknown]));
        assert_eq!(merge(&a, &Value::with_shape(Some(1), vec![D::Known(8)])).shape, None);
    }

    #[test]
    fn loop_scan_outputs_stack_the_iterations_and_scan_slices_its_inputs() {
        let body = GraphProto {
            node: vec![node("Identity", &["cond_in"], &["cond_out"], vec![]), node("Relu", &["x"], &["step"], vec![])],
            input: vec![value("i", &[]), value("cond_in", &[])],
            output: vec![value("cond_out", &[]), value("step", &[])],
            ..GraphProto::default()
        };
        let looped = GraphProto {
            node: vec![node(
                "Loop",
                &["trips", ""],
                &["stacked"],
                vec![AttributeProto { name: "body".into(), g: Some(Box::new(body)), ..AttributeProto::default() }],
            )],
            initializer: vec![ints("trips", &[3])],
            input: vec![value("x", &[None, Some(4)])],
            output: vec![value("stacked", &[Some(3), None, Some(4)])],
            ..GraphProto::default()
        };
        let check = check_shapes_at_batch(&looped, 8);
        assert!(check.passed, "{:?}", check.findings);
        assert_eq!(
            check.outputs[0].shape,
            Some(vec![
                super::super::super::types::Dim::Fixed(3),
                super::super::super::types::Dim::Fixed(8),
                super::super::super::types::Dim::Fixed(4)
            ])
        );

        let scan_body = GraphProto {
            node: vec![node("Add", &["row", "bias"], &["out"], vec![])],
            initializer: vec![TensorProto {
                dims: vec![5],
                data_type: 1,
                name: "bias".into(),
                ..TensorProto::default()
            }],
            input: vec![value("row", &[])],
            output: vec![value("out", &[])],
            ..GraphProto::default()
        };
        let scan = GraphProto {
            node: vec![node(
                "Scan",
                &["x"],
                &["y"],
                vec![
                    AttributeProto { name: "body".into(), g: Some(Box::new(scan_body)), ..AttributeProto::default() },
                    AttributeProto { name: "num_scan_inputs".into(), i: 1, ..AttributeProto::default() },
                ],
            )],
            input: vec![value("x", &[None, Some(4)])],
            output: vec![value("y", &[None, Some(4)])],
            ..GraphProto::default()
        };
        let check = check_shapes_at_batch(&scan, 8);
        assert_eq!(check.findings.len(), 1, "the body adds [4] and [5]: {:?}", check.findings);
        assert!(check.findings[0].node.starts_with("y body > "), "{}", check.findings[0].node);
    }
}
