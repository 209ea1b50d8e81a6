//! What inference knows about one value: dtype, shape (known, symbolic or unknown dims) and, for small
//! integer tensors, their contents, so shape computations (`Shape -> Gather -> Concat -> Reshape`) resolve.

use super::super::onnx_proto::{DTYPE_FLOAT, DTYPE_INT32, DTYPE_INT64, TensorProto};
use super::super::types::{Dim, shape_text};

/// Integer tensors up to this many elements are tracked by value.
pub(crate) const MAX_TRACKED_INTS: usize = 64;
/// Ranks above this are not reasoned about symbolically (keeps the work linear on hostile input).
pub(crate) const MAX_SYMBOLIC_RANK: usize = 64;

/// A dimension or small integer during inference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum D {
    Known(i64),
    Sym(String),
    Unknown,
}

impl D {
    pub(crate) fn known(&self) -> Option<i64> {
        match self {
            D::Known(value) => Some(*value),
            _ => None,
        }
    }

    pub(crate) fn to_dim(&self) -> Dim {
        match self {
            D::Known(value) if *value >= 0 => Dim::Fixed(value.unsigned_abs()),
            D::Sym(name) => Dim::Symbolic(name.clone()),
            _ => Dim::Unknown,
        }
    }
}

pub(crate) fn dims_text(dims: &[D]) -> String {
    shape_text(Some(&dims.iter().map(D::to_dim).collect::<Vec<_>>()))
}

/// What is known about one value.
#[derive(Clone, Debug, Default)]
pub(crate) struct Value {
    pub(crate) dtype: Option<i32>,
    pub(crate) shape: Option<Vec<D>>,
    /// Contents of a small integer tensor, flattened.
    pub(crate) ints: Option<Vec<D>>,
    /// Contents of a small float tensor (`Resize` scales), flattened.
    pub(crate) floats: Option<Vec<f64>>,
}

impl Value {
    pub(crate) fn with_shape(dtype: Option<i32>, shape: Vec<D>) -> Value {
        Value { dtype, shape: Some(shape), ints: None, floats: None }
    }
}

pub(crate) fn constant_value(tensor: &TensorProto) -> Value {
    let shape: Vec<D> = tensor.dims.iter().map(|&d| if d >= 0 { D::Known(d) } else { D::Unknown }).collect();
    let count = tensor.dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?));
    let ints = match (tensor.data_type, count) {
        (DTYPE_INT64 | DTYPE_INT32, Some(count)) if count <= MAX_TRACKED_INTS && tensor.data_location == 0 => {
            integer_contents(tensor, count)
        }
        _ => None,
    };
    let floats = match (tensor.data_type, count) {
        (DTYPE_FLOAT, Some(count)) if count <= MAX_TRACKED_INTS && tensor.data_location == 0 => {
            float_contents(tensor, count)
        }
        _ => None,
    };
    Value { dtype: Some(tensor.data_type), shape: Some(shape), ints, floats }
}

fn float_contents(tensor: &TensorProto, count: usize) -> Option<Vec<f64>> {
    let values: Vec<f64> = if !tensor.raw_data.is_empty() {
        if tensor.raw_data.len() != count.checked_mul(4)? {
            return None;
        }
        tensor.raw_data.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()
    } else {
        tensor.float_data.iter().map(|&v| f64::from(v)).collect()
    };
    (values.len() == count).then_some(values)
}

pub(crate) fn integer_contents(tensor: &TensorProto, count: usize) -> Option<Vec<D>> {
    let values: Vec<i64> = if !tensor.raw_data.is_empty() {
        let width = if tensor.data_type == DTYPE_INT64 { 8 } else { 4 };
        if tensor.raw_data.len() != count.checked_mul(width)? {
            return None;
        }
        tensor
            .raw_data
            .chunks_exact(width)
            .map(|chunk| {
                let mut bytes = [0u8; 8];
                bytes[..width].copy_from_slice(chunk);
                if width == 4 {
                    i64::from(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
                } else {
                    i64::from_le_bytes(bytes)
                }
            })
            .collect()
    } else if tensor.data_type == DTYPE_INT64 {
        tensor.int64_data.clone()
    } else {
        tensor.int32_data.iter().map(|&v| i64::from(v)).collect()
    };
    (values.len() == count).then(|| values.into_iter().map(D::Known).collect())
}

pub(crate) fn input_at(inputs: &[Option<Value>], index: usize) -> Option<&Value> {
    inputs.get(index).and_then(Option::as_ref)
}

pub(crate) fn known_ints(value: Option<&Value>) -> Option<Vec<i64>> {
    value?.ints.as_ref()?.iter().map(D::known).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn small_integer_constants_keep_their_values_from_raw_or_typed_data() {
        let raw = TensorProto {
            dims: vec![2],
            data_type: DTYPE_INT64,
            raw_data: Bytes::from([8i64.to_le_bytes(), (-1i64).to_le_bytes()].concat()),
            ..TensorProto::default()
        };
        assert_eq!(constant_value(&raw).ints, Some(vec![D::Known(8), D::Known(-1)]));
        let typed =
            TensorProto { dims: vec![1], data_type: DTYPE_INT32, int32_data: vec![3], ..TensorProto::default() };
        assert_eq!(constant_value(&typed).ints, Some(vec![D::Known(3)]));
        let short =
            TensorProto { dims: vec![3], data_type: DTYPE_INT64, int64_data: vec![1], ..TensorProto::default() };
        assert_eq!(constant_value(&short).ints, None, "contents that do not match the dims are not trusted");
    }
}
