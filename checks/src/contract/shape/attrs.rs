//! Reading node attributes and normalising axes, shared by every rule.

use super::super::onnx_proto::{AttributeProto, NodeProto};

pub(crate) fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub(crate) fn int_attr(node: &NodeProto, name: &str, default: i64) -> i64 {
    attribute(node, name).map_or(default, |a| a.i)
}

pub(crate) fn ints_attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    attribute(node, name).map(|a| a.ints.as_slice())
}

pub(crate) fn string_attr(node: &NodeProto, name: &str) -> Option<String> {
    attribute(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// Normalises a possibly negative axis against `rank`.
pub(crate) fn axis_index(axis: i64, rank: usize) -> Result<usize, String> {
    let rank_i = i64::try_from(rank).map_err(|_| "rank too large".to_string())?;
    let normalised = if axis < 0 { axis.checked_add(rank_i) } else { Some(axis) };
    match normalised {
        Some(value) if (0..rank_i).contains(&value) => usize::try_from(value).map_err(|_| "axis too large".to_string()),
        _ => Err(format!("axis {axis} is out of range for rank {rank}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn negative_axes_count_from_the_end_and_out_of_range_ones_are_errors() {
        assert_eq!(axis_index(-1, 4).unwrap(), 3);
        assert_eq!(axis_index(0, 4).unwrap(), 0);
        assert!(axis_index(4, 4).unwrap_err().contains("out of range"));
        assert!(axis_index(i64::MIN, 4).is_err());
    }
}
