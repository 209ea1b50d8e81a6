//! Reductions (`ReduceMean`, `ReduceSum`, ..., `ArgMax`/`ArgMin`): axes from attribute or input, `keepdims`.

use super::super::super::onnx_proto::{DTYPE_INT64, NodeProto};
use super::super::attrs::{axis_index, int_attr};
use super::super::value::{D, Value, input_at};
use super::layout::axes_of;

pub(crate) fn infer_reduce(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let is_arg = node.op_type.starts_with("Arg");
    let dtype = if is_arg { Some(DTYPE_INT64) } else { x.dtype };
    let Some(shape) = &x.shape else { return Ok(vec![Value { dtype, shape: None, ints: None, floats: None }]) };
    let keep = int_attr(node, "keepdims", 1) != 0;
    let axes: Vec<i64> = if is_arg {
        vec![int_attr(node, "axis", 0)]
    } else {
        match axes_of(node, inputs) {
            Some(Some(axes)) if !axes.is_empty() => axes,
            Some(_) if int_attr(node, "noop_with_empty_axes", 0) != 0 => return Ok(vec![Value { dtype, ..x }]),
            Some(_) => (0..i64::try_from(shape.len()).unwrap_or(0)).collect(),
            None => return Ok(vec![Value { dtype, shape: None, ints: None, floats: None }]),
        }
    };
    let mut reduced = vec![false; shape.len()];
    for axis in axes {
        reduced[axis_index(axis, shape.len())?] = true;
    }
    let out = shape
        .iter()
        .zip(&reduced)
        .filter_map(|(d, r)| match (r, keep) {
            (true, true) => Some(D::Known(1)),
            (true, false) => None,
            (false, _) => Some(d.clone()),
        })
        .collect();
    Ok(vec![Value::with_shape(dtype, out)])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::{int, int_list, ints, known, node, shape_of, tensor};
    use super::*;

    #[test]
    fn reductions_drop_or_keep_the_reduced_axes() {
        let keep = node("ReduceMean", vec![int_list("axes", &[-1])]);
        assert_eq!(shape_of(&infer_reduce(&keep, &[tensor(&[8, 16, 4])]).unwrap()), Some(known(&[8, 16, 1])));
        let drop = node("ReduceSum", vec![int("keepdims", 0)]);
        let out = infer_reduce(&drop, &[tensor(&[8, 16, 4]), ints(&[1, 2])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8])));
        let argmax = node("ArgMax", vec![int("axis", 1), int("keepdims", 0)]);
        assert_eq!(shape_of(&infer_reduce(&argmax, &[tensor(&[8, 10])]).unwrap()), Some(known(&[8])));
        assert!(infer_reduce(&keep, &[tensor(&[])]).is_err());
    }
}
