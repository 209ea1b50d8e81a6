//! Elementwise operators: numpy-style broadcasting (`Add`, `Mul`, `Where`, comparisons, ...), matching
//! dtypes, and integer arithmetic on tracked shape values.

use super::super::super::onnx_proto::dtype_name;
use super::super::value::{D, Value, dims_text};

pub(crate) fn check_same_dtype(values: &[&Value]) -> Result<(), String> {
    let known: Vec<i32> = values.iter().filter_map(|v| v.dtype).collect();
    if let Some(first) = known.first()
        && let Some(other) = known.iter().find(|d| *d != first)
    {
        return Err(format!("inputs have different dtypes: {} and {}", dtype_name(*first), dtype_name(*other)));
    }
    Ok(())
}

pub(crate) fn broadcast_values(values: &[&Value]) -> Result<Option<Vec<D>>, String> {
    let shapes: Option<Vec<&[D]>> = values.iter().map(|v| v.shape.as_deref()).collect();
    match shapes {
        Some(shapes) if !shapes.is_empty() => broadcast(&shapes).map(Some),
        _ => Ok(None),
    }
}

/// Numpy-style multidirectional broadcasting; an error only when two known sizes clash.
pub(crate) fn broadcast(shapes: &[&[D]]) -> Result<Vec<D>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rank);
    for position in 0..rank {
        let mut known: Option<i64> = None;
        let mut symbolic: Option<&str> = None;
        let mut mixed_symbols = false;
        let mut unknown = false;
        for shape in shapes {
            let Some(offset) = (position + shape.len()).checked_sub(rank) else { continue };
            match &shape[offset] {
                D::Known(1) => {}
                D::Known(size) => match known {
                    Some(previous) if previous != *size => {
                        let texts: Vec<String> = shapes.iter().map(|s| dims_text(s)).collect();
                        return Err(format!(
                            "shapes {} do not broadcast: axis {position} is {previous} in one and {size} in another",
                            texts.join(" and ")
                        ));
                    }
                    _ => known = Some(*size),
                },
                D::Sym(name) => match symbolic {
                    Some(previous) if previous != name => mixed_symbols = true,
                    _ => symbolic = Some(name),
                },
                D::Unknown => unknown = true,
            }
        }
        out.push(match (known, symbolic) {
            (Some(size), _) => D::Known(size),
            (None, Some(name)) if !mixed_symbols && !unknown => D::Sym(name.to_string()),
            (None, None) if !unknown => D::Known(1),
            _ => D::Unknown,
        });
    }
    Ok(out)
}

/// Integer arithmetic on tracked shape values (`Mul`, `Add`, ... of two small int tensors).
pub(crate) fn elementwise_ints(op: &str, values: &[&Value]) -> Option<Vec<D>> {
    let [a, b] = values else { return None };
    let (a, b) = (a.ints.as_ref()?, b.ints.as_ref()?);
    let len = a.len().max(b.len());
    if !(a.len() == b.len() || a.len() == 1 || b.len() == 1) {
        return None;
    }
    (0..len)
        .map(|i| {
            let (p, q) = (a.get(i).or(a.first())?, b.get(i).or(b.first())?);
            if op == "Equal" && matches!(p, D::Sym(_)) && p == q {
                return Some(D::Known(1));
            }
            let (x, y) = (p.known(), q.known());
            Some(match (x, y) {
                (Some(x), Some(y)) => match op {
                    "Add" => x.checked_add(y).map_or(D::Unknown, D::Known),
                    "Sub" => x.checked_sub(y).map_or(D::Unknown, D::Known),
                    "Mul" => x.checked_mul(y).map_or(D::Unknown, D::Known),
                    "Div" => x.checked_div(y).map_or(D::Unknown, D::Known),
                    "Max" => D::Known(x.max(y)),
                    "Min" => D::Known(x.min(y)),
                    "Equal" => D::Known(i64::from(x == y)),
                    "Less" => D::Known(i64::from(x < y)),
                    "Greater" => D::Known(i64::from(x > y)),
                    "LessOrEqual" => D::Known(i64::from(x <= y)),
                    "GreaterOrEqual" => D::Known(i64::from(x >= y)),
                    "And" => D::Known(i64::from(x != 0 && y != 0)),
                    "Or" => D::Known(i64::from(x != 0 || y != 0)),
                    _ => D::Unknown,
                },
                _ => D::Unknown,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::super::value::D;
    use super::super::test_support::known;
    use super::*;

    #[test]
    fn broadcasting_accepts_ones_and_rejects_clashing_sizes() {
        assert_eq!(broadcast(&[&known(&[8, 16]), &known(&[1, 16])]).unwrap(), known(&[8, 16]));
        assert_eq!(broadcast(&[&known(&[8, 1, 4]), &known(&[3, 1])]).unwrap(), known(&[8, 3, 4]));
        assert!(broadcast(&[&known(&[8, 16]), &known(&[1, 32])]).is_err());
    }

    #[test]
    fn symbolic_dims_never_produce_a_false_mismatch() {
        let batch = vec![D::Sym("batch".into()), D::Known(16)];
        assert_eq!(broadcast(&[&batch, &known(&[4, 16])]).unwrap(), known(&[4, 16]));
        assert_eq!(broadcast(&[&batch, &batch]).unwrap(), batch);
    }

    #[test]
    fn arithmetic_inputs_of_different_dtypes_are_a_mismatch() {
        let float = Value::with_shape(Some(1), known(&[2]));
        let half = Value::with_shape(Some(10), known(&[2]));
        assert!(check_same_dtype(&[&float, &float]).is_ok());
        assert!(check_same_dtype(&[&float, &half]).unwrap_err().contains("float32 and float16"));
    }

    #[test]
    fn shape_arithmetic_is_followed_by_value() {
        let a = Value { ints: Some(known(&[8, 16])), ..Value::default() };
        let b = Value { ints: Some(known(&[2])), ..Value::default() };
        assert_eq!(elementwise_ints("Mul", &[&a, &b]), Some(known(&[16, 32])));
        assert_eq!(elementwise_ints("Div", &[&a, &b]), Some(known(&[4, 8])));
        assert_eq!(elementwise_ints("Pow", &[&a, &b]), Some(vec![D::Unknown, D::Unknown]));
        assert_eq!(elementwise_ints("Equal", &[&a, &b]), Some(known(&[0, 0])));
        let batch = Value { ints: Some(vec![D::Sym("n".into())]), ..Value::default() };
        assert_eq!(elementwise_ints("Equal", &[&batch, &batch]), Some(known(&[1])), "a size always equals itself");
    }
}
