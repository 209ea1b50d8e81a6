//! Shape inference over an ONNX graph at a concrete batch size, reporting nodes whose inputs cannot fit.
//!
//! The graph inputs' symbolic (or unknown) leading dimension is set to the batch size and shapes are
//! propagated node by node. Operators that combine tensors (`Add`, `Mul`, `Sub`, `Concat`, `MatMul`,
//! `Conv`, `Reshape`, ...) are checked where the sizes are known; a definite mismatch becomes a
//! [`ShapeFinding`]. Operators this module does not know produce unknown shapes, which are never
//! reported: the check only speaks when it is sure. Small integer tensors (shape computations such as
//! `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`) are tracked by value so dynamic reshapes resolve.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use super::onnx_proto::{
    AttributeProto, DTYPE_BOOL, DTYPE_FLOAT, DTYPE_INT32, DTYPE_INT64, GraphProto, NodeProto, TensorProto,
    ValueInfoProto, dtype_name,
};
use super::types::{Dim, shape_text};

/// Integer tensors up to this many elements are tracked by value.
const MAX_TRACKED_INTS: usize = 64;
/// Ranks above this are not reasoned about symbolically (keeps the work linear on hostile input).
const MAX_SYMBOLIC_RANK: usize = 64;

/// A named input of a node and the shape it had at this batch size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedShape {
    /// Value name.
    pub name: String,
    /// Inferred shape; `None` when unknown.
    pub shape: Option<Vec<Dim>>,
}

/// A node whose inputs do not fit together at one batch size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeFinding {
    /// Node name (or `<op> #<index>` when the node has none).
    pub node: String,
    /// Operator, e.g. `Add`.
    pub op_type: String,
    /// The node's inputs with their inferred shapes.
    pub inputs: Vec<NamedShape>,
    /// What does not fit, in plain words.
    pub message: String,
}

impl ShapeFinding {
    /// One line for people: `Add "block_add": inputs "a" [8,16] and "b" [1,32] ...`.
    pub fn describe(&self) -> String {
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|input| format!("\"{}\" {}", input.name, shape_text(input.shape.as_deref())))
            .collect();
        format!("{} \"{}\" (inputs {}): {}", self.op_type, self.node, inputs.join(", "), self.message)
    }
}

/// The result of shape inference at one batch size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchShapeCheck {
    /// The batch size the graph inputs were given.
    pub batch_size: u64,
    /// True when no node had a definite shape mismatch.
    pub passed: bool,
    /// Nodes whose inputs do not fit.
    pub findings: Vec<ShapeFinding>,
    /// The graph outputs' shapes as inferred at this batch size (`None` where inference could not tell).
    pub outputs: Vec<NamedShape>,
    /// Things worth knowing that are not failures, e.g. an input whose batch dimension is fixed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A dimension or small integer during inference.
#[derive(Clone, Debug, PartialEq, Eq)]
enum D {
    Known(i64),
    Sym(String),
    Unknown,
}

impl D {
    fn known(&self) -> Option<i64> {
        match self {
            D::Known(value) => Some(*value),
            _ => None,
        }
    }

    fn to_dim(&self) -> Dim {
        match self {
            D::Known(value) if *value >= 0 => Dim::Fixed(value.unsigned_abs()),
            D::Sym(name) => Dim::Symbolic(name.clone()),
            _ => Dim::Unknown,
        }
    }
}

fn dims_text(dims: &[D]) -> String {
    shape_text(Some(&dims.iter().map(D::to_dim).collect::<Vec<_>>()))
}

/// What is known about one value.
#[derive(Clone, Debug, Default)]
struct Value {
    dtype: Option<i32>,
    shape: Option<Vec<D>>,
    /// Contents of a small integer tensor, flattened.
    ints: Option<Vec<D>>,
}

impl Value {
    fn with_shape(dtype: Option<i32>, shape: Vec<D>) -> Value {
        Value { dtype, shape: Some(shape), ints: None }
    }
}

