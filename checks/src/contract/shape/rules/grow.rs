//! Operators that grow or repeat a tensor: `Pad`, `Tile`, `Expand`, `OneHot`, `DepthToSpace` and
//! `SpaceToDepth`. Sizes computed from a symbolic size become a derived symbol (`h+2`), so two values
//! computed the same way from the same input still compare equal.

use super::super::super::onnx_proto::{DTYPE_FLOAT, NodeProto};
use super::super::attrs::{axis_index, int_attr, ints_attr};
use super::super::value::{D, Value, dims_text, input_at, known_ints};
use super::elementwise::broadcast;

/// `size + extra`, for known sizes and (as a derived symbol) for symbolic ones.
pub(crate) fn add_dim(size: &D, extra: i64) -> D {
    match size {
        _ if extra == 0 => size.clone(),
        D::Known(value) => value.checked_add(extra).map_or(D::Unknown, D::Known),
        D::Sym(name) => D::Sym(format!("({name}{extra:+})")),
        D::Unknown => D::Unknown,
    }
}

/// `size * factor`, for known sizes and (as a derived symbol) for symbolic ones.
pub(crate) fn mul_dim(size: &D, factor: i64) -> D {
    match size {
        _ if factor == 1 => size.clone(),
        D::Known(value) => value.checked_mul(factor).map_or(D::Unknown, D::Known),
        D::Sym(name) => D::Sym(format!("({name}*{factor})")),
        D::Unknown => D::Unknown,
    }
}

pub(crate) fn infer_pad(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let unknown = || {
        Ok(vec![Value {
            dtype: x.dtype,
            shape: x.shape.as_ref().map(|s| vec![D::Unknown; s.len()]),
            ints: None,
            floats: None,
        }])
    };
    let Some(shape) = &x.shape else {
        return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None, floats: None }]);
    };
    let pads = match ints_attr(node, "pads") {
        Some(pads) => pads.to_vec(),
        None => match known_ints(input_at(inputs, 1)) {
            Some(pads) => pads,
            None => return unknown(),
        },
    };
    let axes: Vec<usize> = match input_at(inputs, 3) {
        None => (0..shape.len()).collect(),
        Some(value) => match known_ints(Some(value)) {
            Some(axes) => axes.iter().map(|&a| axis_index(a, shape.len())).collect::<Result<_, _>>()?,
            None => return unknown(),
        },
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("pads has {} values for {} padded axes of {}", pads.len(), axes.len(), dims_text(shape)));
    }
    let mut out = shape.clone();
    for (position, &axis) in axes.iter().enumerate() {
        let extra = pads[position].checked_add(pads[position + axes.len()]).ok_or("pads overflow")?;
        if let D::Known(size) = shape[axis]
            && size.checked_add(extra).is_none_or(|s| s < 0)
        {
            return Err(format!("pads {pads:?} remove more than axis {axis} of {} holds", dims_text(shape)));
        }
        out[axis] = add_dim(&shape[axis], extra);
    }
    Ok(vec![Value::with_shape(x.dtype, out)])
}

pub(crate) fn infer_tile(inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let Some(shape) = &x.shape else {
        return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None, floats: None }]);
    };
    let Some(repeats) = known_ints(input_at(inputs, 1)) else {
        return Ok(vec![Value::with_shape(x.dtype, vec![D::Unknown; shape.len()])]);
    };
    if repeats.len() != shape.len() {
        return Err(format!(
            "repeats has {} values for the {} axes of {}",
            repeats.len(),
            shape.len(),
            dims_text(shape)
        ));
    }
    if let Some(negative) = repeats.iter().find(|r| **r < 0) {
        return Err(format!("repeats has a negative value {negative}"));
    }
    Ok(vec![Value::with_shape(x.dtype, shape.iter().zip(&repeats).map(|(d, &r)| mul_dim(d, r)).collect())])
}

pub(crate) fn infer_expand(inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let target = input_at(inputs, 1).and_then(|v| v.ints.clone());
    let shape = match (&x.shape, target) {
        (Some(shape), Some(target)) => Some(broadcast(&[shape.as_slice(), target.as_slice()])?),
        (_, None) => {
            let rank = input_at(inputs, 1).and_then(|v| v.shape.as_ref()).and_then(|s| s.first()).and_then(D::known);
            let rank = rank.and_then(|r| usize::try_from(r).ok()).filter(|r| *r <= 64);
            match (&x.shape, rank) {
                (Some(shape), Some(rank)) if rank >= shape.len() => Some(vec![D::Unknown; rank]),
                _ => None,
            }
        }
        _ => None,
    };
    Ok(vec![Value { dtype: x.dtype, shape, ints: None, floats: None }])
}

