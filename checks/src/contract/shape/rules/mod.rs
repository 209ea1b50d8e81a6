//! The per-operator shape rules and the dispatch from an operator name to its rule.
//!
//! Each rule takes the node and its inputs' [`Value`]s and returns the outputs' values, or the reason
//! the inputs cannot fit. A rule that cannot tell returns unknown shapes; it never guesses a mismatch.

mod constant;
mod conv;
mod elementwise;
mod grow;
mod layout;
mod linalg;
mod microsoft;
mod recurrent;
mod reduce;
mod resize;

use super::super::onnx_proto::{DTYPE_BOOL, DTYPE_FLOAT, DTYPE_INT32, DTYPE_INT64, NodeProto};
use super::attrs::{self as attrs, attribute, int_attr};
use super::value::{D, MAX_TRACKED_INTS, Value, constant_value, input_at};
use constant::infer_constant;
use conv::{infer_conv, infer_conv_transpose, infer_pool};
use grow::{infer_depth_space, infer_expand, infer_one_hot, infer_pad, infer_tile};
use layout::{
    infer_concat, infer_flatten, infer_gather, infer_reshape, infer_shape_op, infer_slice, infer_split, infer_squeeze,
    infer_transpose, infer_unsqueeze,
};
use linalg::{infer_einsum, infer_gemm, infer_matmul};
use microsoft::infer_microsoft;
use recurrent::infer_recurrent;
use reduce::infer_reduce;
use resize::infer_resize;

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