/// Runs shape inference with the batch dimension set to `batch_size` and reports every mismatch.
pub fn check_shapes_at_batch(graph: &GraphProto, batch_size: u64) -> BatchShapeCheck {
    let batch = i64::try_from(batch_size).unwrap_or(i64::MAX);
    let mut env: HashMap<&str, Value> = HashMap::new();
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    for tensor in &graph.initializer {
        env.insert(tensor.name.as_str(), constant_value(tensor));
    }
    for input in &graph.input {
        if env.contains_key(input.name.as_str()) {
            continue;
        }
        let value = input_value(input, batch);
        if let Some(message) = fixed_batch_message(input, batch) {
            notes.push(format!("input \"{}\": {message}; it was checked with its declared shape", input.name));
        }
        env.insert(input.name.as_str(), value);
    }

    for (index, in_cycle) in node_order(graph) {
        let node = &graph.node[index];
        let node_name = if node.name.is_empty() { format!("{} #{index}", node.op_type) } else { node.name.clone() };
        let inputs: Vec<Option<Value>> = node
            .input
            .iter()
            .map(|name| if name.is_empty() { None } else { Some(env.get(name.as_str()).cloned().unwrap_or_default()) })
            .collect();
        let result = if in_cycle {
            Err("the node is part of a cycle in the graph".to_string())
        } else {
            infer_node(node, &inputs)
        };
        let outputs = match result {
            Ok(outputs) => outputs,
            Err(message) => {
                findings.push(ShapeFinding {
                    node: node_name,
                    op_type: node.op_type.clone(),
                    inputs: node
                        .input
                        .iter()
                        .zip(&inputs)
                        .filter_map(|(name, value)| {
                            value.as_ref().map(|value| NamedShape {
                                name: name.clone(),
                                shape: value.shape.as_ref().map(|dims| dims.iter().map(D::to_dim).collect()),
                            })
                        })
                        .collect(),
                    message,
                });
                Vec::new()
            }
        };
        let mut outputs = outputs.into_iter();
        for name in &node.output {
            let value = outputs.next().unwrap_or_default();
            if !name.is_empty() {
                env.insert(name.as_str(), value);
            }
        }
    }
    let outputs = graph
        .output
        .iter()
        .map(|output| {
            let inferred = env.get(output.name.as_str()).and_then(|v| v.shape.clone());
            if let Some(message) = inferred.as_deref().and_then(|dims| declared_output_mismatch(output, dims)) {
                findings.push(ShapeFinding {
                    node: output.name.clone(),
                    op_type: "graph output".to_string(),
                    inputs: vec![NamedShape {
                        name: output.name.clone(),
                        shape: inferred.as_ref().map(|dims| dims.iter().map(D::to_dim).collect()),
                    }],
                    message,
                });
            }
            NamedShape { name: output.name.clone(), shape: inferred.map(|dims| dims.iter().map(D::to_dim).collect()) }
        })
        .collect();
    BatchShapeCheck { batch_size, passed: findings.is_empty(), findings, outputs, notes }
}

/// Says how a computed output shape contradicts a fixed size the graph declares for it.
fn declared_output_mismatch(output: &ValueInfoProto, inferred: &[D]) -> Option<String> {
    let declared = &output.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref()?.dim;
    if declared.len() != inferred.len() {
        return Some(format!(
            "the graph computes rank {} ({}) but declares rank {}",
            inferred.len(),
            dims_text(inferred),
            declared.len()
        ));
    }
    declared.iter().zip(inferred).enumerate().find_map(|(axis, (dim, computed))| match (dim.dim_value, computed) {
        (Some(size), D::Known(value)) if size >= 0 && size != *value => {
            Some(format!("the graph computes {} but declares size {size} at axis {axis}", dims_text(inferred)))
        }
        _ => None,
    })
}

