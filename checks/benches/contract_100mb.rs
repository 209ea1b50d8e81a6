//! Bench: contract check of a generated ONNX model with about 100 MB of weights.
//!
//! `cargo bench -p rampart-checks --bench contract_100mb` writes a residual MLP (24 blocks of
//! 1024x1024 float32 weights, ~100 MB) to a temporary directory, then runs the check in a fresh child
//! process three times (candidate against itself as baseline, batch sizes 1, 8, 64) and prints wall
//! time and peak resident memory (`VmHWM`) of each run. Set `RAMPART_BENCH_DIR` to keep the file there.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use bytes::Bytes;
use prost::Message;
use rampart_checks::contract::onnx_proto::{
    DimensionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TensorTypeProto, TypeProto, ValueInfoProto,
};
use rampart_checks::contract::{ContractOptions, check_contract};

const WIDTH: usize = 1024;
const BLOCKS: usize = 24;

fn value_info(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: 1,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        DimensionProto { dim_value: None, dim_param: Some("batch".into()) },
                        DimensionProto { dim_value: Some(WIDTH as i64), dim_param: None },
                    ],
                }),
            }),
        }),
    }
}

fn node(op: &str, inputs: [&str; 2], output: &str) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        op_type: op.into(),
        ..NodeProto::default()
    }
}

/// Writes the ~100 MB model and returns its size in bytes.
fn generate(path: &Path) -> std::io::Result<u64> {
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut state = 0x1234_5678_u32;
    let mut h = "x".to_string();
    for block in 0..BLOCKS {
        let weight = format!("block{block}.weight");
        let mut raw = Vec::with_capacity(WIDTH * WIDTH * 4);
        for _ in 0..WIDTH * WIDTH {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let value = (state >> 9) as f32 / (1u32 << 23) as f32 * 0.02 - 0.01;
            raw.extend_from_slice(&value.to_le_bytes());
        }
        initializers.push(TensorProto {
            dims: vec![WIDTH as i64, WIDTH as i64],
            data_type: 1,
            name: weight.clone(),
            raw_data: Bytes::from(raw),
            ..TensorProto::default()
        });
        let (mm, act, out) = (format!("block{block}.mm"), format!("block{block}.act"), format!("h{}", block + 1));
        nodes.push(node("MatMul", [&h, &weight], &mm));
        nodes.push(NodeProto {
            input: vec![mm.clone()],
            output: vec![act.clone()],
            name: act.clone(),
            op_type: "Relu".into(),
            ..NodeProto::default()
        });
        nodes.push(node("Add", [&h, &act], &out));
        h = out;
    }
    nodes.push(NodeProto {
        input: vec![h],
        output: vec!["y".into()],
        name: "y".into(),
        op_type: "Identity".into(),
        ..NodeProto::default()
    });
    let model = ModelProto {
        ir_version: 8,
        producer_name: "rampart-bench".into(),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            node: nodes,
            name: "big_residual_mlp".into(),
            initializer: initializers,
            input: vec![value_info("x")],
            output: vec![value_info("y")],
        }),
        ..ModelProto::default()
    };
    let bytes = model.encode_to_vec();
    std::fs::write(path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Peak resident set size of this process in KiB, from /proc (Linux only).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Child mode: one check, then one line `seconds peak_kib compatible`.
fn measure(model: &Path) -> ExitCode {
    let started = Instant::now();
    let report = match check_contract(model, Some(model), &ContractOptions::default()) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    println!("{seconds:.3} {} {}", peak_rss_kib().unwrap_or(0), report.compatible);
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|a| a == "--measure")
        && let Some(model) = args.get(position + 1)
    {
        return measure(Path::new(model));
    }
    let temp = tempfile::tempdir();
    let dir: PathBuf = match (std::env::var_os("RAMPART_BENCH_DIR"), &temp) {
        (Some(dir), _) => PathBuf::from(dir),
        (None, Ok(temp)) => temp.path().to_path_buf(),
        (None, Err(err)) => {
            eprintln!("cannot create a temporary directory: {err}");
            return ExitCode::from(2);
        }
    };
    let model = dir.join("big_residual_mlp.onnx");
    let size = match generate(&model) {
        Ok(size) => size,
        Err(err) => {
            eprintln!("cannot write {}: {err}", model.display());
            return ExitCode::from(2);
        }
    };
    println!(
        "model: {} ({:.1} MiB, {BLOCKS} float32 weights of {WIDTH}x{WIDTH})",
        model.display(),
        size as f64 / 1048576.0
    );
    let Ok(me) = std::env::current_exe() else { return ExitCode::from(2) };
    for run in 1..=3 {
        let output = Command::new(&me).arg("--measure").arg(&model).output();
        match output {
            Ok(output) if output.status.success() => {
                let text = String::from_utf8_lossy(&output.stdout);
                let fields: Vec<&str> = text.split_whitespace().collect();
                if let [seconds, kib, compatible] = fields.as_slice() {
                    let mib = kib.parse::<f64>().unwrap_or(0.0) / 1024.0;
                    println!(
                        "run {run}: contract check (candidate and baseline both this model, batch sizes 1,8,64) took {seconds}s, peak RSS {mib:.1} MiB, compatible: {compatible}"
                    );
                }
            }
            Ok(output) => eprintln!("run {run} failed: {}", String::from_utf8_lossy(&output.stderr)),
            Err(err) => eprintln!("run {run} could not start: {err}"),
        }
    }
    ExitCode::SUCCESS
}
