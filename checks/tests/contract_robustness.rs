//! Hostile input never panics: truncated, bit-flipped and random files, and well-formed protobufs
//! describing nonsense graphs (cycles, huge dims, overflowing shape products, bad attributes).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;
use rampart_checks::contract::onnx_proto::{
    AttributeProto, DimensionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use rampart_checks::contract::{check_shapes_at_batch, decode_onnx, load_model, read_safetensors_header};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx" || e == "safetensors"))
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    files
}

/// Small deterministic generator so failures reproduce.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Decodes bytes the way `load_model` would and, when they decode, runs every check on them.
fn exercise(bytes: &[u8]) {
    let _ = read_safetensors_header(bytes, bytes.len() as u64);
    if let Ok(model) = decode_onnx(Bytes::copy_from_slice(bytes)) {
        for batch in [1, 8, u64::MAX] {
            let _ = check_shapes_at_batch(&model.graph, batch);
        }
    }
}

#[test]
fn truncated_fixtures_are_rejected_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    for path in fixtures() {
        let bytes = std::fs::read(&path).unwrap();
        let step = (bytes.len() / 97).max(1);
        for cut in (0..bytes.len()).step_by(step) {
            exercise(&bytes[..cut]);
        }
        // A cut in the middle is reported as unreadable through the file API too.
        let truncated = dir.path().join(path.file_name().unwrap());
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_model(&truncated).unwrap_err();
        assert!(err.to_string().contains("is not a readable model"), "{err}");
    }
}

#[test]
fn bit_flipped_fixtures_never_panic() {
    let mut noise = Noise(0x5eed);
    for path in fixtures() {
        let original = std::fs::read(&path).unwrap();
        for _ in 0..300 {
            let mut bytes = original.clone();
            for _ in 0..1 + noise.next() % 4 {
                let at = (noise.next() % bytes.len() as u64) as usize;
                bytes[at] ^= 1 << (noise.next() % 8);
            }
            exercise(&bytes);
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut noise = Noise(42);
    for len in [0usize, 1, 7, 8, 9, 64, 1000, 10_000] {
        for _ in 0..200 {
            let bytes: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
            exercise(&bytes);
        }
    }
    // A safetensors-looking prefix with a header length near u64::MAX.
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert!(read_safetensors_header(huge.as_slice(), huge.len() as u64).is_err());
}

#[test]
fn empty_files_directories_and_devices_are_unreadable_models() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    assert!(load_model(&empty).unwrap_err().to_string().contains("empty"));
    assert!(load_model(dir.path()).is_err());
    let device = load_model(Path::new("/dev/zero")).unwrap_err();
    assert!(device.to_string().contains("not a regular file"), "{device}");
}

fn tensor_input(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d {
                            Some(v) => DimensionProto { dim_value: Some(*v), dim_param: None },
                            None => DimensionProto { dim_value: None, dim_param: Some("batch".into()) },
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_{}", outputs.first().unwrap_or(&"")),
        op_type: op.into(),
        attribute: attributes,
        domain: String::new(),
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), ints: values.to_vec(), r#type: 7, ..AttributeProto::default() }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: value, r#type: 2, ..AttributeProto::default() }
}

fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: 7,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>().into(),
        name: name.into(),
        ..TensorProto::default()
    }
}

fn model(graph: GraphProto) -> Bytes {
    let opset_import = vec![OperatorSetIdProto { domain: String::new(), version: 17 }];
    ModelProto { ir_version: 8, graph: Some(graph), opset_import, ..ModelProto::default() }.encode_to_vec().into()
}

#[test]
fn a_cyclic_graph_is_reported_not_looped_on() {
    let graph = GraphProto {
        node: vec![node("Add", &["x", "b"], &["a"], vec![]), node("Relu", &["a"], &["b"], vec![])],
        input: vec![tensor_input("x", &[None, Some(4)])],
        output: vec![tensor_input("b", &[None, Some(4)])],
        ..GraphProto::default()
    };
    let refused = decode_onnx(model(graph.clone())).unwrap_err().to_string();
    assert!(refused.contains("reads \"b\"") && refused.contains("out of order"), "{refused}");
    let check = check_shapes_at_batch(&graph, 8);
    assert!(!check.passed);
    assert!(check.findings.iter().all(|f| f.message.contains("cycle")));
    assert_eq!(check.findings.len(), 2);
}