/// Node indices in a topological order (ties broken by file order). Nodes on a cycle come last, flagged.
fn node_order(graph: &GraphProto) -> Vec<(usize, bool)> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (index, node) in graph.node.iter().enumerate() {
        for output in &node.output {
            if !output.is_empty() {
                producer.entry(output.as_str()).or_insert(index);
            }
        }
    }
    let mut waiting_on = vec![0usize; graph.node.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (index, node) in graph.node.iter().enumerate() {
        for input in &node.input {
            if let Some(&from) = producer.get(input.as_str()) {
                waiting_on[index] += 1;
                consumers[from].push(index);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        waiting_on.iter().enumerate().filter(|(_, count)| **count == 0).map(|(index, _)| Reverse(index)).collect();
    let mut order = Vec::with_capacity(graph.node.len());
    let mut done = vec![false; graph.node.len()];
    while let Some(Reverse(index)) = ready.pop() {
        done[index] = true;
        order.push((index, false));
        for &next in &consumers[index] {
            waiting_on[next] -= 1;
            if waiting_on[next] == 0 {
                ready.push(Reverse(next));
            }
        }
    }
    order.extend(done.iter().enumerate().filter(|(_, done)| !**done).map(|(index, _)| (index, true)));
    order
}

fn input_value(input: &ValueInfoProto, batch: i64) -> Value {
    let Some(tensor_type) = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
        return Value::default();
    };
    let shape = tensor_type.shape.as_ref().map(|shape| {
        shape
            .dim
            .iter()
            .enumerate()
            .map(|(axis, dim)| match (&dim.dim_value, &dim.dim_param) {
                (Some(size), _) if *size >= 0 => D::Known(*size),
                _ if axis == 0 => D::Known(batch),
                (_, Some(name)) if !name.is_empty() => D::Sym(name.clone()),
                _ => D::Unknown,
            })
            .collect()
    });
    Value { dtype: Some(tensor_type.elem_type), shape, ints: None }
}

/// A graph input of rank >= 2 whose leading dimension is fixed to another size cannot take this batch.
/// That is a note, not a finding: a fixed batch is part of the declared contract, and a change from
/// symbolic to fixed is caught by the contract comparison.
fn fixed_batch_message(input: &ValueInfoProto, batch: i64) -> Option<String> {
    let dims = &input.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref()?.dim;
    let first = dims.first()?.dim_value?;
    (dims.len() >= 2 && first >= 0 && first != batch)
        .then(|| format!("its batch dimension is fixed to {first}, so the model cannot take batch size {batch}"))
}

/// Shape (and small integer contents) of a constant tensor.
fn constant_value(tensor: &TensorProto) -> Value {
    let shape: Vec<D> = tensor.dims.iter().map(|&d| if d >= 0 { D::Known(d) } else { D::Unknown }).collect();
    let count = tensor.dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?));
    let ints = match (tensor.data_type, count) {
        (DTYPE_INT64 | DTYPE_INT32, Some(count)) if count <= MAX_TRACKED_INTS && tensor.data_location == 0 => {
            integer_contents(tensor, count)
        }
        _ => None,
    };
    Value { dtype: Some(tensor.data_type), shape: Some(shape), ints }
}

fn integer_contents(tensor: &TensorProto, count: usize) -> Option<Vec<D>> {
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

// --- attributes -------------------------------------------------------------------------------

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn int_attr(node: &NodeProto, name: &str, default: i64) -> i64 {
    attribute(node, name).map_or(default, |a| a.i)
}

fn ints_attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    attribute(node, name).map(|a| a.ints.as_slice())
}

