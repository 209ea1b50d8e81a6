//! Matrix products: `MatMul` (with batch broadcasting) and `Gemm` (transposes and bias).

use super::super::super::onnx_proto::NodeProto;
use super::super::attrs::{int_attr, string_attr};
use super::super::value::{D, Value, dims_text, input_at};
use super::elementwise::{broadcast, check_same_dtype};

pub(crate) fn infer_matmul(inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let (Some(a), Some(b)) = (input_at(inputs, 0), input_at(inputs, 1)) else { return Ok(Vec::new()) };
    check_same_dtype(&[a, b])?;
    let (Some(a_shape), Some(b_shape)) = (&a.shape, &b.shape) else {
        return Ok(vec![Value { dtype: a.dtype, shape: None, ints: None, floats: None }]);
    };
    if a_shape.is_empty() || b_shape.is_empty() {
        return Err("MatMul inputs must have rank 1 or more".to_string());
    }
    let a_full: Vec<D> = if a_shape.len() == 1 { vec![D::Known(1), a_shape[0].clone()] } else { a_shape.clone() };
    let b_full: Vec<D> = if b_shape.len() == 1 { vec![b_shape[0].clone(), D::Known(1)] } else { b_shape.clone() };
    let (a_batch, a_mat) = a_full.split_at(a_full.len() - 2);
    let (b_batch, b_mat) = b_full.split_at(b_full.len() - 2);
    if let (D::Known(k1), D::Known(k2)) = (&a_mat[1], &b_mat[0])
        && k1 != k2
    {
        return Err(format!(
            "inner dimensions do not match: {} x {} ({k1} vs {k2})",
            dims_text(a_shape),
            dims_text(b_shape)
        ));
    }
    let mut out = broadcast(&[a_batch, b_batch]).map_err(|e| format!("batch dimensions: {e}"))?;
    if a_shape.len() > 1 {
        out.push(a_mat[0].clone());
    }
    if b_shape.len() > 1 {
        out.push(b_mat[1].clone());
    }
    Ok(vec![Value::with_shape(a.dtype, out)])
}

pub(crate) fn infer_gemm(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let (Some(a), Some(b)) = (input_at(inputs, 0), input_at(inputs, 1)) else { return Ok(Vec::new()) };
    check_same_dtype(&[a, b])?;
    let (Some(a_shape), Some(b_shape)) = (&a.shape, &b.shape) else {
        return Ok(vec![Value { dtype: a.dtype, shape: None, ints: None, floats: None }]);
    };
    if a_shape.len() != 2 || b_shape.len() != 2 {
        return Err(format!("Gemm needs two matrices, got {} and {}", dims_text(a_shape), dims_text(b_shape)));
    }
    let (m, k1) =
        if int_attr(node, "transA", 0) != 0 { (&a_shape[1], &a_shape[0]) } else { (&a_shape[0], &a_shape[1]) };
    let (k2, n) =
        if int_attr(node, "transB", 0) != 0 { (&b_shape[1], &b_shape[0]) } else { (&b_shape[0], &b_shape[1]) };
    if let (D::Known(k1), D::Known(k2)) = (k1, k2)
        && k1 != k2
    {
        return Err(format!(
            "inner dimensions do not match: A {} and B {} give {k1} vs {k2}",
            dims_text(a_shape),
            dims_text(b_shape)
        ));
    }
    let out = vec![m.clone(), n.clone()];
    if let Some(c_shape) = input_at(inputs, 2).and_then(|c| c.shape.as_ref()) {
        let merged = broadcast(&[out.as_slice(), c_shape.as_slice()]).map_err(|e| format!("bias C: {e}"))?;
        if c_shape.len() > 2
            || merged.iter().zip(&out).any(|(m, o)| matches!((m, o), (D::Known(a), D::Known(b)) if a != b))
        {
            return Err(format!("bias C {} does not broadcast to the output {}", dims_text(c_shape), dims_text(&out)));
        }
    }
    Ok(vec![Value::with_shape(a.dtype, out)])
}

