//! The per-operator shape rules and the dispatch from an operator name to its rule.
//!
//! Each rule takes the node and its inputs' [`Value`]s and returns the outputs' values, or the reason
//! the inputs cannot fit. A rule that cannot tell returns unknown shapes; it never guesses a mismatch.

mod constant;
mod conv;
mod elementwise;
mod layout;
mod linalg;
mod reduce;

use super::super::onnx_proto::{DTYPE_BOOL, DTYPE_FLOAT, DTYPE_INT64, NodeProto};
use super::attrs::{attribute, int_attr};
use super::value::{D, Value, input_at};
use constant::infer_constant;
use conv::{infer_conv, infer_pool};
use layout::{
    infer_concat, infer_flatten, infer_gather, infer_reshape, infer_shape_op, infer_slice, infer_split, infer_squeeze,
    infer_transpose, infer_unsqueeze,
};
use linalg::{infer_gemm, infer_matmul};
use reduce::infer_reduce;

pub(crate) use elementwise::broadcast;
use elementwise::{broadcast_values, check_same_dtype, elementwise_ints};

pub(crate) const UNARY_SAME_SHAPE: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Erf",
    "Sin",
    "Cos",
    "Tan",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Mish",
    "Softplus",
    "Softsign",
    "Not",
    "Sign",
    "Softmax",
    "LogSoftmax",
    "Hardmax",
    "Clip",
    "Dropout",
    "CastLike",
    "IsNaN",
    "IsInf",
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "LpNormalization",
    "MeanVarianceNormalization",
    "Shrink",
    "ThresholdedRelu",
    "QuantizeLinear",
    "DequantizeLinear",
    "Trilu",
    "CumSum",
];
pub(crate) const BROADCAST_SAME_DTYPE: &[&str] =
    &["Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean", "Mod", "And", "Or", "Xor"];
pub(crate) const BROADCAST_COMPARE: &[&str] = &["Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"];

/// Infers the outputs of one node, or says why its inputs cannot fit.
pub(crate) fn infer_node(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Ok(Vec::new());
    }
    let op = node.op_type.as_str();
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    if UNARY_SAME_SHAPE.contains(&op) {
        return Ok(vec![Value { ints: None, ..x }]);
    }
    if BROADCAST_SAME_DTYPE.contains(&op) || BROADCAST_COMPARE.contains(&op) || op == "Pow" || op == "PRelu" {
        let present: Vec<&Value> = inputs.iter().flatten().collect();
        if BROADCAST_SAME_DTYPE.contains(&op) {
            check_same_dtype(&present)?;
        }
        let shape = broadcast_values(&present)?;
        let dtype = if BROADCAST_COMPARE.contains(&op) { Some(DTYPE_BOOL) } else { x.dtype };
        let ints = elementwise_ints(op, &present);
        return Ok(vec![Value { dtype, shape, ints }]);
    }
    match op {
        "Identity" => Ok(vec![x]),
        "Cast" => Ok(vec![Value { dtype: i32::try_from(int_attr(node, "to", 0)).ok(), ..x }]),
        "Where" => {
            let present: Vec<&Value> = inputs.iter().flatten().collect();
            if let (Some(a), Some(b)) = (input_at(inputs, 1), input_at(inputs, 2)) {
                check_same_dtype(&[a, b])?;
            }
            let shape = broadcast_values(&present)?;
            Ok(vec![Value { dtype: input_at(inputs, 1).and_then(|v| v.dtype), shape, ints: None }])
        }
        "Concat" => infer_concat(node, inputs),
        "Reshape" => infer_reshape(node, inputs),
        "MatMul" => infer_matmul(inputs),
        "Gemm" => infer_gemm(node, inputs),
        "Conv" => infer_conv(node, inputs),
        "MaxPool" | "AveragePool" | "LpPool" => infer_pool(node, inputs),
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => Ok(vec![Value {
            dtype: x.dtype,
            shape: x
                .shape
                .map(|s| s.iter().enumerate().map(|(i, d)| if i < 2 { d.clone() } else { D::Known(1) }).collect()),
            ints: None,
        }]),
        "Flatten" => infer_flatten(node, &x),
        "Transpose" => infer_transpose(node, &x),
        "Shape" => infer_shape_op(node, &x),
        "Size" => Ok(vec![Value::with_shape(Some(DTYPE_INT64), Vec::new())]),
        "Gather" => infer_gather(node, inputs),
        "Unsqueeze" => infer_unsqueeze(node, inputs),
        "Squeeze" => infer_squeeze(node, inputs),
        "Constant" => Ok(vec![infer_constant(node)]),
        "ConstantOfShape" => {
            let shape = input_at(inputs, 0).and_then(|v| v.ints.clone());
            let dtype = attribute(node, "value").and_then(|a| a.t.as_ref()).map_or(DTYPE_FLOAT, |t| t.data_type);
            Ok(vec![Value { dtype: Some(dtype), shape, ints: None }])
        }
        "Expand" => {
            let target = input_at(inputs, 1).and_then(|v| v.ints.clone());
            let shape = match (&x.shape, target) {
                (Some(shape), Some(target)) => Some(broadcast(&[shape.as_slice(), target.as_slice()])?),
                _ => None,
            };
            Ok(vec![Value { dtype: x.dtype, shape, ints: None }])
        }
        "Slice" => infer_slice(inputs),
        "Split" => infer_split(node, inputs),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2"
        | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" | "ArgMax" | "ArgMin" => infer_reduce(node, inputs),
        _ => Ok(Vec::new()),
    }
}

/// Small builders for the rules' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::super::super::onnx_proto::{AttributeProto, DTYPE_FLOAT, DTYPE_INT64, NodeProto};
    use super::super::value::{D, Value};

    pub(crate) fn known(dims: &[i64]) -> Vec<D> {
        dims.iter().map(|&d| D::Known(d)).collect()
    }

    /// A float tensor of this shape.
    pub(crate) fn tensor(dims: &[i64]) -> Option<Value> {
        Some(Value::with_shape(Some(DTYPE_FLOAT), known(dims)))
    }

    /// A tracked 1-D int64 tensor with these contents.
    pub(crate) fn ints(values: &[i64]) -> Option<Value> {
        let len = i64::try_from(values.len()).unwrap_or(i64::MAX);
        Some(Value { dtype: Some(DTYPE_INT64), shape: Some(vec![D::Known(len)]), ints: Some(known(values)) })
    }

    pub(crate) fn int(name: &str, value: i64) -> AttributeProto {
        AttributeProto { name: name.into(), i: value, r#type: 2, ..AttributeProto::default() }
    }

    pub(crate) fn int_list(name: &str, values: &[i64]) -> AttributeProto {
        AttributeProto { name: name.into(), ints: values.to_vec(), r#type: 7, ..AttributeProto::default() }
    }

    pub(crate) fn text(name: &str, value: &str) -> AttributeProto {
        AttributeProto { name: name.into(), s: value.as_bytes().to_vec(), r#type: 3, ..AttributeProto::default() }
    }

    pub(crate) fn node(op: &str, attribute: Vec<AttributeProto>) -> NodeProto {
        NodeProto { op_type: op.into(), output: vec!["y".into()], attribute, ..NodeProto::default() }
    }

    /// The shape of the first output.
    pub(crate) fn shape_of(outputs: &[Value]) -> Option<Vec<D>> {
        outputs.first().and_then(|v| v.shape.clone())
    }
}
