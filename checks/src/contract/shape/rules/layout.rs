//! Operators that move or select elements without computing on them: `Concat`, `Reshape`, `Flatten`,
//! `Transpose`, `Shape`, `Gather`, `Squeeze`/`Unsqueeze`, `Slice`, `Split`.

use super::super::super::onnx_proto::{DTYPE_INT64, NodeProto};
use super::super::attrs::{axis_index, int_attr, ints_attr};
use super::super::value::{D, MAX_SYMBOLIC_RANK, MAX_TRACKED_INTS, Value, dims_text, input_at, known_ints};
use super::elementwise::check_same_dtype;

pub(crate) fn infer_concat(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let present: Vec<&Value> = inputs.iter().flatten().collect();
    check_same_dtype(&present)?;
    let dtype = present.first().and_then(|v| v.dtype);
    let along_first_axis = matches!(int_attr(node, "axis", 0), 0)
        || present.iter().all(|v| v.shape.as_ref().is_some_and(|s| s.len() == 1));
    let ints = present
        .iter()
        .map(|v| v.ints.clone())
        .collect::<Option<Vec<_>>>()
        .map(|parts| parts.concat())
        .filter(|all| along_first_axis && all.len() <= MAX_TRACKED_INTS);
    let shapes: Vec<&[D]> = present.iter().filter_map(|v| v.shape.as_deref()).collect();
    let Some(first) = shapes.first() else { return Ok(vec![Value { dtype, shape: None, ints, floats: None }]) };
    let rank = first.len();
    if let Some(other) = shapes.iter().find(|s| s.len() != rank) {
        return Err(format!("inputs have different ranks: {} and {}", dims_text(first), dims_text(other)));
    }
    let axis = axis_index(int_attr(node, "axis", 0), rank)?;
    let mut out = Vec::with_capacity(rank);
    for position in 0..rank {
        if position == axis {
            let all_known = shapes.len() == present.len();
            let total = shapes.iter().try_fold(0i64, |acc, s| acc.checked_add(s[position].known()?));
            out.push(match total {
                Some(total) if all_known => D::Known(total),
                _ => D::Unknown,
            });
            continue;
        }
        let mut merged = D::Unknown;
        for shape in &shapes {
            match (&merged, &shape[position]) {
                (D::Known(a), D::Known(b)) if a != b => {
                    let texts: Vec<String> = shapes.iter().map(|s| dims_text(s)).collect();
                    return Err(format!(
                        "shapes {} cannot be concatenated on axis {axis}: axis {position} is {a} in one and {b} in another",
                        texts.join(" and ")
                    ));
                }
                (D::Known(_), _) => {}
                (_, dim @ D::Known(_)) => merged = dim.clone(),
                (D::Unknown, dim) => merged = dim.clone(),
                _ => {}
            }
        }
        out.push(merged);
    }
    Ok(vec![Value { dtype, shape: Some(out), ints, floats: None }])
}

/// Product of known dims and the list of symbolic names; `None` when any dim is unknown.
pub(crate) fn factorise(dims: &[&D]) -> Option<(i64, Vec<String>)> {
    let mut product = 1i64;
    let mut symbols = Vec::new();
    for dim in dims {
        match dim {
            D::Known(size) => product = product.checked_mul(*size)?,
            D::Sym(name) => symbols.push(name.clone()),
            D::Unknown => return None,
        }
    }
    Some((product, symbols))
}