fn string_attr(node: &NodeProto, name: &str) -> Option<String> {
    attribute(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

/// Normalises a possibly negative axis against `rank`.
fn axis_index(axis: i64, rank: usize) -> Result<usize, String> {
    let rank_i = i64::try_from(rank).map_err(|_| "rank too large".to_string())?;
    let normalised = if axis < 0 { axis.checked_add(rank_i) } else { Some(axis) };
    match normalised {
        Some(value) if (0..rank_i).contains(&value) => usize::try_from(value).map_err(|_| "axis too large".to_string()),
        _ => Err(format!("axis {axis} is out of range for rank {rank}")),
    }
}

// --- inference ----------------------------------------------------------------------------------

const UNARY_SAME_SHAPE: &[&str] = &[
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Sqrt",
    "Reciprocal",
    "Floor",
    "Ceil",
    "Round",
    "Erf",
    "Sin",
    "Cos",
    "Tan",
    "Elu",
    "Selu",
    "Celu",
    "Gelu",
    "Mish",
    "Softplus",
    "Softsign",
    "Not",
    "Sign",
    "Softmax",
    "LogSoftmax",
    "Hardmax",
    "Clip",
    "Dropout",
    "CastLike",
    "IsNaN",
    "IsInf",
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "LpNormalization",
    "MeanVarianceNormalization",
    "Shrink",
    "ThresholdedRelu",
    "QuantizeLinear",
    "DequantizeLinear",
    "Trilu",
    "CumSum",
];
const BROADCAST_SAME_DTYPE: &[&str] =
    &["Add", "Sub", "Mul", "Div", "Sum", "Max", "Min", "Mean", "Mod", "And", "Or", "Xor"];
const BROADCAST_COMPARE: &[&str] = &["Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual"];

fn input_at(inputs: &[Option<Value>], index: usize) -> Option<&Value> {
    inputs.get(index).and_then(Option::as_ref)
}

/// Infers the outputs of one node, or says why its inputs cannot fit.
fn infer_node(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Ok(Vec::new());
    }
    let op = node.op_type.as_str();
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    if UNARY_SAME_SHAPE.contains(&op) {
        return Ok(vec![Value { ints: None, ..x }]);
    }
    if BROADCAST_SAME_DTYPE.contains(&op) || BROADCAST_COMPARE.contains(&op) || op == "Pow" || op == "PRelu" {
        let present: Vec<&Value> = inputs.iter().flatten().collect();
        if BROADCAST_SAME_DTYPE.contains(&op) {
            check_same_dtype(&present)?;
        }
        let shape = broadcast_values(&present)?;
        let dtype = if BROADCAST_COMPARE.contains(&op) { Some(DTYPE_BOOL) } else { x.dtype };
        let ints = elementwise_ints(op, &present);
        return Ok(vec![Value { dtype, shape, ints }]);
    }
    match op {
        "Identity" => Ok(vec![x]),
        "Cast" => Ok(vec![Value { dtype: i32::try_from(int_attr(node, "to", 0)).ok(), ..x }]),
        "Where" => {
            let present: Vec<&Value> = inputs.iter().flatten().collect();
            if let (Some(a), Some(b)) = (input_at(inputs, 1), input_at(inputs, 2)) {
                check_same_dtype(&[a, b])?;
            }
            let shape = broadcast_values(&present)?;
            Ok(vec![Value { dtype: input_at(inputs, 1).and_then(|v| v.dtype), shape, ints: None }])
        }
        "Concat" => infer_concat(node, inputs),
        "Reshape" => infer_reshape(node, inputs),
        "MatMul" => infer_matmul(inputs),
        "Gemm" => infer_gemm(node, inputs),
        "Conv" => infer_conv(node, inputs),
        "MaxPool" | "AveragePool" | "LpPool" => infer_pool(node, inputs),
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => Ok(vec![Value {
            dtype: x.dtype,
            shape: x
                .shape
                .map(|s| s.iter().enumerate().map(|(i, d)| if i < 2 { d.clone() } else { D::Known(1) }).collect()),
            ints: None,
        }]),
        "Flatten" => infer_flatten(node, &x),
        "Transpose" => infer_transpose(node, &x),
        "Shape" => infer_shape_op(node, &x),
        "Size" => Ok(vec![Value::with_shape(Some(DTYPE_INT64), Vec::new())]),
        "Gather" => infer_gather(node, inputs),
        "Unsqueeze" => infer_unsqueeze(node, inputs),
        "Squeeze" => infer_squeeze(node, inputs),
        "Constant" => Ok(vec![infer_constant(node)]),
        "ConstantOfShape" => {
            let shape = input_at(inputs, 0).and_then(|v| v.ints.clone());
            let dtype = attribute(node, "value").and_then(|a| a.t.as_ref()).map_or(DTYPE_FLOAT, |t| t.data_type);
            Ok(vec![Value { dtype: Some(dtype), shape, ints: None }])
        }
        "Expand" => {
            let target = input_at(inputs, 1).and_then(|v| v.ints.clone());
            let shape = match (&x.shape, target) {
                (Some(shape), Some(target)) => Some(broadcast(&[shape.as_slice(), target.as_slice()])?),
                _ => None,
            };
            Ok(vec![Value { dtype: x.dtype, shape, ints: None }])
        }
        "Slice" => infer_slice(inputs),
        "Split" => infer_split(node, inputs),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2"
        | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" | "ArgMax" | "ArgMin" => infer_reduce(node, inputs),
        _ => Ok(Vec::new()),
    }
}

fn check_same_dtype(values: &[&Value]) -> Result<(), String> {
    let known: Vec<i32> = values.iter().filter_map(|v| v.dtype).collect();
    if let Some(first) = known.first()
        && let Some(other) = known.iter().find(|d| *d != first)
    {
        return Err(format!("inputs have different dtypes: {} and {}", dtype_name(*first), dtype_name(*other)));
    }
    Ok(())
}

fn broadcast_values(values: &[&Value]) -> Result<Option<Vec<D>>, String> {
    let shapes: Option<Vec<&[D]>> = values.iter().map(|v| v.shape.as_deref()).collect();
    match shapes {
        Some(shapes) if !shapes.is_empty() => broadcast(&shapes).map(Some),
        _ => Ok(None),
    }
}

/// Numpy-style multidirectional broadcasting; an error only when two known sizes clash.
fn broadcast(shapes: &[&[D]]) -> Result<Vec<D>, String> {
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
fn elementwise_ints(op: &str, values: &[&Value]) -> Option<Vec<D>> {
    let [a, b] = values else { return None };
    let (a, b) = (a.ints.as_ref()?, b.ints.as_ref()?);
    let len = a.len().max(b.len());
    if !(a.len() == b.len() || a.len() == 1 || b.len() == 1) {
        return None;
    }
    (0..len)
        .map(|i| {
            let x = a.get(i).or(a.first())?.known();
            let y = b.get(i).or(b.first())?.known();
            Some(match (x, y) {
                (Some(x), Some(y)) => match op {
                    "Add" => x.checked_add(y).map_or(D::Unknown, D::Known),
                    "Sub" => x.checked_sub(y).map_or(D::Unknown, D::Known),
                    "Mul" => x.checked_mul(y).map_or(D::Unknown, D::Known),
                    "Div" => x.checked_div(y).map_or(D::Unknown, D::Known),
                    _ => D::Unknown,
                },
                _ => D::Unknown,
            })
        })
        .collect()
}

fn infer_concat(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let present: Vec<&Value> = inputs.iter().flatten().collect();
    check_same_dtype(&present)?;
    let dtype = present.first().and_then(|v| v.dtype);
    let ints = present
        .iter()
        .map(|v| v.ints.clone())
        .collect::<Option<Vec<_>>>()
        .map(|parts| parts.concat())
        .filter(|all| all.len() <= MAX_TRACKED_INTS);
    let shapes: Vec<&[D]> = present.iter().filter_map(|v| v.shape.as_deref()).collect();
    let Some(first) = shapes.first() else { return Ok(vec![Value { dtype, shape: None, ints }]) };
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
    Ok(vec![Value { dtype, shape: Some(out), ints }])
}

/// Product of known dims and the list of symbolic names; `None` when any dim is unknown.
fn factorise(dims: &[&D]) -> Option<(i64, Vec<String>)> {
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

fn infer_reshape(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let data = input_at(inputs, 0).cloned().unwrap_or_default();
    let target_value = input_at(inputs, 1).cloned().unwrap_or_default();
    let Some(target) = target_value.ints.clone() else {
        let rank = target_value.shape.as_ref().and_then(|s| s.first()).and_then(D::known);
        let shape =
            rank.and_then(|r| usize::try_from(r).ok()).filter(|r| *r <= MAX_TRACKED_INTS).map(|r| vec![D::Unknown; r]);
        return Ok(vec![Value { dtype: data.dtype, shape, ints: None }]);
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
        return Ok(vec![Value { dtype: data.dtype, shape: Some(out), ints: None }]);
    };
    let target_text = || dims_text(&target);
    let input_dims: Vec<&D> = shape.iter().collect();
    let other_dims: Vec<&D> = out.iter().enumerate().filter(|(i, _)| Some(*i) != infer_at).map(|(_, d)| d).collect();
    if input_dims.len() > MAX_SYMBOLIC_RANK || other_dims.len() > MAX_SYMBOLIC_RANK {
        return Ok(vec![Value { dtype: data.dtype, shape: Some(out), ints: None }]);
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
    Ok(vec![Value { dtype: data.dtype, shape: Some(out), ints: None }])
}

fn infer_matmul(inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let (Some(a), Some(b)) = (input_at(inputs, 0), input_at(inputs, 1)) else { return Ok(Vec::new()) };
    check_same_dtype(&[a, b])?;
    let (Some(a_shape), Some(b_shape)) = (&a.shape, &b.shape) else {
        return Ok(vec![Value { dtype: a.dtype, shape: None, ints: None }]);
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

fn infer_gemm(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let (Some(a), Some(b)) = (input_at(inputs, 0), input_at(inputs, 1)) else { return Ok(Vec::new()) };
    check_same_dtype(&[a, b])?;
    let (Some(a_shape), Some(b_shape)) = (&a.shape, &b.shape) else {
        return Ok(vec![Value { dtype: a.dtype, shape: None, ints: None }]);
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

/// Spatial output size of a convolution or pooling window; `None` when it cannot be computed.
#[allow(clippy::too_many_arguments)]
fn window_output(
    size: i64,
    kernel: i64,
    stride: i64,
    dilation: i64,
    pad_begin: i64,
    pad_end: i64,
    auto_pad: &str,
    ceil_mode: bool,
) -> Result<Option<i64>, String> {
    if stride <= 0 || dilation <= 0 || kernel <= 0 {
        return Err(format!("invalid window: kernel {kernel}, stride {stride}, dilation {dilation}"));
    }
    let effective = dilation.checked_mul(kernel - 1).and_then(|v| v.checked_add(1));
    let Some(effective) = effective else { return Ok(None) };
    match auto_pad {
        "SAME_UPPER" | "SAME_LOWER" => Ok(size.checked_add(stride - 1).map(|v| v / stride)),
        _ => {
            let (pad_begin, pad_end) = if auto_pad == "VALID" { (0, 0) } else { (pad_begin, pad_end) };
            let Some(padded) = size.checked_add(pad_begin).and_then(|v| v.checked_add(pad_end)) else {
                return Ok(None);
            };
            let Some(span) = padded.checked_sub(effective) else { return Ok(None) };
            if span < 0 {
                return Err(format!(
                    "the window ({effective} wide after dilation) is larger than the padded input ({padded})"
                ));
            }
            let steps = if ceil_mode { span.checked_add(stride - 1).map(|v| v / stride) } else { Some(span / stride) };
            Ok(steps.and_then(|s| s.checked_add(1)))
        }
    }
}

fn spatial_outputs(node: &NodeProto, spatial: &[D], kernel: &[D], ceil_mode: bool) -> Result<Vec<D>, String> {
    let count = spatial.len();
    let strides = ints_attr(node, "strides").filter(|v| !v.is_empty());
    let dilations = ints_attr(node, "dilations").filter(|v| !v.is_empty());
    let pads = ints_attr(node, "pads").filter(|v| !v.is_empty());
    let auto_pad = string_attr(node, "auto_pad").unwrap_or_default();
    for (name, list, expected) in
        [("strides", strides, count), ("dilations", dilations, count), ("pads", pads, 2 * count)]
    {
        if let Some(list) = list
            && list.len() != expected
        {
            return Err(format!("attribute {name} has {} values but the input has {count} spatial axes", list.len()));
        }
    }
    if kernel.len() != count {
        return Err(format!("the kernel has {} spatial axes but the input has {count}", kernel.len()));
    }
    let mut out = Vec::with_capacity(count);
    for axis in 0..count {
        let (D::Known(size), D::Known(k)) = (&spatial[axis], &kernel[axis]) else {
            out.push(D::Unknown);
            continue;
        };
        let stride = strides.map_or(1, |s| s[axis]);
        let dilation = dilations.map_or(1, |d| d[axis]);
        let (pad_begin, pad_end) = pads.map_or((0, 0), |p| (p[axis], p[axis + count]));
        let result = window_output(*size, *k, stride, dilation, pad_begin, pad_end, &auto_pad, ceil_mode)
            .map_err(|e| format!("spatial axis {axis}: {e}"))?;
        out.push(result.map_or(D::Unknown, D::Known));
    }
    Ok(out)
}

fn infer_conv(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let (Some(x), Some(w)) = (input_at(inputs, 0), input_at(inputs, 1)) else { return Ok(Vec::new()) };
    let (Some(x_shape), Some(w_shape)) = (&x.shape, &w.shape) else {
        return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None }]);
    };
    if x_shape.len() < 3 || w_shape.len() != x_shape.len() {
        return Err(format!(
            "Conv needs input [N,C,...] and weight [M,C/group,...] of the same rank, got {} and {}",
            dims_text(x_shape),
            dims_text(w_shape)
        ));
    }
    let group = int_attr(node, "group", 1);
    if let (D::Known(channels), D::Known(per_group)) = (&x_shape[1], &w_shape[1])
        && per_group.checked_mul(group) != Some(*channels)
    {
        return Err(format!(
            "input {} has {channels} channels but weight {} expects {per_group} x group {group}",
            dims_text(x_shape),
            dims_text(w_shape)
        ));
    }
    if let Some(bias) = input_at(inputs, 2).and_then(|b| b.shape.as_ref())
        && let ([D::Known(len)], D::Known(m)) = (bias.as_slice(), &w_shape[0])
        && len != m
    {
        return Err(format!("bias has {len} values but the weight has {m} output channels"));
    }
    let kernel: Vec<D> = match ints_attr(node, "kernel_shape").filter(|k| !k.is_empty()) {
        Some(kernel) => kernel.iter().map(|&k| D::Known(k)).collect(),
        None => w_shape[2..].to_vec(),
    };
    let mut out = vec![x_shape[0].clone(), w_shape[0].clone()];
    out.extend(spatial_outputs(node, &x_shape[2..], &kernel, false)?);
    Ok(vec![Value::with_shape(x.dtype, out)])
}

fn infer_pool(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let Some(x) = input_at(inputs, 0) else { return Ok(Vec::new()) };
    let Some(x_shape) = &x.shape else { return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None }]) };
    if x_shape.len() < 3 {
        return Err(format!("pooling needs input [N,C,...], got {}", dims_text(x_shape)));
    }
    let Some(kernel) = ints_attr(node, "kernel_shape") else { return Ok(Vec::new()) };
    let kernel: Vec<D> = kernel.iter().map(|&k| D::Known(k)).collect();
    let mut out = vec![x_shape[0].clone(), x_shape[1].clone()];
    out.extend(spatial_outputs(node, &x_shape[2..], &kernel, int_attr(node, "ceil_mode", 0) != 0)?);
    let value = Value::with_shape(x.dtype, out);
    let indices = Value { dtype: Some(DTYPE_INT64), ..value.clone() };
    Ok(vec![value, indices])
}

fn product(dims: &[D]) -> D {
    match dims {
        [single] => single.clone(),
        _ => dims.iter().try_fold(1i64, |acc, d| acc.checked_mul(d.known()?)).map_or(D::Unknown, D::Known),
    }
}

fn infer_flatten(node: &NodeProto, x: &Value) -> Result<Vec<Value>, String> {
    let Some(shape) = &x.shape else { return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None }]) };
    let axis = int_attr(node, "axis", 1);
    let rank = i64::try_from(shape.len()).map_err(|_| "rank too large".to_string())?;
    let split = if axis < 0 { axis.checked_add(rank) } else { Some(axis) };
    let split = split
        .filter(|s| (0..=rank).contains(s))
        .and_then(|s| usize::try_from(s).ok())
        .ok_or_else(|| format!("axis {axis} is out of range for rank {rank}"))?;
    Ok(vec![Value::with_shape(x.dtype, vec![product(&shape[..split]), product(&shape[split..])])])
}