#[test]
fn huge_dims_and_overflowing_products_are_handled_with_checked_arithmetic() {
    let big = i64::MAX;
    let graph = GraphProto {
        node: vec![
            node("Flatten", &["x"], &["flat"], vec![int("axis", 0)]),
            node("Reshape", &["x", "shape"], &["reshaped"], vec![]),
            node(
                "Conv",
                &["x", "w"],
                &["conv"],
                vec![ints("strides", &[big, big]), ints("pads", &[big, big, big, big])],
            ),
            node("MaxPool", &["x"], &["pool"], vec![ints("kernel_shape", &[big, 1]), int("ceil_mode", 1)]),
            node("Transpose", &["x"], &["t"], vec![ints("perm", &[0, 0, 5, -1])]),
            node("Concat", &["x", "x"], &["cat"], vec![int("axis", i64::MIN)]),
            node("Unsqueeze", &["x"], &["u"], vec![ints("axes", &[big, big])]),
            node("Gather", &["shape", "shape"], &["g"], vec![]),
            node("Add", &["x", "conv"], &["sum"], vec![]),
        ],
        initializer: vec![
            int64_tensor("shape", &[-1, big, 0, -7]),
            TensorProto { dims: vec![big, big, 3, 3], data_type: 1, name: "w".into(), ..TensorProto::default() },
        ],
        input: vec![tensor_input("x", &[None, Some(big), Some(big), Some(-5)])],
        output: vec![tensor_input("sum", &[None, Some(big), Some(big), Some(1)])],
        ..GraphProto::default()
    };
    let decoded = decode_onnx(model(graph)).unwrap();
    for batch in [1, 8, u64::MAX] {
        let check = check_shapes_at_batch(&decoded.graph, batch);
        assert!(!check.passed, "bad attributes are reported");
    }
}

#[test]
fn unknown_operators_make_shapes_unknown_instead_of_failing() {
    let graph = GraphProto {
        node: vec![
            node("FancyCustomOp", &["x"], &["y"], vec![]),
            node("Add", &["y", "bias"], &["z"], vec![]),
            node("Mul", &["x", "x"], &["w"], vec![]),
        ],
        initializer: vec![TensorProto { dims: vec![7], data_type: 1, name: "bias".into(), ..TensorProto::default() }],
        input: vec![tensor_input("x", &[None, Some(4)])],
        output: vec![tensor_input("z", &[None, Some(4)]), tensor_input("w", &[None, Some(4)])],
        ..GraphProto::default()
    };
    let decoded = decode_onnx(model(graph)).unwrap();
    let check = check_shapes_at_batch(&decoded.graph, 8);
    assert!(check.passed, "{:?}", check.findings);
    assert_eq!(check.outputs[0].shape, None);
}

#[test]
fn concat_of_mismatched_branches_is_named_with_its_inputs() {
    let graph = GraphProto {
        node: vec![
            node("Reshape", &["x", "flat1"], &["left"], vec![]),
            node("Flatten", &["x"], &["right"], vec![]),
            node("Concat", &["left", "right"], &["joined"], vec![int("axis", 1)]),
        ],
        initializer: vec![int64_tensor("flat1", &[1, -1])],
        input: vec![tensor_input("x", &[None, Some(6)])],
        output: vec![tensor_input("joined", &[None, Some(12)])],
        ..GraphProto::default()
    };
    let loaded = decode_onnx(model(graph)).unwrap();
    let at_one = check_shapes_at_batch(&loaded.graph, 1);
    assert!(at_one.passed, "{:?}", at_one.findings);
    let at_four = check_shapes_at_batch(&loaded.graph, 4);
    assert_eq!(at_four.findings.len(), 1, "{:?}", at_four.findings);
    let finding = &at_four.findings[0];
    assert_eq!((finding.op_type.as_str(), finding.node.as_str()), ("Concat", "Concat_joined"));
    assert!(finding.describe().contains("\"left\" [1,24]"), "{}", finding.describe());
    assert!(finding.describe().contains("\"right\" [4,6]"), "{}", finding.describe());
}