pub(crate) fn infer_reshape(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let data = input_at(inputs, 0).cloned().unwrap_or_default();
    let target_value = input_at(inputs, 1).cloned().unwrap_or_default();
    let Some(target) = target_value.ints.clone() else {
        let rank = target_value.shape.as_ref().and_then(|s| s.first()).and_then(D::known);
        let shape =
            rank.and_then(|r| usize::try_from(r).ok()).filter(|r| *r <= MAX_TRACKED_INTS).map(|r| vec![D::Unknown; r]);
        return Ok(vec![Value { dtype: data.dtype, shape, ints: None, floats: None }]);
    };
    let allow_zero = int_attr(node, "allowzero", 0) != 0;
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (position, dim) in target.iter().enumerate() {
        out.push(match dim {
            D::Known(0) if !allow_zero => match data.shape.as_ref() {
                Some(shape) => shape.get(position).cloned().ok_or_else(|| {
                    format!(
                        "target shape {} copies axis {position} but the input {} has no such axis",
                        dims_text(&target),
                        dims_text(shape)
                    )
                })?,
                None => D::Unknown,
            },
            D::Known(-1) => {
                if infer_at.replace(position).is_some() {
                    return Err(format!("target shape {} has more than one -1", dims_text(&target)));
                }
                D::Unknown
            }
            D::Known(size) if *size < 0 => return Err(format!("target shape has a negative size {size}")),
            other => other.clone(),
        });
    }
    let Some(shape) = data.shape.as_ref() else {
        return Ok(vec![Value { dtype: data.dtype, shape: Some(out), ints: None, floats: None }]);
    };
    let target_text = || dims_text(&target);
    let input_dims: Vec<&D> = shape.iter().collect();
    let other_dims: Vec<&D> = out.iter().enumerate().filter(|(i, _)| Some(*i) != infer_at).map(|(_, d)| d).collect();
    if input_dims.len() > MAX_SYMBOLIC_RANK || other_dims.len() > MAX_SYMBOLIC_RANK {
        return Ok(vec![Value { dtype: data.dtype, shape: Some(out), ints: None, floats: None }]);
    }
    if let (Some((in_product, mut in_symbols)), Some((out_product, out_symbols))) =
        (factorise(&input_dims), factorise(&other_dims))
    {
        let mut all_cancel = true;
        for symbol in &out_symbols {
            match in_symbols.iter().position(|s| s == symbol) {
                Some(found) => {
                    in_symbols.swap_remove(found);
                }
                None => all_cancel = false,
            }
        }
        if all_cancel {
            match infer_at {
                Some(position) => {
                    if out_product == 0 {
                        out[position] = D::Unknown;
                    } else if in_product % out_product != 0 {
                        return Err(format!(
                            "cannot reshape {} ({in_product} elements) into {}: {in_product} is not a multiple of {out_product}",
                            dims_text(shape),
                            target_text()
                        ));
                    } else {
                        let rest = in_product / out_product;
                        out[position] = match in_symbols.as_slice() {
                            [] => D::Known(rest),
                            [symbol] if rest == 1 => D::Sym(symbol.clone()),
                            _ => D::Unknown,
                        };
                    }
                }
                None if in_symbols.is_empty() && in_product != out_product => {
                    return Err(format!(
                        "cannot reshape {} ({in_product} elements) into {} ({out_product} elements)",
                        dims_text(shape),
                        target_text()
                    ));
                }
                None => {}
            }
        }
    }
    Ok(vec![Value { dtype: data.dtype, shape: Some(out), ints: data.ints.clone(), floats: None }])
}

pub(crate) fn product(dims: &[D]) -> D {
    match dims {
        [single] => single.clone(),
        _ => dims.iter().try_fold(1i64, |acc, d| acc.checked_mul(d.known()?)).map_or(D::Unknown, D::Known),
    }
}

pub(crate) fn infer_flatten(node: &NodeProto, x: &Value) -> Result<Vec<Value>, String> {
    let Some(shape) = &x.shape else {
        return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None, floats: None }]);
    };
    let axis = int_attr(node, "axis", 1);
    let rank = i64::try_from(shape.len()).map_err(|_| "rank too large".to_string())?;
    let split = if axis < 0 { axis.checked_add(rank) } else { Some(axis) };
    let split = split
        .filter(|s| (0..=rank).contains(s))
        .and_then(|s| usize::try_from(s).ok())
        .ok_or_else(|| format!("axis {axis} is out of range for rank {rank}"))?;
    Ok(vec![Value::with_shape(x.dtype, vec![product(&shape[..split]), product(&shape[split..])])])
}

