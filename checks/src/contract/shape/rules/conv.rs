//! Sliding-window operators: `Conv` (channels, groups, bias) and pooling, with ONNX's output-size formula.

use super::super::super::onnx_proto::{DTYPE_INT64, NodeProto};
use super::super::attrs::{int_attr, ints_attr, string_attr};
use super::super::value::{D, Value, dims_text, input_at};

/// Spatial output size of a convolution or pooling window; `None` when it cannot be computed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn window_output(
    size: i64,
    kernel: i64,
    stride: i64,
    dilation: i64,
    pad_begin: i64,
    pad_end: i64,
    auto_pad: &str,
    ceil_mode: bool,
) -> Result<Option<i64>, String> {
    if stride <= 0 || dilation <= 0 || kernel <= 0 {
        return Err(format!("invalid window: kernel {kernel}, stride {stride}, dilation {dilation}"));
    }
    let effective = dilation.checked_mul(kernel - 1).and_then(|v| v.checked_add(1));
    let Some(effective) = effective else { return Ok(None) };
    match auto_pad {
        "SAME_UPPER" | "SAME_LOWER" => Ok(size.checked_add(stride - 1).map(|v| v / stride)),
        _ => {
            let (pad_begin, pad_end) = if auto_pad == "VALID" { (0, 0) } else { (pad_begin, pad_end) };
            let Some(padded) = size.checked_add(pad_begin).and_then(|v| v.checked_add(pad_end)) else {
                return Ok(None);
            };
            let Some(span) = padded.checked_sub(effective) else { return Ok(None) };
            if span < 0 {
                return Err(format!(
                    "the window ({effective} wide after dilation) is larger than the padded input ({padded})"
                ));
            }
            let steps = if ceil_mode { span.checked_add(stride - 1).map(|v| v / stride) } else { Some(span / stride) };
            Ok(steps.and_then(|s| s.checked_add(1)))
        }
    }
}

/// The output size of a window over a symbolic size: the same symbol when the window keeps the size
/// (stride 1 with "same" padding), otherwise a symbol derived from the input's and the window's numbers, so
/// two branches computed the same way still compare equal.
#[allow(clippy::too_many_arguments)]
fn symbolic_window(
    name: &str,
    kernel: i64,
    stride: i64,
    dilation: i64,
    pad_begin: i64,
    pad_end: i64,
    auto_pad: &str,
    ceil_mode: bool,
) -> Result<D, String> {
    if stride <= 0 || dilation <= 0 || kernel <= 0 {
        return Err(format!("invalid window: kernel {kernel}, stride {stride}, dilation {dilation}"));
    }
    let effective = dilation.checked_mul(kernel - 1).and_then(|v| v.checked_add(1));
    let same = matches!(auto_pad, "SAME_UPPER" | "SAME_LOWER");
    let pads = pad_begin.checked_add(pad_end);
    Ok(match (effective, pads) {
        _ if stride == 1 && same => D::Sym(name.to_string()),
        (Some(effective), Some(pads)) if stride == 1 && auto_pad != "VALID" && pads == effective - 1 => {
            D::Sym(name.to_string())
        }
        (Some(_), Some(_)) if same => D::Sym(format!("ceil({name}/{stride})")),
        (Some(effective), Some(pads)) => {
            let pads = if auto_pad == "VALID" { 0 } else { pads };
            let round = if ceil_mode { "ceil" } else { "floor" };
            pads.checked_sub(effective)
                .map_or(D::Unknown, |offset| D::Sym(format!("({round}(({name}{offset:+})/{stride})+1)")))
        }
        _ => D::Unknown,
    })
}

