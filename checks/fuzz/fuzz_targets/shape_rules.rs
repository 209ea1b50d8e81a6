//! Fuzz target: the shape rules of the operators real exports use (control flow, recurrent nets, Resize,
//! Pad, Tile, Expand, OneHot, ConvTranspose, Einsum, `com.microsoft` ops, ...) on graphs built from the
//! fuzzer's bytes: any operator, any wiring, any sizes and attributes, nested `If`/`Loop`/`Scan` bodies.
//! Shape inference must never panic, and must terminate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_checks::contract::check_shapes_at_batch;
use rampart_checks::contract::onnx_proto::{
    AttributeProto, DimensionProto, GraphProto, NodeProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto,
};

const OPS: &[(&str, &str)] = &[
    ("", "If"), ("", "Loop"), ("", "Scan"), ("", "LSTM"), ("", "GRU"), ("", "RNN"), ("", "Resize"),
    ("", "Upsample"), ("", "Pad"), ("", "Tile"), ("", "Expand"), ("", "OneHot"), ("", "ConvTranspose"),
    ("", "Einsum"), ("", "DepthToSpace"), ("", "SpaceToDepth"), ("", "TopK"), ("", "ConstantOfShape"),
    ("", "Slice"), ("", "Transpose"), ("", "Reshape"), ("", "Concat"), ("", "Add"), ("", "Equal"), ("", "Not"),
    ("", "Size"), ("", "Shape"), ("", "Gather"), ("", "Conv"), ("", "QLinearConv"), ("", "MatMulInteger"),
    ("com.microsoft", "SkipLayerNormalization"), ("com.microsoft", "Attention"),
    ("com.microsoft", "DynamicQuantizeLSTM"), ("com.microsoft", "FusedConv"), ("com.microsoft", "QLinearAdd"),
];
const ATTRS: &[&str] = &[
    "axis", "axes", "perm", "pads", "strides", "kernel_shape", "hidden_size", "layout", "direction", "equation",
    "blocksize", "num_scan_inputs", "scan_input_axes", "scan_output_axes", "scales", "output_shape", "group",
    "keepdims", "split", "to", "value",
];

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn int(&mut self) -> i64 {
        match self.byte() % 8 {
            0 => i64::MAX,
            1 => i64::MIN,
            2 => -1,
            _ => i64::from(self.byte() as i8),
        }
    }

    fn name(&mut self, count: usize) -> String {
        format!("v{}", usize::from(self.byte()) % count.max(1))
    }
}

fn attribute(bytes: &mut Bytes<'_>, depth: usize) -> AttributeProto {
    let name = ATTRS[usize::from(bytes.byte()) % ATTRS.len()].to_string();
    let mut attr = AttributeProto { name: name.clone(), i: bytes.int(), ..AttributeProto::default() };
    for _ in 0..bytes.byte() % 5 {
        attr.ints.push(bytes.int());
        attr.floats.push(f32::from(bytes.byte()) / 16.0);
    }
    match name.as_str() {
        "equation" => attr.s = ["ij,jk->ik", "...ij,...jk", "bhqd,bhkd->bhqk", "i,i", "ab->c", ",->"]
            [usize::from(bytes.byte()) % 6]
            .as_bytes()
            .to_vec(),
        "direction" => attr.s = b"bidirectional".to_vec(),
        "value" => attr.t = Some(TensorProto { dims: vec![1], data_type: 7, int64_data: vec![bytes.int()], ..TensorProto::default() }),
        _ => {}
    }
    if depth < 3 && bytes.byte() % 3 == 0 {
        attr.g = Some(Box::new(graph(bytes, depth + 1)));
    }
    attr
}

fn graph(bytes: &mut Bytes<'_>, depth: usize) -> GraphProto {
    let inputs = 1 + usize::from(bytes.byte() % 3);
    let mut graph = GraphProto::default();
    for index in 0..inputs {
        let dim = (0..bytes.byte() % 5)
            .map(|_| match bytes.byte() % 4 {
                0 => DimensionProto { dim_value: None, dim_param: Some("batch".into()) },
                1 => DimensionProto { dim_value: None, dim_param: None },
                _ => DimensionProto { dim_value: Some(bytes.int()), dim_param: None },
            })
            .collect();
        graph.input.push(ValueInfoProto {
            name: format!("v{index}"),
            r#type: Some(TypeProto { tensor_type: Some(TensorTypeProto { elem_type: 1, shape: Some(TensorShapeProto { dim }) }) }),
        });
    }
    let mut values = inputs;
    for _ in 0..bytes.byte() % 8 {
        let (domain, op) = OPS[usize::from(bytes.byte()) % OPS.len()];
        let input = (0..bytes.byte() % 9).map(|_| if bytes.byte() % 7 == 0 { String::new() } else { bytes.name(values) }).collect();
        let outputs = 1 + usize::from(bytes.byte() % 3);
        let output = (0..outputs).map(|i| format!("v{}", values + i)).collect();
        values += outputs;
        let attribute = (0..bytes.byte() % 4).map(|_| attribute(bytes, depth)).collect();
        graph.node.push(NodeProto { input, output, name: String::new(), op_type: op.into(), attribute, domain: domain.into() });
    }
    graph.output.push(ValueInfoProto { name: format!("v{}", values.saturating_sub(1)), r#type: None });
    graph
}

fuzz_target!(|data: &[u8]| {
    let graph = graph(&mut Bytes(data), 0);
    for batch in [1, 8, u64::MAX] {
        let check = check_shapes_at_batch(&graph, batch);
        let _ = check.coverage.summary();
        for finding in &check.findings {
            let _ = finding.describe();
        }
    }
});