pub(crate) fn infer_transpose(node: &NodeProto, x: &Value) -> Result<Vec<Value>, String> {
    let Some(shape) = &x.shape else {
        return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None, floats: None }]);
    };
    let perm: Vec<usize> = match ints_attr(node, "perm").filter(|p| !p.is_empty()) {
        Some(perm) => {
            let mut seen = vec![false; shape.len()];
            let mut out = Vec::with_capacity(perm.len());
            for &axis in perm {
                let index = usize::try_from(axis).ok().filter(|a| *a < shape.len() && !seen[*a]);
                let Some(index) = index else {
                    return Err(format!(
                        "perm {perm:?} is not a permutation of the {} axes of {}",
                        shape.len(),
                        dims_text(shape)
                    ));
                };
                seen[index] = true;
                out.push(index);
            }
            if out.len() != shape.len() {
                return Err(format!("perm {perm:?} does not match rank {}", shape.len()));
            }
            out
        }
        None => (0..shape.len()).rev().collect(),
    };
    let out: Vec<D> = perm.iter().map(|&a| shape[a].clone()).collect();
    let ints = x.ints.as_ref().and_then(|values| permute_contents(values, shape, &perm));
    Ok(vec![Value { dtype: x.dtype, shape: Some(out), ints, floats: None }])
}

/// Row-major strides of `dims`, or `None` when a size is not known.
fn strides_of(dims: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; dims.len()];
    for axis in (0..dims.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * dims[axis + 1];
    }
    strides
}

fn known_sizes(shape: &[D], count: usize) -> Option<Vec<usize>> {
    let sizes: Vec<usize> =
        shape.iter().map(|d| d.known().and_then(|v| usize::try_from(v).ok())).collect::<Option<_>>()?;
    (sizes.iter().try_fold(1usize, |acc, s| acc.checked_mul(*s)) == Some(count)).then_some(sizes)
}

/// The contents of a small tracked tensor after `Transpose` with `perm`.
fn permute_contents(values: &[D], shape: &[D], perm: &[usize]) -> Option<Vec<D>> {
    let sizes = known_sizes(shape, values.len())?;
    let strides = strides_of(&sizes);
    let out_sizes: Vec<usize> = perm.iter().map(|&a| sizes[a]).collect();
    let mut out = Vec::with_capacity(values.len());
    for flat in 0..values.len() {
        let mut rest = flat;
        let mut source = 0;
        for (axis, size) in out_sizes.iter().enumerate().rev() {
            source += (rest % size) * strides[perm[axis]];
            rest /= size;
        }
        out.push(values.get(source)?.clone());
    }
    Some(out)
}

/// The contents of a small tracked tensor after slicing `ranges` (axis, start, end, step) out of it.
fn slice_contents(values: &[D], shape: &[D], ranges: &[(usize, i64, i64, i64)]) -> Option<Vec<D>> {
    let sizes = known_sizes(shape, values.len())?;
    let mut picks: Vec<Vec<usize>> = sizes.iter().map(|&s| (0..s).collect()).collect();
    for &(axis, start, end, step) in ranges {
        let size = i64::try_from(sizes[axis]).ok()?;
        let wrap = |v: i64| if v < 0 { v.saturating_add(size) } else { v };
        let mut chosen = Vec::new();
        if step > 0 {
            let (mut at, stop) = (wrap(start).clamp(0, size), wrap(end).clamp(0, size));
            while at < stop {
                chosen.push(usize::try_from(at).ok()?);
                at = at.checked_add(step)?;
            }
        } else {
            let (mut at, stop) = (wrap(start).clamp(-1, size - 1), wrap(end).clamp(-1, size - 1));
            while at > stop {
                chosen.push(usize::try_from(at).ok()?);
                at = at.checked_add(step)?;
            }
        }
        picks[axis] = chosen;
    }
    let strides = strides_of(&sizes);
    let mut out = vec![0usize];
    for (axis, chosen) in picks.iter().enumerate() {
        let stride = strides[axis];
        out = out.iter().flat_map(|base| chosen.iter().map(move |i| base + i * stride)).collect();
        if out.len() > MAX_TRACKED_INTS {
            return None;
        }
    }
    out.iter().map(|&i| values.get(i).cloned()).collect()
}

