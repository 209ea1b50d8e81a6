//! `Resize` and `Upsample`: the output size from `sizes`, or from `scales` (`floor(size * scale)`).
//! A symbolic size resized by a scale becomes a derived symbol (`h*2`), so an FPN branch upsampled from
//! the same input compares equal to its partner.

use super::super::super::onnx_proto::NodeProto;
use super::super::attrs::{attribute, axis_index, ints_attr, string_attr};
use super::super::value::{D, Value, dims_text, input_at};

pub(crate) fn infer_resize(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let Some(shape) = &x.shape else {
        return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None, floats: None }]);
    };
    let unknown = Ok(vec![Value::with_shape(x.dtype, vec![D::Unknown; shape.len()])]);
    let axes: Vec<usize> = match ints_attr(node, "axes").filter(|a| !a.is_empty()) {
        Some(axes) => axes.iter().map(|&a| axis_index(a, shape.len())).collect::<Result<_, _>>()?,
        None => (0..shape.len()).collect(),
    };
    // Upsample and opset-10 Resize take (X, scales); opset 11+ Resize takes (X, roi, scales, sizes).
    let (scales_at, sizes_at) =
        if node.op_type == "Upsample" || node.input.len() == 2 { (1, None) } else { (2, Some(3)) };
    let sizes = sizes_at.and_then(|at| input_at(inputs, at)).filter(|v| v.shape.as_deref() != Some(&[D::Known(0)]));
    if let Some(sizes) = sizes {
        let policy = string_attr(node, "keep_aspect_ratio_policy").unwrap_or_else(|| "stretch".to_string());
        let Some(targets) = sizes.ints.clone().filter(|_| policy == "stretch") else { return unknown };
        if targets.len() != axes.len() {
            return Err(format!(
                "sizes has {} values for {} resized axes of {}",
                targets.len(),
                axes.len(),
                dims_text(shape)
            ));
        }
        let mut out = shape.clone();
        for (&axis, target) in axes.iter().zip(targets) {
            out[axis] = target;
        }
        return Ok(vec![Value::with_shape(x.dtype, out)]);
    }
    let scales: Option<Vec<f64>> = match attribute(node, "scales").filter(|a| !a.floats.is_empty()) {
        Some(attr) => Some(attr.floats.iter().map(|&f| f64::from(f)).collect()),
        None => input_at(inputs, scales_at).and_then(|v| v.floats.clone()),
    };
    let Some(scales) = scales else { return unknown };
    if scales.len() != axes.len() {
        return Err(format!(
            "scales has {} values for {} resized axes of {}",
            scales.len(),
            axes.len(),
            dims_text(shape)
        ));
    }
    let mut out = shape.clone();
    for (&axis, &scale) in axes.iter().zip(&scales) {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(format!("scale {scale} for axis {axis} is not a positive number"));
        }
        out[axis] = scale_dim(&shape[axis], scale);
    }
    Ok(vec![Value::with_shape(x.dtype, out)])
}

fn scale_dim(size: &D, scale: f64) -> D {
    if scale == 1.0 {
        return size.clone();
    }
    match size {
        D::Known(value) => {
            let scaled = (*value as f64 * scale).floor();
            if (0.0..9.0e15).contains(&scaled) { D::Known(scaled as i64) } else { D::Unknown }
        }
        D::Sym(name) => D::Sym(format!("({name}*{scale})")),
        D::Unknown => D::Unknown,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::{ints, known, node, shape_of, tensor};
    use super::*;

    fn floats(values: &[f64]) -> Option<Value> {
        Some(Value {
            dtype: Some(1),
            shape: Some(known(&[values.len() as i64])),
            ints: None,
            floats: Some(values.to_vec()),
        })
    }

    #[test]
    fn resize_by_scales_floors_and_symbolic_sizes_get_a_derived_symbol() {
        let mut resize = node("Resize", vec![]);
        resize.input = vec!["x".into(), "".into(), "scales".into()];
        let out = infer_resize(&resize, &[tensor(&[8, 4, 5, 5]), None, floats(&[1.0, 1.0, 2.0, 1.5])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 4, 10, 7])));
        let symbolic = Some(Value::with_shape(Some(1), vec![D::Known(8), D::Known(4), D::Sym("h".into())]));
        let out = infer_resize(&resize, &[symbolic, None, floats(&[1.0, 1.0, 2.0])]).unwrap();
        assert_eq!(shape_of(&out).unwrap()[2], D::Sym("(h*2)".into()));
        assert!(infer_resize(&resize, &[tensor(&[8, 4, 5, 5]), None, floats(&[2.0])]).is_err());
    }

    #[test]
    fn resize_by_sizes_takes_them_and_upsample_reads_its_second_input() {
        let mut resize = node("Resize", vec![]);
        resize.input = vec!["x".into(), "".into(), "".into(), "sizes".into()];
        let out = infer_resize(&resize, &[tensor(&[8, 4, 5, 5]), None, None, ints(&[8, 4, 20, 20])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 4, 20, 20])));
        let mut upsample = node("Upsample", vec![]);
        upsample.input = vec!["x".into(), "scales".into()];
        let out = infer_resize(&upsample, &[tensor(&[8, 4, 5, 5]), floats(&[1.0, 1.0, 2.0, 2.0])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 4, 10, 10])));
    }
}