pub(crate) fn infer_one_hot(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let indices = input_at(inputs, 0).cloned().unwrap_or_default();
    let dtype = input_at(inputs, 2).and_then(|v| v.dtype).or(Some(DTYPE_FLOAT));
    let Some(shape) = &indices.shape else { return Ok(vec![Value { dtype, shape: None, ints: None, floats: None }]) };
    let depth = match input_at(inputs, 1) {
        Some(value) => match value.shape.as_deref() {
            Some([]) | Some([D::Known(1)]) | None => {
                value.ints.as_ref().and_then(|i| i.first().cloned()).unwrap_or(D::Unknown)
            }
            Some(other) => return Err(format!("depth must be a scalar or one value, got shape {}", dims_text(other))),
        },
        None => D::Unknown,
    };
    if let D::Known(d) = depth
        && d < 1
    {
        return Err(format!("depth {d} is not a positive size"));
    }
    let axis = axis_index(int_attr(node, "axis", -1), shape.len() + 1)?;
    let mut out = shape.clone();
    out.insert(axis, depth);
    Ok(vec![Value::with_shape(dtype, out)])
}

/// `DepthToSpace` (`to_space`) and `SpaceToDepth`: channels traded for spatial size by `blocksize`.
pub(crate) fn infer_depth_space(node: &NodeProto, x: &Value, to_space: bool) -> Result<Vec<Value>, String> {
    let Some(shape) = &x.shape else {
        return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None, floats: None }]);
    };
    let [n, c, h, w] = shape.as_slice() else {
        return Err(format!("needs a rank-4 input [N,C,H,W], got {}", dims_text(shape)));
    };
    let block = int_attr(node, "blocksize", 0);
    if block < 1 {
        return Err(format!("blocksize {block} is not a positive size"));
    }
    let square = block.checked_mul(block).ok_or("blocksize too large")?;
    let out = if to_space {
        if let D::Known(channels) = c
            && channels % square != 0
        {
            return Err(format!("{channels} channels do not divide by blocksize {block} squared"));
        }
        let channels = c.known().map_or(D::Unknown, |v| D::Known(v / square));
        vec![n.clone(), channels, mul_dim(h, block), mul_dim(w, block)]
    } else {
        for (axis, size) in [(2, h), (3, w)] {
            if let D::Known(size) = size
                && size % block != 0
            {
                return Err(format!("axis {axis} ({size}) does not divide by blocksize {block}"));
            }
        }
        let shrink = |d: &D| d.known().map_or(D::Unknown, |v| D::Known(v / block));
        vec![n.clone(), mul_dim(c, square), shrink(h), shrink(w)]
    };
    Ok(vec![Value::with_shape(x.dtype, out)])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::{int, int_list, ints, known, node, shape_of, tensor};
    use super::*;

    #[test]
    fn pad_grows_each_axis_and_symbolic_sizes_get_a_derived_symbol() {
        let out = infer_pad(&node("Pad", vec![]), &[tensor(&[8, 3, 10]), ints(&[0, 0, 2, 0, 0, 1])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 3, 13])));
        let symbolic = Some(Value::with_shape(Some(1), vec![D::Known(8), D::Sym("t".into())]));
        let out = infer_pad(&node("Pad", vec![int_list("pads", &[0, 1, 0, 1])]), &[symbolic]).unwrap();
        assert_eq!(shape_of(&out), Some(vec![D::Known(8), D::Sym("(t+2)".into())]));
        assert!(infer_pad(&node("Pad", vec![]), &[tensor(&[8, 3]), ints(&[0, 1])]).is_err());
        assert!(infer_pad(&node("Pad", vec![]), &[tensor(&[8, 3]), ints(&[0, -2, 0, -2])]).is_err());
    }

    #[test]
    fn tile_multiplies_and_expand_broadcasts() {
        assert_eq!(shape_of(&infer_tile(&[tensor(&[8, 3]), ints(&[1, 4])]).unwrap()), Some(known(&[8, 12])));
        assert!(infer_tile(&[tensor(&[8, 3]), ints(&[2])]).is_err());
        assert_eq!(shape_of(&infer_expand(&[tensor(&[8, 1]), ints(&[1, 5])]).unwrap()), Some(known(&[8, 5])));
        assert!(infer_expand(&[tensor(&[8, 2]), ints(&[1, 5])]).is_err());
    }

    #[test]
    fn one_hot_inserts_the_depth_axis() {
        let depth = Some(Value { dtype: Some(7), shape: Some(Vec::new()), ints: Some(known(&[10])), floats: None });
        let out = infer_one_hot(&node("OneHot", vec![]), &[tensor(&[8, 5]), depth.clone(), tensor(&[2])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 5, 10])));
        let out = infer_one_hot(&node("OneHot", vec![int("axis", 0)]), &[tensor(&[8]), depth, None]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[10, 8])));
    }

    #[test]
    fn depth_to_space_trades_channels_for_space() {
        let to_space = node("DepthToSpace", vec![int("blocksize", 2)]);
        let out = infer_depth_space(&to_space, tensor(&[8, 12, 4, 4]).as_ref().unwrap(), true).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 3, 8, 8])));
        assert!(infer_depth_space(&to_space, tensor(&[8, 6, 4, 4]).as_ref().unwrap(), true).is_err());
        let out = infer_depth_space(&to_space, tensor(&[8, 3, 8, 8]).as_ref().unwrap(), false).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 12, 4, 4])));
    }
}