pub(crate) fn spatial_outputs(
    node: &NodeProto,
    spatial: &[D],
    kernel: &[D],
    ceil_mode: bool,
) -> Result<Vec<D>, String> {
    let count = spatial.len();
    let strides = ints_attr(node, "strides").filter(|v| !v.is_empty());
    let dilations = ints_attr(node, "dilations").filter(|v| !v.is_empty());
    let pads = ints_attr(node, "pads").filter(|v| !v.is_empty());
    let auto_pad = string_attr(node, "auto_pad").unwrap_or_default();
    for (name, list, expected) in
        [("strides", strides, count), ("dilations", dilations, count), ("pads", pads, 2 * count)]
    {
        if let Some(list) = list
            && list.len() != expected
        {
            return Err(format!("attribute {name} has {} values but the input has {count} spatial axes", list.len()));
        }
    }
    if kernel.len() != count {
        return Err(format!("the kernel has {} spatial axes but the input has {count}", kernel.len()));
    }
    let mut out = Vec::with_capacity(count);
    for axis in 0..count {
        let stride = strides.map_or(1, |s| s[axis]);
        let dilation = dilations.map_or(1, |d| d[axis]);
        let (pad_begin, pad_end) = pads.map_or((0, 0), |p| (p[axis], p[axis + count]));
        let (size, k) = match (&spatial[axis], &kernel[axis]) {
            (D::Known(size), D::Known(k)) => (size, k),
            (D::Sym(name), D::Known(k)) => {
                out.push(
                    symbolic_window(name, *k, stride, dilation, pad_begin, pad_end, &auto_pad, ceil_mode)
                        .map_err(|e| format!("spatial axis {axis}: {e}"))?,
                );
                continue;
            }
            _ => {
                out.push(D::Unknown);
                continue;
            }
        };
        let result = window_output(*size, *k, stride, dilation, pad_begin, pad_end, &auto_pad, ceil_mode)
            .map_err(|e| format!("spatial axis {axis}: {e}"))?;
        out.push(result.map_or(D::Unknown, D::Known));
    }
    Ok(out)
}

pub(crate) fn infer_conv(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let (Some(x), Some(w)) = (input_at(inputs, 0), input_at(inputs, 1)) else { return Ok(Vec::new()) };
    let (Some(x_shape), Some(w_shape)) = (&x.shape, &w.shape) else {
        return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None, floats: None }]);
    };
    if x_shape.len() < 3 || w_shape.len() != x_shape.len() {
        return Err(format!(
            "Conv needs input [N,C,...] and weight [M,C/group,...] of the same rank, got {} and {}",
            dims_text(x_shape),
            dims_text(w_shape)
        ));
    }
    let group = int_attr(node, "group", 1);
    if let (D::Known(channels), D::Known(per_group)) = (&x_shape[1], &w_shape[1])
        && per_group.checked_mul(group) != Some(*channels)
    {
        return Err(format!(
            "input {} has {channels} channels but weight {} expects {per_group} x group {group}",
            dims_text(x_shape),
            dims_text(w_shape)
        ));
    }
    if let Some(bias) = input_at(inputs, 2).and_then(|b| b.shape.as_ref())
        && let ([D::Known(len)], D::Known(m)) = (bias.as_slice(), &w_shape[0])
        && len != m
    {
        return Err(format!("bias has {len} values but the weight has {m} output channels"));
    }
    let kernel: Vec<D> = match ints_attr(node, "kernel_shape").filter(|k| !k.is_empty()) {
        Some(kernel) => kernel.iter().map(|&k| D::Known(k)).collect(),
        None => w_shape[2..].to_vec(),
    };
    let mut out = vec![x_shape[0].clone(), w_shape[0].clone()];
    out.extend(spatial_outputs(node, &x_shape[2..], &kernel, false)?);
    Ok(vec![Value::with_shape(x.dtype, out)])
}