pub(crate) fn infer_shape_op(node: &NodeProto, x: &Value) -> Result<Vec<Value>, String> {
    let Some(shape) = &x.shape else {
        return Ok(vec![Value { dtype: Some(DTYPE_INT64), shape: Some(vec![D::Unknown]), ints: None, floats: None }]);
    };
    let rank = i64::try_from(shape.len()).map_err(|_| "rank too large".to_string())?;
    let clamp = |value: i64| -> usize {
        let value = if value < 0 { value.saturating_add(rank) } else { value };
        usize::try_from(value.clamp(0, rank)).unwrap_or(0)
    };
    let start = clamp(int_attr(node, "start", 0));
    let end = clamp(int_attr(node, "end", rank));
    let slice: Vec<D> = if start < end { shape[start..end].to_vec() } else { Vec::new() };
    let len = i64::try_from(slice.len()).unwrap_or(i64::MAX);
    let ints = (slice.len() <= MAX_TRACKED_INTS).then_some(slice);
    Ok(vec![Value { dtype: Some(DTYPE_INT64), shape: Some(vec![D::Known(len)]), ints, floats: None }])
}

pub(crate) fn infer_gather(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let (Some(data), Some(indices)) = (input_at(inputs, 0), input_at(inputs, 1)) else { return Ok(Vec::new()) };
    let (Some(data_shape), Some(index_shape)) = (&data.shape, &indices.shape) else {
        return Ok(vec![Value { dtype: data.dtype, shape: None, ints: None, floats: None }]);
    };
    if data_shape.is_empty() {
        return Err("Gather needs data of rank 1 or more".to_string());
    }
    let axis = axis_index(int_attr(node, "axis", 0), data_shape.len())?;
    let mut out = data_shape[..axis].to_vec();
    out.extend(index_shape.iter().cloned());
    out.extend(data_shape[axis + 1..].iter().cloned());
    let ints = match (&data.ints, &indices.ints) {
        (Some(values), Some(picks)) if data_shape.len() == 1 => {
            let len = i64::try_from(values.len()).unwrap_or(i64::MAX);
            let mut gathered = Vec::with_capacity(picks.len());
            for pick in picks {
                let Some(pick) = pick.known() else {
                    gathered.push(D::Unknown);
                    continue;
                };
                let index = if pick < 0 { pick.checked_add(len) } else { Some(pick) };
                match index.filter(|i| (0..len).contains(i)).and_then(|i| usize::try_from(i).ok()) {
                    Some(i) => gathered.push(values[i].clone()),
                    None => return Err(format!("index {pick} is out of range for {len} values")),
                }
            }
            Some(gathered)
        }
        _ => None,
    };
    Ok(vec![Value { dtype: data.dtype, shape: Some(out), ints, floats: None }])
}

/// Axes from the attribute (older opsets) or the second input (opset 13+).
pub(crate) fn axes_of(node: &NodeProto, inputs: &[Option<Value>]) -> Option<Option<Vec<i64>>> {
    if let Some(axes) = ints_attr(node, "axes") {
        return Some(Some(axes.to_vec()));
    }
    match input_at(inputs, 1) {
        None => Some(None),
        Some(value) => value
            .ints
            .as_ref()
            .map(|ints| ints.iter().map(D::known).collect::<Option<Vec<i64>>>())
            .map(Some)
            .unwrap_or(None),
    }
}

pub(crate) fn infer_unsqueeze(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let (Some(shape), Some(Some(axes))) = (&x.shape, axes_of(node, inputs)) else {
        return Ok(vec![Value { shape: None, ..x }]);
    };
    let rank = shape.len().checked_add(axes.len()).ok_or("rank too large")?;
    let mut inserted = vec![false; rank];
    for &axis in &axes {
        let index = axis_index(axis, rank)?;
        if std::mem::replace(&mut inserted[index], true) {
            return Err(format!("axes {axes:?} repeat an axis"));
        }
    }
    let mut rest = shape.iter();
    let out: Vec<D> = inserted
        .iter()
        .map(|&new| if new { D::Known(1) } else { rest.next().cloned().unwrap_or(D::Unknown) })
        .collect();
    Ok(vec![Value { dtype: x.dtype, shape: Some(out), ints: x.ints, floats: None }])
}

