//! Shape inference through the dynamic-shape operators exporters emit (`Shape`, `Slice`, `Concat`,
//! `Reshape`, `Split`) on hand-built graphs.
#![allow(clippy::unwrap_used)]

use prost::Message;
use rampart_checks::contract::onnx_proto::{
    AttributeProto, DimensionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use rampart_checks::contract::{Dim, check_shapes_at_batch, decode_onnx};

fn value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Some(v) => DimensionProto { dim_value: Some(*v), dim_param: None },
            None => DimensionProto { dim_value: None, dim_param: Some("batch".into()) },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto { elem_type: 1, shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: outputs[0].to_string(),
        op_type: op.into(),
        attribute,
        domain: String::new(),
    }
}

fn int64s(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: 7,
        int64_data: values.to_vec(),
        name: name.into(),
        ..TensorProto::default()
    }
}

#[test]
fn dynamic_reshape_and_split_resolve_and_a_mismatched_concat_is_reported() {
    let graph = GraphProto {
        node: vec![
            node("Shape", &["x"], &["shape"], vec![]),
            node("Slice", &["shape", "zero", "one"], &["batch_only"], vec![]),
            node(
                "Concat",
                &["batch_only", "three_rest"],
                &["target"],
                vec![AttributeProto { name: "axis".into(), r#type: 2, ..AttributeProto::default() }],
            ),
            node("Reshape", &["x", "target"], &["r"], vec![]),
            node(
                "Split",
                &["r", "split_sizes"],
                &["p1", "p2"],
                vec![AttributeProto { name: "axis".into(), i: 1, r#type: 2, ..AttributeProto::default() }],
            ),
            node("Add", &["p1", "p2"], &["sum"], vec![]),
            node(
                "Concat",
                &["p1", "p2"],
                &["joined"],
                vec![AttributeProto { name: "axis".into(), i: 2, r#type: 2, ..AttributeProto::default() }],
            ),
        ],
        initializer: vec![
            int64s("zero", &[0]),
            int64s("one", &[1]),
            int64s("three_rest", &[3, -1]),
            int64s("split_sizes", &[1, 2]),
        ],
        input: vec![value("x", &[None, Some(12)])],
        output: vec![value("sum", &[None, Some(2), Some(4)]), value("joined", &[None, Some(3), Some(8)])],
        ..GraphProto::default()
    };
    let opset_import = vec![OperatorSetIdProto { domain: String::new(), version: 17 }];
    let bytes = ModelProto { ir_version: 9, graph: Some(graph), opset_import, ..ModelProto::default() }.encode_to_vec();
    let model = decode_onnx(bytes.into()).unwrap();
    let check = check_shapes_at_batch(&model.graph, 8);
    assert_eq!(check.outputs[0].shape, Some(vec![Dim::Fixed(8), Dim::Fixed(2), Dim::Fixed(4)]));
    assert_eq!(check.findings.len(), 1, "{:?}", check.findings);
    let finding = &check.findings[0];
    assert_eq!((finding.op_type.as_str(), finding.node.as_str()), ("Concat", "joined"));
    assert!(finding.describe().contains("\"p1\" [8,1,4], \"p2\" [8,2,4]"), "{}", finding.describe());
}