pub(crate) fn infer_conv_transpose(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let (Some(x), Some(w)) = (input_at(inputs, 0), input_at(inputs, 1)) else { return Ok(Vec::new()) };
    let (Some(x_shape), Some(w_shape)) = (&x.shape, &w.shape) else {
        return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None, floats: None }]);
    };
    if x_shape.len() < 3 || w_shape.len() != x_shape.len() {
        return Err(format!(
            "ConvTranspose needs input [N,C,...] and weight [C,M/group,...] of the same rank, got {} and {}",
            dims_text(x_shape),
            dims_text(w_shape)
        ));
    }
    let group = int_attr(node, "group", 1);
    if let (D::Known(channels), D::Known(weight_in)) = (&x_shape[1], &w_shape[0])
        && channels != weight_in
    {
        return Err(format!(
            "input {} has {channels} channels but weight {} takes {weight_in}",
            dims_text(x_shape),
            dims_text(w_shape)
        ));
    }
    let out_channels = w_shape[1].known().and_then(|m| m.checked_mul(group)).map_or(D::Unknown, D::Known);
    if let Some(bias) = input_at(inputs, 2).and_then(|b| b.shape.as_ref())
        && let ([D::Known(len)], D::Known(m)) = (bias.as_slice(), &out_channels)
        && len != m
    {
        return Err(format!("bias has {len} values but the layer has {m} output channels"));
    }
    let count = x_shape.len() - 2;
    let mut out = vec![x_shape[0].clone(), out_channels];
    if let Some(output_shape) = ints_attr(node, "output_shape").filter(|s| s.len() == count) {
        out.extend(output_shape.iter().map(|&s| D::Known(s)));
        return Ok(vec![Value::with_shape(x.dtype, out)]);
    }
    let list = |name: &str, default: i64, len: usize| -> Result<Vec<i64>, String> {
        match ints_attr(node, name).filter(|v| !v.is_empty()) {
            Some(values) if values.len() == len => Ok(values.to_vec()),
            Some(values) => Err(format!("attribute {name} has {} values for {count} spatial axes", values.len())),
            None => Ok(vec![default; len]),
        }
    };
    let (strides, dilations, pads, extra) = (
        list("strides", 1, count)?,
        list("dilations", 1, count)?,
        list("pads", 0, 2 * count)?,
        list("output_padding", 0, count)?,
    );
    let kernel: Vec<D> = match ints_attr(node, "kernel_shape").filter(|k| !k.is_empty()) {
        Some(kernel) => kernel.iter().map(|&k| D::Known(k)).collect(),
        None => w_shape[2..].to_vec(),
    };
    let same = matches!(string_attr(node, "auto_pad").as_deref(), Some("SAME_UPPER" | "SAME_LOWER"));
    for axis in 0..count {
        let size = match (&x_shape[axis + 2], kernel.get(axis)) {
            (D::Known(size), Some(D::Known(k))) => {
                let grow = if same {
                    size.checked_mul(strides[axis])
                } else {
                    size.checked_sub(1)
                        .and_then(|s| s.checked_mul(strides[axis]))
                        .and_then(|s| s.checked_add(extra[axis]))
                        .and_then(|s| s.checked_add(dilations[axis].checked_mul(k - 1)?.checked_add(1)?))
                        .and_then(|s| s.checked_sub(pads[axis]))
                        .and_then(|s| s.checked_sub(pads[axis + count]))
                };
                match grow {
                    Some(value) if value > 0 => D::Known(value),
                    Some(value) => return Err(format!("spatial axis {axis}: the output size would be {value}")),
                    None => D::Unknown,
                }
            }
            (D::Sym(name), Some(D::Known(k))) => {
                // Output = (size - 1) * stride + grow, with grow = output_padding + dilated kernel - pads.
                let grow = k
                    .checked_sub(1)
                    .and_then(|k| dilations[axis].checked_mul(k))
                    .and_then(|v| v.checked_add(1))
                    .and_then(|v| v.checked_add(extra[axis]))
                    .and_then(|v| v.checked_sub(pads[axis]))
                    .and_then(|v| v.checked_sub(pads[axis + count]));
                match grow {
                    _ if same => super::grow::mul_dim(&D::Sym(name.clone()), strides[axis]),
                    Some(grow) if grow == strides[axis] => super::grow::mul_dim(&D::Sym(name.clone()), strides[axis]),
                    Some(grow) => D::Sym(format!("(({name}-1)*{}{grow:+})", strides[axis])),
                    None => D::Unknown,
                }
            }
            _ => D::Unknown,
        };
        out.push(size);
    }
    Ok(vec![Value::with_shape(x.dtype, out)])
}