pub(crate) fn infer_squeeze(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let Some(shape) = &x.shape else { return Ok(vec![x]) };
    let out = match axes_of(node, inputs) {
        Some(Some(axes)) => {
            let mut remove = vec![false; shape.len()];
            for &axis in &axes {
                let index = axis_index(axis, shape.len())?;
                if let D::Known(size) = shape[index]
                    && size != 1
                {
                    return Err(format!(
                        "cannot squeeze axis {axis} of {}: its size is {size}, not 1",
                        dims_text(shape)
                    ));
                }
                remove[index] = true;
            }
            Some(shape.iter().zip(&remove).filter(|(_, r)| !**r).map(|(d, _)| d.clone()).collect())
        }
        Some(None) if shape.iter().all(|d| matches!(d, D::Known(_))) => {
            Some(shape.iter().filter(|d| **d != D::Known(1)).cloned().collect())
        }
        _ => None,
    };
    Ok(vec![Value { dtype: x.dtype, shape: out, ints: x.ints, floats: None }])
}

/// Length of `start:end:step` over an axis of `size`, with ONNX's clamping rules.
pub(crate) fn slice_len(size: i64, start: i64, end: i64, step: i64) -> Option<i64> {
    if step == 0 {
        return None;
    }
    let wrap = |value: i64| if value < 0 { value.saturating_add(size) } else { value };
    let (start, end) = (wrap(start), wrap(end));
    let (start, end) = if step > 0 {
        (start.clamp(0, size), end.clamp(0, size))
    } else {
        (start.clamp(0, size.saturating_sub(1)), end.clamp(-1, size.saturating_sub(1)))
    };
    let span = if step > 0 { end.checked_sub(start)? } else { start.checked_sub(end)? };
    let stride = step.checked_abs()?;
    Some(if span <= 0 { 0 } else { span.checked_add(stride - 1)? / stride })
}

pub(crate) fn infer_slice(inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let (Some(shape), Some(starts), Some(ends)) =
        (&x.shape, known_ints(input_at(inputs, 1)), known_ints(input_at(inputs, 2)))
    else {
        let rank = x.shape.as_ref().map(Vec::len);
        return Ok(vec![Value { dtype: x.dtype, shape: rank.map(|r| vec![D::Unknown; r]), ints: None, floats: None }]);
    };
    let count = starts.len();
    let axes = match input_at(inputs, 3) {
        None => Some((0..i64::try_from(count).unwrap_or(0)).collect::<Vec<i64>>()),
        Some(value) => known_ints(Some(value)),
    };
    let steps = match input_at(inputs, 4) {
        None => Some(vec![1; count]),
        Some(value) => known_ints(Some(value)),
    };
    let (Some(axes), Some(steps)) = (axes, steps) else {
        return Ok(vec![Value {
            dtype: x.dtype,
            shape: Some(vec![D::Unknown; shape.len()]),
            ints: None,
            floats: None,
        }]);
    };
    if ends.len() != count || axes.len() != count || steps.len() != count {
        return Err(format!(
            "starts, ends, axes and steps have different lengths ({count}, {}, {}, {})",
            ends.len(),
            axes.len(),
            steps.len()
        ));
    }
    let mut out = shape.clone();
    let mut ranges = Vec::with_capacity(count);
    for index in 0..count {
        let axis = axis_index(axes[index], shape.len())?;
        if steps[index] == 0 {
            return Err("a slice step is 0".to_string());
        }
        let whole = steps[index] == 1 && starts[index] == 0 && ends[index] >= i64::MAX / 2;
        out[axis] = match &shape[axis] {
            D::Known(size) => slice_len(*size, starts[index], ends[index], steps[index]).map_or(D::Unknown, D::Known),
            other if whole => other.clone(),
            _ => D::Unknown,
        };
        ranges.push((axis, starts[index], ends[index], steps[index]));
    }
    // Slicing a tracked shape value (e.g. `Shape -> Slice [0:1]`) or a small constant table.
    let ints = match (&x.ints, shape.as_slice(), ranges.as_slice()) {
        (Some(values), [_], [(0, start, end, 1)]) => {
            let len = i64::try_from(values.len()).unwrap_or(i64::MAX);
            let from = if *start < 0 { start.saturating_add(len) } else { *start }.clamp(0, len);
            let to = if *end < 0 { end.saturating_add(len) } else { *end }.clamp(0, len);
            let (from, to) = (usize::try_from(from).unwrap_or(0), usize::try_from(to).unwrap_or(0));
            Some(if from < to { values[from..to].to_vec() } else { Vec::new() })
        }
        (Some(values), _, _) => slice_contents(values, shape, &ranges),
        _ => None,
    };
    Ok(vec![Value { dtype: x.dtype, shape: Some(out), ints, floats: None }])
}