/// `Einsum`: every label must have one size across the operands; the output follows the equation
/// (explicit `->`, or implicit: the labels used once, in alphabetical order). `...` broadcasts.
pub(crate) fn infer_einsum(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let Some(equation) = string_attr(node, "equation") else { return Err("Einsum has no equation".to_string()) };
    let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match equation.split_once("->") {
        Some((lhs, rhs)) => (lhs, Some(rhs)),
        None => (equation.as_str(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    let present: Vec<Option<&Value>> = inputs.iter().map(Option::as_ref).collect();
    if terms.len() != present.len() {
        return Err(format!("equation \"{equation}\" has {} operands but the node has {}", terms.len(), present.len()));
    }
    let dtype = present.first().copied().flatten().and_then(|v| v.dtype);
    let mut sizes: Vec<(char, D)> = Vec::new();
    let mut ellipsis: Option<Vec<D>> = None;
    let mut counts: Vec<(char, usize)> = Vec::new();
    for (term, value) in terms.iter().zip(&present) {
        let Some(shape) = value.and_then(|v| v.shape.as_ref()) else {
            return Ok(vec![Value { dtype, shape: None, ints: None, floats: None }]);
        };
        let labels: Vec<char> = term.replace("...", "*").chars().collect();
        if labels.iter().any(|c| !(c.is_ascii_alphabetic() || *c == '*')) {
            return Err(format!("equation term \"{term}\" has characters that are not labels"));
        }
        let named = labels.iter().filter(|c| **c != '*').count();
        let has_ellipsis = labels.contains(&'*');
        if (!has_ellipsis && named != shape.len()) || named > shape.len() {
            return Err(format!(
                "term \"{term}\" has {named} labels but its operand {} has rank {}",
                dims_text(shape),
                shape.len()
            ));
        }
        let mut axis = 0;
        for label in labels {
            if label == '*' {
                let span = shape.len() - named;
                let part = &shape[axis..axis + span];
                ellipsis = Some(match ellipsis.take() {
                    Some(previous) => broadcast(&[previous.as_slice(), part])?,
                    None => part.to_vec(),
                });
                axis += span;
                continue;
            }
            let dim = shape[axis].clone();
            match sizes.iter_mut().find(|(l, _)| *l == label) {
                Some((_, known)) => match (&*known, &dim) {
                    (D::Known(a), D::Known(b)) if a != b && *a != 1 && *b != 1 => {
                        return Err(format!("label '{label}' is {a} in one operand and {b} in another"));
                    }
                    (D::Known(1) | D::Unknown, _) => *known = dim,
                    _ => {}
                },
                None => sizes.push((label, dim)),
            }
            match counts.iter_mut().find(|(l, _)| *l == label) {
                Some((_, count)) => *count += 1,
                None => counts.push((label, 1)),
            }
            axis += 1;
        }
    }
    let output: Vec<char> = match rhs {
        Some(rhs) => rhs.replace("...", "*").chars().collect(),
        None => {
            let mut once: Vec<char> = counts.iter().filter(|(_, n)| *n == 1).map(|(l, _)| *l).collect();
            once.sort_unstable();
            if ellipsis.is_some() {
                once.insert(0, '*');
            }
            once
        }
    };
    let mut out = Vec::new();
    for label in output {
        if label == '*' {
            out.extend(ellipsis.clone().unwrap_or_default());
            continue;
        }
        match sizes.iter().find(|(l, _)| *l == label) {
            Some((_, dim)) => out.push(dim.clone()),
            None => return Err(format!("output label '{label}' appears in no operand")),
        }
    }
    Ok(vec![Value::with_shape(dtype, out)])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::{int, known, node, shape_of, tensor};
    use super::*;

    #[test]
    fn matmul_broadcasts_batch_axes_and_checks_the_inner_dimension() {
        let out = infer_matmul(&[tensor(&[8, 4, 16, 32]), tensor(&[32, 64])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 4, 16, 64])));
        assert!(infer_matmul(&[tensor(&[8, 16, 32]), tensor(&[16, 64])]).unwrap_err().contains("inner"));
        assert_eq!(shape_of(&infer_matmul(&[tensor(&[32]), tensor(&[32, 5])]).unwrap()), Some(known(&[5])));
    }

    #[test]
    fn einsum_checks_each_label_and_builds_the_output() {
        let attention = node("Einsum", vec![super::super::test_support::text("equation", "bhqd,bhkd->bhqk")]);
        let out = infer_einsum(&attention, &[tensor(&[8, 2, 6, 4]), tensor(&[8, 2, 7, 4])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 2, 6, 7])));
        assert!(infer_einsum(&attention, &[tensor(&[8, 2, 6, 4]), tensor(&[8, 2, 7, 5])]).unwrap_err().contains("'d'"));
        let implicit = node("Einsum", vec![super::super::test_support::text("equation", "...ij,jk")]);
        let out = infer_einsum(&implicit, &[tensor(&[8, 3, 4]), tensor(&[4, 5])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 3, 5])));
    }

    #[test]
    fn gemm_follows_transposes_and_checks_the_bias() {
        let gemm = node("Gemm", vec![int("transB", 1)]);
        let out = infer_gemm(&gemm, &[tensor(&[8, 32]), tensor(&[10, 32]), tensor(&[10])]).unwrap();
        assert_eq!(shape_of(&out), Some(known(&[8, 10])));
        assert!(infer_gemm(&gemm, &[tensor(&[8, 32]), tensor(&[32, 10])]).is_err());
        assert!(infer_gemm(&gemm, &[tensor(&[8, 32]), tensor(&[10, 32]), tensor(&[7])]).is_err());
    }
}