/// `com.microsoft` operators that add a residual (counted with the elementwise nodes).
const MICROSOFT_ELEMENTWISE: &[&str] =
    &["SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "BiasAdd", "QLinearAdd", "QLinearMul"];

/// True for nodes that combine tensors elementwise with broadcasting: the residual `Add`s and their kin
/// that the coverage figure counts.
pub(crate) fn is_elementwise(node: &NodeProto) -> bool {
    let op = node.op_type.as_str();
    if node.domain == "com.microsoft" {
        return MICROSOFT_ELEMENTWISE.contains(&op);
    }
    (node.domain.is_empty() || node.domain == "ai.onnx")
        && (BROADCAST_SAME_DTYPE.contains(&op)
            || BROADCAST_COMPARE.contains(&op)
            || matches!(op, "Pow" | "PRelu" | "Where" | "BitShift"))
}

/// The inputs at `positions`, in that order (a quantized operator's data inputs).
fn pick(inputs: &[Option<Value>], positions: &[usize]) -> Vec<Option<Value>> {
    positions.iter().map(|&p| inputs.get(p).cloned().flatten()).collect()
}

/// Infers the outputs of one node, or says why its inputs cannot fit.
pub(crate) fn infer_node(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    if node.domain == "com.microsoft" {
        return infer_microsoft(node, inputs);
    }
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Ok(Vec::new());
    }
    let op = node.op_type.as_str();
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    if op == "Not" {
        let ints = x
            .ints
            .as_ref()
            .map(|v| v.iter().map(|d| d.known().map_or(D::Unknown, |b| D::Known(i64::from(b == 0)))).collect());
        return Ok(vec![Value { ints, floats: None, ..x }]);
    }
    if UNARY_SAME_SHAPE.contains(&op) {
        return Ok(vec![Value { ints: None, floats: None, ..x }]);
    }
    if BROADCAST_SAME_DTYPE.contains(&op) || BROADCAST_COMPARE.contains(&op) || op == "Pow" || op == "PRelu" {
        let present: Vec<&Value> = inputs.iter().flatten().collect();
        if BROADCAST_SAME_DTYPE.contains(&op) {
            check_same_dtype(&present)?;
        }
        let shape = broadcast_values(&present)?;
        let dtype = if BROADCAST_COMPARE.contains(&op) { Some(DTYPE_BOOL) } else { x.dtype };
        let ints = elementwise_ints(op, &present);
        return Ok(vec![Value { dtype, shape, ints, floats: None }]);
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
            Ok(vec![Value { dtype: input_at(inputs, 1).and_then(|v| v.dtype), shape, ints: None, floats: None }])
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
            floats: None,
        }]),
        "Flatten" => infer_flatten(node, &x),
        "Transpose" => infer_transpose(node, &x),
        "Shape" => infer_shape_op(node, &x),
        "Size" => {
            let count = x.shape.as_ref().and_then(|s| s.iter().try_fold(1i64, |acc, d| acc.checked_mul(d.known()?)));
            let ints = x.shape.as_ref().map(|_| vec![count.map_or(D::Unknown, D::Known)]);
            Ok(vec![Value { dtype: Some(DTYPE_INT64), shape: Some(Vec::new()), ints, floats: None }])
        }
        "Gather" => infer_gather(node, inputs),
        "Unsqueeze" => infer_unsqueeze(node, inputs),
        "Squeeze" => infer_squeeze(node, inputs),
        "Constant" => Ok(vec![infer_constant(node)]),
        "ConstantOfShape" => {
            let shape = input_at(inputs, 0).and_then(|v| v.ints.clone());
            let fill = attribute(node, "value").and_then(|a| a.t.as_ref());
            let dtype = fill.map_or(DTYPE_FLOAT, |t| t.data_type);
            // A small integer table filled with one known value (exporters build padding tables this way).
            let count = shape.as_ref().and_then(|s| s.iter().try_fold(1i64, |acc, d| acc.checked_mul(d.known()?)));
            let value = fill.and_then(|t| constant_value(t).ints).and_then(|v| v.first().cloned());
            let ints = match (count.and_then(|c| usize::try_from(c).ok()), value) {
                (Some(count), Some(value)) if count <= MAX_TRACKED_INTS => Some(vec![value; count]),
                _ => None,
            };
            Ok(vec![Value { dtype: Some(dtype), shape, ints, floats: None }])
        }
        "Expand" => infer_expand(inputs),
        "Pad" => infer_pad(node, inputs),
        "Tile" => infer_tile(inputs),
        "OneHot" => infer_one_hot(node, inputs),
        "DepthToSpace" => infer_depth_space(node, &x, true),
        "SpaceToDepth" => infer_depth_space(node, &x, false),
        "Resize" | "Upsample" => infer_resize(node, inputs),
        "LSTM" | "GRU" | "RNN" => infer_recurrent(node, inputs),
        "ConvTranspose" => infer_conv_transpose(node, inputs),
        "ConvInteger" => Ok(as_int32(infer_conv(node, &pick(inputs, &[0, 1]))?)),
        "QLinearConv" => infer_conv(node, &pick(inputs, &[0, 3, 8])),
        "MatMulInteger" => Ok(as_int32(infer_matmul(&pick(inputs, &[0, 1]))?)),
        "QLinearMatMul" => infer_matmul(&pick(inputs, &[0, 3])),
        "Einsum" => infer_einsum(node, inputs),
        "DynamicQuantizeLinear" => Ok(vec![
            Value { dtype: Some(2), ints: None, floats: None, ..x },
            Value::with_shape(Some(DTYPE_FLOAT), Vec::new()),
            Value::with_shape(Some(2), Vec::new()),
        ]),
        "GatherElements" => Ok(vec![Value {
            dtype: x.dtype,
            shape: input_at(inputs, 1).and_then(|v| v.shape.clone()),
            ints: None,
            floats: None,
        }]),
        "ScatterND" | "ScatterElements" | "Scatter" => Ok(vec![Value { ints: None, floats: None, ..x }]),
        "TopK" => {
            let k = input_at(inputs, 1).and_then(|v| v.ints.as_ref()).and_then(|i| i.first().cloned());
            let shape = match &x.shape {
                Some(shape) if !shape.is_empty() => {
                    let axis = attrs::axis_index(int_attr(node, "axis", -1), shape.len())?;
                    let mut out = shape.clone();
                    out[axis] = k.unwrap_or(D::Unknown);
                    Some(out)
                }
                _ => None,
            };
            let values = Value { dtype: x.dtype, shape: shape.clone(), ints: None, floats: None };
            Ok(vec![values, Value { dtype: Some(DTYPE_INT64), shape, ints: None, floats: None }])
        }
        "NonZero" => Ok(vec![Value::with_shape(
            Some(DTYPE_INT64),
            vec![x.shape.as_ref().map_or(D::Unknown, |s| D::Known(i64::try_from(s.len()).unwrap_or(0))), D::Unknown],
        )]),
        "Range" => Ok(vec![Value::with_shape(input_at(inputs, 0).and_then(|v| v.dtype), vec![D::Unknown])]),
        "LRN" => Ok(vec![Value { ints: None, floats: None, ..x }]),
        "Slice" => infer_slice(inputs),
        "Split" => infer_split(node, inputs),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2"
        | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" | "ArgMax" | "ArgMin" => infer_reduce(node, inputs),
        _ => Ok(Vec::new()),
    }
}

/// Integer convolutions and products accumulate in int32 whatever their inputs' type.
fn as_int32(values: Vec<Value>) -> Vec<Value> {
    values.into_iter().map(|value| Value { dtype: Some(DTYPE_INT32), ..value }).collect()
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
        Some(Value {
            dtype: Some(DTYPE_INT64),
            shape: Some(vec![D::Known(len)]),
            ints: Some(known(values)),
            floats: None,
        })
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