fn infer_transpose(node: &NodeProto, x: &Value) -> Result<Vec<Value>, String> {
    let Some(shape) = &x.shape else { return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None }]) };
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
    Ok(vec![Value::with_shape(x.dtype, perm.iter().map(|&a| shape[a].clone()).collect())])
}

fn infer_shape_op(node: &NodeProto, x: &Value) -> Result<Vec<Value>, String> {
    let Some(shape) = &x.shape else {
        return Ok(vec![Value { dtype: Some(DTYPE_INT64), shape: Some(vec![D::Unknown]), ints: None }]);
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
    Ok(vec![Value { dtype: Some(DTYPE_INT64), shape: Some(vec![D::Known(len)]), ints }])
}

fn infer_gather(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let (Some(data), Some(indices)) = (input_at(inputs, 0), input_at(inputs, 1)) else { return Ok(Vec::new()) };
    let (Some(data_shape), Some(index_shape)) = (&data.shape, &indices.shape) else {
        return Ok(vec![Value { dtype: data.dtype, shape: None, ints: None }]);
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
    Ok(vec![Value { dtype: data.dtype, shape: Some(out), ints }])
}

/// Axes from the attribute (older opsets) or the second input (opset 13+).
fn axes_of(node: &NodeProto, inputs: &[Option<Value>]) -> Option<Option<Vec<i64>>> {
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

fn infer_unsqueeze(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
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
    Ok(vec![Value { dtype: x.dtype, shape: Some(out), ints: x.ints }])
}

fn infer_squeeze(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
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
    Ok(vec![Value { dtype: x.dtype, shape: out, ints: x.ints }])
}

fn infer_constant(node: &NodeProto) -> Value {
    if let Some(tensor) = attribute(node, "value").and_then(|a| a.t.as_ref()) {
        return constant_value(tensor);
    }
    if let Some(attr) = attribute(node, "value_int") {
        return Value { dtype: Some(DTYPE_INT64), shape: Some(Vec::new()), ints: Some(vec![D::Known(attr.i)]) };
    }
    if let Some(attr) = attribute(node, "value_ints") {
        let len = i64::try_from(attr.ints.len()).unwrap_or(i64::MAX);
        let ints = (attr.ints.len() <= MAX_TRACKED_INTS).then(|| attr.ints.iter().map(|&v| D::Known(v)).collect());
        return Value { dtype: Some(DTYPE_INT64), shape: Some(vec![D::Known(len)]), ints };
    }
    if attribute(node, "value_float").is_some() {
        return Value::with_shape(Some(DTYPE_FLOAT), Vec::new());
    }
    if let Some(attr) = attribute(node, "value_floats") {
        let len = i64::try_from(attr.floats.len()).unwrap_or(i64::MAX);
        return Value::with_shape(Some(DTYPE_FLOAT), vec![D::Known(len)]);
    }
    Value::default()
}

/// Length of `start:end:step` over an axis of `size`, with ONNX's clamping rules.
fn slice_len(size: i64, start: i64, end: i64, step: i64) -> Option<i64> {
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

fn known_ints(value: Option<&Value>) -> Option<Vec<i64>> {
    value?.ints.as_ref()?.iter().map(D::known).collect()
}

fn infer_slice(inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let (Some(shape), Some(starts), Some(ends)) =
        (&x.shape, known_ints(input_at(inputs, 1)), known_ints(input_at(inputs, 2)))
    else {
        let rank = x.shape.as_ref().map(Vec::len);
        return Ok(vec![Value { dtype: x.dtype, shape: rank.map(|r| vec![D::Unknown; r]), ints: None }]);
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
        return Ok(vec![Value { dtype: x.dtype, shape: Some(vec![D::Unknown; shape.len()]), ints: None }]);
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
        out[axis] = match &shape[axis] {
            D::Known(size) => slice_len(*size, starts[index], ends[index], steps[index]).map_or(D::Unknown, D::Known),
            _ => D::Unknown,
        };
        ranges.push((axis, starts[index], ends[index], steps[index]));
    }
    // Slicing a tracked 1-D shape value (e.g. `Shape -> Slice [0:1]`).
    let ints = match (&x.ints, shape.as_slice(), ranges.as_slice()) {
        (Some(values), [_], [(0, start, end, 1)]) => {
            let len = i64::try_from(values.len()).unwrap_or(i64::MAX);
            let from = if *start < 0 { start.saturating_add(len) } else { *start }.clamp(0, len);
            let to = if *end < 0 { end.saturating_add(len) } else { *end }.clamp(0, len);
            let (from, to) = (usize::try_from(from).unwrap_or(0), usize::try_from(to).unwrap_or(0));
            Some(if from < to { values[from..to].to_vec() } else { Vec::new() })
        }
        _ => None,
    };
    Ok(vec![Value { dtype: x.dtype, shape: Some(out), ints }])
}

fn infer_split(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let outputs = node.output.len();
    let Some(shape) = &x.shape else { return Ok(vec![Value { dtype: x.dtype, shape: None, ints: None }; outputs]) };
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

fn infer_reduce(node: &NodeProto, inputs: &[Option<Value>]) -> Result<Vec<Value>, String> {
    let x = input_at(inputs, 0).cloned().unwrap_or_default();
    let is_arg = node.op_type.starts_with("Arg");
    let dtype = if is_arg { Some(DTYPE_INT64) } else { x.dtype };
    let Some(shape) = &x.shape else { return Ok(vec![Value { dtype, shape: None, ints: None }]) };
    let keep = int_attr(node, "keepdims", 1) != 0;
    let axes: Vec<i64> = if is_arg {
        vec![int_attr(node, "axis", 0)]
    } else {
        match axes_of(node, inputs) {
            Some(Some(axes)) if !axes.is_empty() => axes,
            Some(_) if int_attr(node, "noop_with_empty_axes", 0) != 0 => return Ok(vec![Value { dtype, ..x }]),
            Some(_) => (0..i64::try_from(shape.len()).unwrap_or(0)).collect(),
            None => return Ok(vec![Value { dtype, shape: None, ints: None }]),
        }
    };
    let mut reduced = vec![false; shape.len()];
    for axis in axes {
        reduced[axis_index(axis, shape.len())?] = true;
    }
    let out = shape
        .iter()
        .zip(&reduced)
        .filter_map(|(d, r)| match (r, keep) {
            (true, true) => Some(D::Known(1)),
            (true, false) => None,
            (false, _) => Some(d.clone()),
        })
        .collect();
    Ok(vec![Value::with_shape(dtype, out)])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn known(dims: &[i64]) -> Vec<D> {
        dims.iter().map(|&d| D::Known(d)).collect()
    }

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
    fn slice_lengths_follow_onnx_clamping() {
        assert_eq!(slice_len(10, 0, 1, 1), Some(1));
        assert_eq!(slice_len(10, -3, i64::MAX, 1), Some(3));
        assert_eq!(slice_len(10, i64::MAX, 0, -1), Some(9));
        assert_eq!(slice_len(10, 0, 10, 3), Some(4));
        assert_eq!(slice_len(10, 5, 2, 1), Some(0));
        assert_eq!(slice_len(10, i64::MIN, i64::MAX, i64::MIN), None);
    }

    #[test]
    fn window_output_matches_the_onnx_formula() {
        assert_eq!(window_output(16, 3, 2, 1, 1, 1, "", false).unwrap(), Some(8));
        assert_eq!(window_output(7, 2, 2, 1, 0, 0, "", true).unwrap(), Some(4));
        assert_eq!(window_output(7, 2, 2, 1, 0, 0, "SAME_UPPER", false).unwrap(), Some(4));
        assert!(window_output(2, 5, 1, 1, 0, 0, "", false).is_err());
        assert_eq!(window_output(i64::MAX, 3, 1, 1, 1, 1, "", false).unwrap(), None);
    }
}