pub(crate) fn infer_split(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let outputs = node.output.len();
    let Some(shape) = &x.shape else {
        return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None, floats: None }; outputs]);
    };
    let axis = axis_index(int_attr(node, "axis", 0), shape.len())?;
    let sizes: Option<Vec<i64>> = match ints_attr(node, "split").filter(|s| !s.is_empty()) {
        Some(split) => Some(split.to_vec()),
        None => match input_at(inputs, 1) {
            Some(value) => known_ints(Some(value)),
            None => None,
        },
    };
    let dim = shape[axis].known();
    let sizes: Vec<D> = match (sizes, dim) {
        (Some(sizes), _) if sizes.len() != outputs => {
            return Err(format!("split has {} sizes for {outputs} outputs", sizes.len()));
        }
        (Some(sizes), Some(dim)) => {
            let total = sizes.iter().try_fold(0i64, |acc, s| acc.checked_add(*s));
            if total != Some(dim) || sizes.iter().any(|s| *s < 0) {
                return Err(format!("split sizes {sizes:?} do not add up to axis {axis} of {}", dims_text(shape)));
            }
            sizes.into_iter().map(D::Known).collect()
        }
        (Some(sizes), None) => sizes.into_iter().map(D::Known).collect(),
        (None, Some(dim)) if outputs > 0 => {
            let parts = i64::try_from(outputs).unwrap_or(i64::MAX);
            let chunk = dim.checked_add(parts - 1).map_or(0, |v| v / parts);
            (0..parts).map(|i| D::Known(dim.saturating_sub(chunk.saturating_mul(i)).clamp(0, chunk))).collect()
        }
        _ => vec![D::Unknown; outputs],
    };
    Ok(sizes
        .into_iter()
        .map(|size| {
            let mut part = shape.clone();
            part[axis] = size;
            Value::with_shape(x.dtype, part)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::{int, int_list, ints, known, node, shape_of, tensor};
    use super::*;

    #[test]
    fn slice_lengths_follow_onnx_clamping() {
        assert_eq!(slice_len(10, 0, 1, 1), Some(1));
        assert_eq!(slice_len(10, -3, i64::MAX, 1), Some(3));
        assert_eq!(slice_len(10, i64::MAX, 0, -1), Some(9));
        assert_eq!(slice_len(10, 0, 10, 3), Some(4));
        assert_eq!(slice_len(10, 5, 2, 1), Some(0));
        assert_eq!(slice_len(10, i64::MIN, i64::MAX, i64::MIN), None);
    }

    #[test]
    fn concat_adds_the_axis_and_rejects_other_axes_that_differ() {
        let concat = node("Concat", vec![int("axis", 1)]);
        let out = infer_concat(&concat, &[tensor(&[8, 3, 4]), tensor(&[8, 5, 4])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 8, 4])));
        assert!(infer_concat(&concat, &[tensor(&[8, 3, 4]), tensor(&[1, 5, 4])]).unwrap_err().contains("axis 0"));
        assert!(infer_concat(&concat, &[tensor(&[8, 3]), tensor(&[8, 3, 4])]).unwrap_err().contains("ranks"));
    }

    #[test]
    fn reshape_resolves_minus_one_and_zero_and_rejects_wrong_element_counts() {
        let reshape = node("Reshape", vec![]);
        let out = infer_reshape(&reshape, &[tensor(&[8, 16, 4]), ints(&[0, -1])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 64])));
        let err = infer_reshape(&reshape, &[tensor(&[8, 16]), ints(&[1, 16, -1, 3])]).unwrap_err();
        assert!(err.contains("not a multiple"), "{err}");
        assert!(infer_reshape(&reshape, &[tensor(&[8, 16]), ints(&[4, 16])]).is_err());
        assert!(infer_reshape(&reshape, &[tensor(&[8, 16]), ints(&[-1, -1])]).is_err());
    }

    #[test]
    fn flatten_and_transpose_move_axes() {
        let out = infer_flatten(&node("Flatten", vec![int("axis", 2)]), tensor(&[8, 3, 4, 5]).as_ref().unwrap());
        assert_eq!(shape_of(&out.unwrap()), Some(known(&[24, 20])));
        let transpose = node("Transpose", vec![int_list("perm", &[0, 2, 1])]);
        let out = infer_transpose(&transpose, tensor(&[8, 3, 4]).as_ref().unwrap()).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 4, 3])));
        assert!(infer_transpose(&transpose, tensor(&[8, 3]).as_ref().unwrap()).is_err());
    }

    #[test]
    fn shape_then_gather_tracks_the_batch_size_by_value() {
        let shape = infer_shape_op(&node("Shape", vec![]), tensor(&[8, 3, 4]).as_ref().unwrap()).unwrap();
        assert_eq!(shape[0].ints, Some(known(&[8, 3, 4])));
        let picked = infer_gather(&node("Gather", vec![]), &[Some(shape[0].clone()), ints(&[0])]).unwrap();
        assert_eq!(picked[0].ints, Some(known(&[8])));
        assert!(infer_gather(&node("Gather", vec![]), &[Some(shape[0].clone()), ints(&[5])]).is_err());
    }

    #[test]
    fn squeeze_refuses_an_axis_that_is_not_one_and_unsqueeze_inserts_ones() {
        let out = infer_unsqueeze(&node("Unsqueeze", vec![]), &[tensor(&[8, 3]), ints(&[0, 3])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[1, 8, 3, 1])));
        let out = infer_squeeze(&node("Squeeze", vec![]), &[tensor(&[8, 1, 3]), ints(&[1])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 3])));
        assert!(infer_squeeze(&node("Squeeze", vec![]), &[tensor(&[8, 1, 3]), ints(&[0])]).is_err());
    }

    #[test]
    fn small_integer_tables_are_followed_through_reshape_slice_and_transpose() {
        // The padding table exporters build: [[0, 64], [0, 0]] reversed by rows, then transposed.
        let table = Some(Value { shape: Some(known(&[2, 2])), ..ints(&[0, 64, 0, 0]).unwrap() });
        let reversed = infer_slice(&[table, ints(&[-1]), ints(&[-i64::MAX]), ints(&[0]), ints(&[-1])]).unwrap();
        assert_eq!(reversed[0].ints, Some(known(&[0, 0, 0, 64])));
        let transpose = node("Transpose", vec![int_list("perm", &[1, 0])]);
        let flipped = Value { shape: Some(known(&[2, 2])), ..ints(&[1, 2, 3, 4]).unwrap() };
        assert_eq!(infer_transpose(&transpose, &flipped).unwrap()[0].ints, Some(known(&[1, 3, 2, 4])));
        let flat = infer_reshape(&node("Reshape", vec![]), &[Some(flipped), ints(&[-1])]).unwrap();
        assert_eq!((flat[0].shape.clone(), flat[0].ints.clone()), (Some(known(&[4])), Some(known(&[1, 2, 3, 4]))));
    }

    #[test]
    fn a_whole_slice_keeps_a_symbolic_size() {
        let x = Some(Value::with_shape(Some(1), vec![D::Sym("n".into()), D::Known(10)]));
        let out = infer_slice(&[x, ints(&[0]), ints(&[i64::MAX]), ints(&[0])]).unwrap();
        assert_eq!(shape_of(&out), Some(vec![D::Sym("n".into()), D::Known(10)]));
    }

    #[test]
    fn slice_and_split_compute_part_sizes() {
        let out = infer_slice(&[tensor(&[8, 10]), ints(&[2]), ints(&[-1]), ints(&[1])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 7])));
        let mut split = node("Split", vec![int("axis", 1)]);
        split.output = vec!["a".into(), "b".into()];
        let parts = infer_split(&split, &[tensor(&[8, 10]), ints(&[4, 6])]).unwrap();
        assert_eq!(
            parts.iter().map(|p| p.shape.clone()).collect::<Vec<_>>(),
            [Some(known(&[8, 4])), Some(known(&[8, 6]))]
        );
        assert!(infer_split(&split, &[tensor(&[8, 10]), ints(&[4, 4])]).unwrap_err().contains("do not add up"));
    }
}
