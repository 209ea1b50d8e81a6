//! `Constant`: the value (and for small integer tensors the contents) from its attribute.

use super::super::super::onnx_proto::{DTYPE_FLOAT, DTYPE_INT64, NodeProto};
use super::super::attrs::attribute;
use super::super::value::{D, MAX_TRACKED_INTS, Value, constant_value};

pub(crate) fn infer_constant(node: &NodeProto) -> Value {
    if let Some(tensor) = attribute(node, "value").and_then(|a| a.t.as_ref()) {
        return constant_value(tensor);
    }
    if let Some(attr) = attribute(node, "value_int") {
        return Value {
            dtype: Some(DTYPE_INT64),
            shape: Some(Vec::new()),
            ints: Some(vec![D::Known(attr.i)]),
            floats: None,
        };
    }
    if let Some(attr) = attribute(node, "value_ints") {
        let len = i64::try_from(attr.ints.len()).unwrap_or(i64::MAX);
        let ints = (attr.ints.len() <= MAX_TRACKED_INTS).then(|| attr.ints.iter().map(|&v| D::Known(v)).collect());
        return Value { dtype: Some(DTYPE_INT64), shape: Some(vec![D::Known(len)]), ints, floats: None };
    }
    if attribute(node, "value_float").is_some() {
        return Value::with_shape(Some(DTYPE_FLOAT), Vec::new());
    }
    if let Some(attr) = attribute(node, "value_floats") {
        let len = i64::try_from(attr.floats.len()).unwrap_or(i64::MAX);
        let floats =
            (attr.floats.len() <= MAX_TRACKED_INTS).then(|| attr.floats.iter().map(|&v| f64::from(v)).collect());
        return Value { dtype: Some(DTYPE_FLOAT), shape: Some(vec![D::Known(len)]), ints: None, floats };
    }
    Value::default()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{known, node};
    use super::*;
    use crate::contract::onnx_proto::AttributeProto;

    #[test]
    fn integer_constants_are_tracked_by_value() {
        let attr = AttributeProto { name: "value_ints".into(), ints: vec![1, -1, 8], ..AttributeProto::default() };
        let value = infer_constant(&node("Constant", vec![attr]));
        assert_eq!(value.shape, Some(known(&[3])));
        assert_eq!(value.ints, Some(known(&[1, -1, 8])));
        let float = AttributeProto { name: "value_float".into(), f: 0.5, ..AttributeProto::default() };
        assert_eq!(infer_constant(&node("Constant", vec![float])).shape, Some(Vec::new()));
    }
}
