//! Operators of the `com.microsoft` domain that transformer and quantized exports contain (fused
//! activations, skip layer norms, attention, quantized matrix products). Each maps onto the standard
//! rule it fuses; the rest give unknown outputs.

use super::super::super::onnx_proto::{DTYPE_FLOAT, NodeProto};
use super::super::attrs::{int_attr, ints_attr};
use super::super::value::{D, Value, dims_text, input_at};
use super::conv::infer_conv;
use super::elementwise::broadcast_values;
use super::linalg::{infer_gemm, infer_matmul};
use super::pick;
use super::recurrent::infer_recurrent;

pub(crate) fn infer_microsoft(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let same = || Ok(vec![Value { ints: None, floats: None, ..x.clone() }]);
    match node.op_type.as_str() {
        "Gelu" | "QuickGelu" | "FastGelu" if input_at(inputs, 1).is_none() => same(),
        "FastGelu" | "BiasGelu" | "BiasAdd" | "BiasSoftmax" | "BiasDropout" => {
            let present: Vec<&Value> = inputs.iter().flatten().collect();
            let shape = broadcast_values(&present)?;
            Ok(vec![Value { dtype: x.dtype, shape, ints: None, floats: None }])
        }
        "LayerNormalization" | "SimplifiedLayerNormalization" | "RotaryEmbedding" => same(),
        "SkipLayerNormalization" | "SkipSimplifiedLayerNormalization" => {
            let pair: Vec<Value> = pick(inputs, &[0, 1]).into_iter().flatten().collect();
            let shape =
                broadcast_values(&pair.iter().collect::<Vec<_>>()).map_err(|e| format!("input and skip: {e}"))?;
            let out = Value { dtype: x.dtype, shape, ints: None, floats: None };
            Ok(vec![out.clone(), Value::default(), Value::default(), out])
        }
        "FusedConv" => infer_conv(node, inputs),
        "FusedGemm" => infer_gemm(node, inputs),
        "FusedMatMul" if int_attr(node, "transA", 0) == 0 && int_attr(node, "transB", 0) == 0 => infer_matmul(inputs),
        "DynamicQuantizeMatMul" | "MatMulIntegerToFloat" => infer_matmul(&pick(inputs, &[0, 1])),
        "QLinearAdd" | "QLinearMul" => {
            let present: Vec<Value> = pick(inputs, &[0, 3]).into_iter().flatten().collect();
            let shape = broadcast_values(&present.iter().collect::<Vec<_>>())?;
            Ok(vec![Value { dtype: x.dtype, shape, ints: None, floats: None }])
        }
        "DynamicQuantizeLSTM" => infer_recurrent(node, inputs),
        "Attention" => infer_attention(node, inputs),
        "MultiHeadAttention" => {
            let Some([b, s, d]) = x.shape.as_deref() else { return Ok(vec![Value::default()]) };
            let value_hidden = input_at(inputs, 2).and_then(|v| v.shape.as_ref()).and_then(|v| match v.as_slice() {
                [_, _, hidden] => Some(hidden.clone()),
                _ => None,
            });
            Ok(vec![Value::with_shape(
                x.dtype.or(Some(DTYPE_FLOAT)),
                vec![b.clone(), s.clone(), value_hidden.unwrap_or(d.clone())],
            )])
        }
        _ => Ok(Vec::new()),
    }
}

/// `com.microsoft` `Attention`: input `[batch, sequence, input_hidden]` times weights
/// `[input_hidden, q + k + v hidden]`; the output is `[batch, sequence, v_hidden]`.
fn infer_attention(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let (Some(shape), Some(weights)) = (&x.shape, input_at(inputs, 1).and_then(|w| w.shape.as_ref())) else {
        return Ok(vec![Value::default()]);
    };
    let ([batch, sequence, hidden], [w_in, w_out]) = (shape.as_slice(), weights.as_slice()) else {
        return Err(format!(
            "Attention needs input [B,S,H] and weights [H,3H], got {} and {}",
            dims_text(shape),
            dims_text(weights)
        ));
    };
    if let (D::Known(a), D::Known(b)) = (hidden, w_in)
        && a != b
    {
        return Err(format!("input hidden size {a} does not match the weights' {b} rows"));
    }
    let v_hidden = match ints_attr(node, "qkv_hidden_sizes").filter(|s| s.len() == 3) {
        Some(sizes) => D::Known(sizes[2]),
        None => w_out.known().map_or(D::Unknown, |v| D::Known(v / 3)),
    };
    Ok(vec![Value::with_shape(x.dtype, vec![batch.clone(), sequence.clone(), v_hidden])])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::{known, node, shape_of, tensor};
    use super::*;

    fn contrib(op: &str) -> NodeProto {
        NodeProto { domain: "com.microsoft".into(), ..node(op, vec![]) }
    }

    #[test]
    fn skip_layer_norm_checks_the_residual_pair() {
        let out = infer_microsoft(
            &contrib("SkipLayerNormalization"),
            &[tensor(&[8, 6, 16]), tensor(&[8, 6, 16]), tensor(&[16])],
        );
        assert_eq!(shape_of(&out.unwrap()), Some(known(&[8, 6, 16])));
        let err = infer_microsoft(&contrib("SkipLayerNormalization"), &[tensor(&[8, 6, 16]), tensor(&[1, 48, 16])])
            .unwrap_err();
        assert!(err.contains("input and skip"), "{err}");
    }

    #[test]
    fn attention_output_takes_the_value_hidden_size() {
        let out = infer_microsoft(&contrib("Attention"), &[tensor(&[8, 6, 16]), tensor(&[16, 48])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 6, 16])));
        assert!(infer_microsoft(&contrib("Attention"), &[tensor(&[8, 6, 12]), tensor(&[16, 48])]).is_err());
    }

    #[test]
    fn fused_and_quantized_operators_follow_the_standard_rules() {
        let out = infer_microsoft(&contrib("BiasGelu"), &[tensor(&[8, 6, 16]), tensor(&[16])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 6, 16])));
        let out = infer_microsoft(&contrib("DynamicQuantizeMatMul"), &[tensor(&[8, 16]), tensor(&[16, 4])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 4])));
        assert!(infer_microsoft(&contrib("QLinearAdd"), &[tensor(&[8, 4]), None, None, tensor(&[8, 5])]).is_err());
        assert!(infer_microsoft(&contrib("SomethingNew"), &[tensor(&[8, 4])]).unwrap().is_empty());
    }
}