pub(crate) fn infer_pool(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let Some(x) = input_at(inputs, 0) else { return Ok(Vec::new()) };
    let Some(x_shape) = &x.shape else {
        return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None, floats: None }]);
    };
    if x_shape.len() < 3 {
        return Err(format!("pooling needs input [N,C,...], got {}", dims_text(x_shape)));
    }
    let Some(kernel) = ints_attr(node, "kernel_shape") else { return Ok(Vec::new()) };
    let kernel: Vec<D> = kernel.iter().map(|&k| D::Known(k)).collect();
    let mut out = vec![x_shape[0].clone(), x_shape[1].clone()];
    out.extend(spatial_outputs(node, &x_shape[2..], &kernel, int_attr(node, "ceil_mode", 0) != 0)?);
    let value = Value::with_shape(x.dtype, out);
    let indices = Value { dtype: Some(DTYPE_INT64), ..value.clone() };
    Ok(vec![value, indices])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::{int, int_list, known, node, shape_of, tensor, text};
    use super::*;

    #[test]
    fn window_output_matches_the_onnx_formula() {
        assert_eq!(window_output(16, 3, 2, 1, 1, 1, "", false).unwrap(), Some(8));
        assert_eq!(window_output(7, 2, 2, 1, 0, 0, "", true).unwrap(), Some(4));
        assert_eq!(window_output(7, 2, 2, 1, 0, 0, "SAME_UPPER", false).unwrap(), Some(4));
        assert!(window_output(2, 5, 1, 1, 0, 0, "", false).is_err());
        assert_eq!(window_output(i64::MAX, 3, 1, 1, 1, 1, "", false).unwrap(), None);
    }

    #[test]
    fn conv_checks_channels_against_weight_and_group() {
        let conv = node("Conv", vec![int_list("pads", &[1, 1, 1, 1]), int_list("strides", &[2, 2])]);
        let out = infer_conv(&conv, &[tensor(&[8, 16, 32, 32]), tensor(&[32, 16, 3, 3]), tensor(&[32])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 32, 16, 16])));
        assert!(
            infer_conv(&conv, &[tensor(&[8, 8, 32, 32]), tensor(&[32, 16, 3, 3])]).unwrap_err().contains("channels")
        );
        let depthwise = node("Conv", vec![int("group", 16)]);
        assert!(infer_conv(&depthwise, &[tensor(&[8, 16, 5, 5]), tensor(&[16, 1, 3, 3])]).is_ok());
        assert!(infer_conv(&conv, &[tensor(&[8, 16, 32, 32]), tensor(&[32, 16, 3, 3]), tensor(&[16])]).is_err());
    }

    #[test]
    fn conv_transpose_grows_space_and_checks_channels() {
        let up = node("ConvTranspose", vec![int_list("strides", &[2, 2])]);
        let out = infer_conv_transpose(&up, &[tensor(&[8, 4, 5, 5]), tensor(&[4, 6, 2, 2])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 6, 10, 10])));
        assert!(infer_conv_transpose(&up, &[tensor(&[8, 3, 5, 5]), tensor(&[4, 6, 2, 2])]).is_err());
        let symbolic =
            Some(Value::with_shape(Some(1), vec![D::Known(8), D::Known(4), D::Sym("h".into()), D::Known(5)]));
        let out = infer_conv_transpose(&up, &[symbolic, tensor(&[4, 6, 2, 2])]).unwrap();
        assert_eq!(shape_of(&out).unwrap()[2], D::Sym("(h*2)".into()));
    }

    #[test]
    fn extreme_attributes_on_symbolic_sizes_are_errors_or_unknown_never_overflows() {
        // Found by the shape_rules fuzz target: these used to overflow.
        let x = Some(Value::with_shape(Some(1), vec![D::Known(1), D::Known(4), D::Sym("h".into())]));
        let huge =
            node("ConvTranspose", vec![int_list("pads", &[i64::MAX, i64::MAX]), int_list("kernel_shape", &[i64::MIN])]);
        assert!(infer_conv_transpose(&huge, &[x.clone(), tensor(&[4, 2, 3])]).is_ok());
        let bad_kernel = node("Conv", vec![int_list("kernel_shape", &[i64::MIN])]);
        assert!(infer_conv(&bad_kernel, &[x.clone(), tensor(&[2, 4, 3])]).unwrap_err().contains("invalid window"));
        let wide = node("Conv", vec![int_list("pads", &[i64::MIN, i64::MIN])]);
        assert!(infer_conv(&wide, &[x, tensor(&[2, 4, 3])]).is_ok());
    }

    #[test]
    fn symbolic_spatial_sizes_keep_their_symbol_through_same_padded_windows() {
        let same = node("Conv", vec![int_list("pads", &[1, 1, 1, 1])]);
        let x =
            Some(Value::with_shape(Some(1), vec![D::Known(8), D::Known(3), D::Sym("h".into()), D::Sym("w".into())]));
        let out = infer_conv(&same, &[x.clone(), tensor(&[4, 3, 3, 3])]).unwrap();
        assert_eq!(shape_of(&out).unwrap()[2], D::Sym("h".into()));
        let strided = node("Conv", vec![int_list("pads", &[1, 1, 1, 1]), int_list("strides", &[2, 2])]);
        let a = infer_conv(&strided, &[x.clone(), tensor(&[4, 3, 3, 3])]).unwrap();
        let b = infer_conv(&strided, &[x, tensor(&[4, 3, 3, 3])]).unwrap();
        assert_eq!(shape_of(&a), shape_of(&b), "the same window over the same input gives the same symbol");
        assert!(matches!(shape_of(&a).unwrap()[2], D::Sym(_)));
    }

    #[test]
    fn pooling_keeps_channels_and_shrinks_space() {
        let pool = node("MaxPool", vec![int_list("kernel_shape", &[2, 2]), int_list("strides", &[2, 2])]);
        let out = infer_pool(&pool, &[tensor(&[8, 16, 32, 32])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 16, 16, 16])));
        assert!(infer_pool(&pool, &[tensor(&[8, 16])]).is_err());
        let same = node("AveragePool", vec![int_list("kernel_shape", &[3, 3]), text("auto_pad", "SAME_UPPER")]);
        assert_eq!(shape_of(&infer_pool(&same, &[tensor(&[8, 16, 7, 7])]).unwrap()), Some(known(&[8, 16, 7, 7])));
    }
}
