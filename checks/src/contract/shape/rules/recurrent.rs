//! Recurrent operators: `LSTM`, `GRU`, `RNN` (and `com.microsoft` `DynamicQuantizeLSTM`, whose weights
//! are stored transposed). The weights must agree with `hidden_size`, the direction count and the input
//! size; the initial states must be `[directions, batch, hidden]` (`[batch, directions, hidden]` with
//! `layout = 1`) for the same batch as the sequence.

use super::super::super::onnx_proto::NodeProto;
use super::super::attrs::{attribute, int_attr, string_attr};
use super::super::value::{D, Value, dims_text, input_at};

/// Says where `shape` disagrees with `expected` (only known sizes can disagree).
fn expect(what: &str, shape: &[D], expected: &[D]) -> Result<(), String> {
    if shape.len() != expected.len() {
        return Err(format!(
            "{what} {} should have rank {} ({})",
            dims_text(shape),
            expected.len(),
            dims_text(expected)
        ));
    }
    for (axis, (got, want)) in shape.iter().zip(expected).enumerate() {
        if let (D::Known(a), D::Known(b)) = (got, want)
            && a != b
        {
            return Err(format!(
                "{what} {} should be {} (axis {axis} is {a}, expected {b})",
                dims_text(shape),
                dims_text(expected)
            ));
        }
    }
    Ok(())
}

fn times(size: &D, factor: i64) -> D {
    size.known().and_then(|v| v.checked_mul(factor)).map_or(D::Unknown, D::Known)
}

pub(crate) fn infer_recurrent(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let (gates, transposed) = match node.op_type.as_str() {
        "LSTM" => (4, false),
        "DynamicQuantizeLSTM" => (4, true),
        "GRU" => (3, false),
        _ => (1, false),
    };
    let directions = match string_attr(node, "direction").as_deref() {
        Some("bidirectional") => 2,
        Some("forward" | "reverse") | None => 1,
        Some(other) => return Err(format!("direction \"{other}\" is not forward, reverse or bidirectional")),
    };
    let layout = int_attr(node, "layout", 0);
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let unknown_x = [D::Unknown, D::Unknown, D::Unknown];
    let x_dims: &[D] = x.shape.as_deref().unwrap_or(&unknown_x);
    let [first, second, input_size] = x_dims else {
        return Err(format!("the sequence input X must have rank 3, got {}", dims_text(x_dims)));
    };
    let (seq, batch) = if layout == 0 { (first, second) } else { (second, first) };
    let weight_shape = input_at(inputs, 1).and_then(|v| v.shape.clone());
    let hidden = match attribute(node, "hidden_size") {
        Some(attr) if attr.i > 0 => D::Known(attr.i),
        Some(attr) => return Err(format!("hidden_size {} is not a positive size", attr.i)),
        None => weight_shape
            .as_ref()
            .and_then(|w| w.get(if transposed { 2 } else { 1 }))
            .and_then(D::known)
            .map_or(D::Unknown, |rows| D::Known(rows / gates)),
    };
    let dirs = D::Known(directions);
    let gate_rows = times(&hidden, gates);
    if let Some(w) = &weight_shape {
        let expected = if transposed {
            [dirs.clone(), input_size.clone(), gate_rows.clone()]
        } else {
            [dirs.clone(), gate_rows.clone(), input_size.clone()]
        };
        expect(&format!("weight W (hidden_size {})", dims_text(std::slice::from_ref(&hidden))), w, &expected)?;
    }
    if let Some(r) = input_at(inputs, 2).and_then(|v| v.shape.as_ref()) {
        let expected = if transposed {
            [dirs.clone(), hidden.clone(), gate_rows.clone()]
        } else {
            [dirs.clone(), gate_rows.clone(), hidden.clone()]
        };
        expect("recurrence weight R", r, &expected)?;
    }
    if !transposed && let Some(b) = input_at(inputs, 3).and_then(|v| v.shape.as_ref()) {
        expect("bias B", b, &[dirs.clone(), times(&hidden, 2 * gates)])?;
    }
    let state = if layout == 0 {
        vec![dirs.clone(), batch.clone(), hidden.clone()]
    } else {
        vec![batch.clone(), dirs.clone(), hidden.clone()]
    };
    let state_inputs: &[usize] = if gates == 4 { &[5, 6] } else { &[5] };
    for &position in state_inputs {
        if let Some(initial) = input_at(inputs, position).and_then(|v| v.shape.as_ref()) {
            let what = if position == 5 { "initial_h" } else { "initial_c" };
            expect(what, initial, &state)?;
        }
    }
    let sequence = if layout == 0 {
        vec![seq.clone(), dirs.clone(), batch.clone(), hidden.clone()]
    } else {
        vec![batch.clone(), seq.clone(), dirs.clone(), hidden.clone()]
    };
    if x.shape.is_none() {
        // The weights were checked; without the sequence's shape the outputs are unknown.
        return Ok(vec![Value { dtype: x.dtype, ..Value::default() }; if gates == 4 { 3 } else { 2 }]);
    }
    let mut outputs = vec![Value::with_shape(x.dtype, sequence), Value::with_shape(x.dtype, state.clone())];
    if gates == 4 {
        outputs.push(Value::with_shape(x.dtype, state));
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::{int, known, node, tensor, text};
    use super::*;

    fn lstm(hidden: i64) -> NodeProto {
        node("LSTM", vec![int("hidden_size", hidden)])
    }

    #[test]
    fn lstm_outputs_follow_sequence_batch_and_hidden_size() {
        let inputs =
            [tensor(&[5, 8, 4]), tensor(&[1, 32, 4]), tensor(&[1, 32, 8]), tensor(&[1, 64]), None, tensor(&[1, 8, 8])];
        let out = infer_recurrent(&lstm(8), &inputs).unwrap();
        assert_eq!(out[0].shape, Some(known(&[5, 1, 8, 8])));
        assert_eq!(out[1].shape, Some(known(&[1, 8, 8])));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_hidden_size_that_disagrees_with_the_weights_is_a_mismatch() {
        let inputs = [tensor(&[5, 8, 4]), tensor(&[1, 32, 4]), tensor(&[1, 32, 8])];
        let err = infer_recurrent(&lstm(9), &inputs).unwrap_err();
        assert!(err.contains("weight W"), "{err}");
    }

    #[test]
    fn an_initial_state_for_another_batch_is_a_mismatch() {
        let inputs = [tensor(&[5, 8, 4]), tensor(&[1, 32, 4]), tensor(&[1, 32, 8]), None, None, tensor(&[1, 1, 8])];
        assert!(infer_recurrent(&lstm(8), &inputs).unwrap_err().contains("initial_h"));
    }

    #[test]
    fn gru_batch_first_and_bidirectional_layouts() {
        let gru = node("GRU", vec![int("hidden_size", 6), int("layout", 1), text("direction", "bidirectional")]);
        let out = infer_recurrent(&gru, &[tensor(&[8, 5, 4]), tensor(&[2, 18, 4]), tensor(&[2, 18, 6])]).unwrap();
        assert_eq!(out[0].shape, Some(known(&[8, 5, 2, 6])));
        assert_eq!(out[1].shape, Some(known(&[8, 2, 6])));
        assert!(infer_recurrent(&gru, &[tensor(&[8, 5, 4]), tensor(&[1, 18, 4])]).is_err());
    }
}
