#!/usr/bin/env python3
"""Makes the real-model corpus for `checks/tests/contract_real_models.rs` and records the expected answers.

Run by `scripts/real-models` (which `scripts/ci-deps` calls) with the project's venv that has the pinned
`onnx` and `onnxruntime` packages:

    target/onnx-venv/bin/python checks/tests/real_models/make_cases.py target/real-models

Input: `<dir>/original/*.onnx`, ONNX models shipped inside PyPI wheels (fetched and sha256-checked by
scripts/real-models), and a few architectures this script builds itself (`arch_*`). Output:
`<dir>/cases/*.onnx` (engineered breaks) and `<dir>/manifest.json`. Nothing here decides an answer by
assumption: every expected verdict comes from a reference nobody here wrote:

- structural validity: `onnx.checker.check_model` (a model it rejects must be refused, exit 2);
- fits at a batch size or not: the model is run, with onnxruntime for the real models and with ONNX's
  own reference evaluator for the generated architectures, at batch sizes 1, 8 and 64. A model whose
  batch axis is declared fixed is run at that size only; at other sizes its expected answer is "fits"
  (the fixed batch is its declared contract, reported as a note).
"""

import copy
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BATCHES = [1, 8, 64]

# Inputs of the shipped models at run time: "B" is the batch axis; other dynamic sizes get a value the
# model accepts. Names are the models' own.
FEEDS = {
    "ch_PP-OCRv4_det_infer": {"x": ("f", ["B", 3, 64, 64])},
    "ch_PP-OCRv4_rec_infer": {"x": ("f", ["B", 3, 48, 160])},
    "ch_ppocr_mobile_v2.0_cls_infer": {"x": ("f", ["B", 3, 48, 192])},
    "ddddocr_common": {"input1": ("f", [1, 1, 64, 128])},
    "ddddocr_common_det": {"images": ("f", [1, 3, 416, 416])},
    "ddddocr_common_old": {"input1": ("f", [1, 1, 64, 128])},
    "magika_standard_v3_3": {"bytes": ("i32", ["B", 2048])},
    "silero_vad": {"input": ("f", ["B", 512]), "state": ("f", [2, "B", 128]), "sr": ("sr", [])},
    "silero_vad_16k_op15": {"input": ("f", ["B", 512]), "state": ("f", [2, "B", 128]), "sr": ("sr", [])},
    "silero_vad_16k_sequence": {"input": ("f", ["B", 576]), "h": ("f", [1, 1, 128]), "c": ("f", [1, 1, 128])},
    "silero_vad_half": {"input": ("f", ["B", 512]), "state": ("f", [2, "B", 128])},
    "silero_vad_op18_ifless": {"input": ("f", ["B", 512]), "sr": ("sr", []), "state": ("f", [2, "B", 128])},
    "silero_vad_openvino_16k": {"input": ("f", [1, 576]), "state": ("f", [2, 1, 128])},
}


def feed(spec, batch, model, rate=16000):
    dtypes = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    out = {}
    rng = np.random.default_rng(15)
    for name, (kind, dims) in spec.items():
        shape = [batch if d == "B" else d for d in dims]
        if rate == 8000 and kind == "f" and name == "input":
            shape[-1] //= 2  # silero takes 256-sample chunks at 8 kHz
        if kind == "sr":
            out[name] = np.array(rate, dtype=np.int64)
        elif kind == "i32":
            out[name] = rng.integers(0, 256, size=shape).astype(np.int32)
        else:
            np_type = np.float16 if dtypes.get(name) == TensorProto.FLOAT16 else np.float32
            out[name] = (rng.standard_normal(shape) * 0.1).astype(np_type)
    return out


def has_dynamic_batch(spec):
    return any("B" in dims for _, dims in spec.values())


def runs(path, spec, batch, engine):
    """True when the model runs at this batch size; the reason when it does not.

    Models with a sample-rate input (Silero) are run at both rates they support, so both branches of
    their `If` count. `engine` "both" runs onnxruntime (which also enforces the declared input shapes)
    and ONNX's reference evaluator, and the model fits only when both run it.
    """
    model = onnx.load(path)
    rates = [16000, 8000] if any(kind == "sr" for kind, _ in spec.values()) else [16000]
    try:
        for rate in rates:
            inputs = feed(spec, batch, model, rate)
            if engine == "both":
                from onnx.reference import ReferenceEvaluator

                ReferenceEvaluator(model).run(None, inputs)
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 4
            options.intra_op_num_threads = 1
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            session.run(None, inputs)
        return True, ""
    except Exception as err:  # the runtime's own verdict is the answer
        return False, str(err).splitlines()[0][:300] if str(err) else type(err).__name__


def checker_verdict(model):
    try:
        onnx.checker.check_model(model)
        return True, ""
    except Exception as err:
        return False, str(err).splitlines()[0][:300]


# --- engineered breaks ----------------------------------------------------------------------------------------


def all_graphs(graph, path=()):
    yield graph, path
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_graphs(attr.g, path + ((node.name or node.op_type, attr.name),))
            for sub in attr.graphs:
                yield from all_graphs(sub, path + ((node.name or node.op_type, attr.name),))


def drop_opset(model):
    del model.opset_import[:]
    return "its opset_import is gone (a file cut short after the graph)"


def dangle_input(model):
    graph = model.graph
    produced = {o for n in graph.node for o in n.output}
    for node in graph.node[len(graph.node) // 2 :]:
        for index, name in enumerate(node.input):
            if name in produced:
                node.input[index] = "rampart_missing_value"
                return f"node {node.name or node.op_type} reads a value nothing produces"
    return None


def duplicate_output(model):
    graph = model.graph
    nodes = [n for n in graph.node if n.op_type != "Constant" and n.output]
    if len(nodes) < 4:
        return None
    first, second = nodes[len(nodes) // 3], nodes[2 * len(nodes) // 3]
    second.output[0] = first.output[0]
    return f"two nodes write {first.output[0]}"


def pin_batch(model, spec):
    pinned = []
    for value in model.graph.input:
        dims = spec.get(value.name, (None, []))[1]
        if "B" not in dims:
            continue
        dim = value.type.tensor_type.shape.dim[dims.index("B")]
        dim.Clear()
        dim.dim_value = 1
        pinned.append(value.name)
    return f"batch axis of {', '.join(pinned)} pinned to 1" if pinned else None


def ranks(model):
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return {}
    out = {}
    for graph, _ in all_graphs(inferred.graph):
        for value in list(graph.value_info) + list(graph.input) + list(graph.output):
            if value.type.tensor_type.HasField("shape"):
                out[value.name] = len(value.type.tensor_type.shape.dim)
    return out


def fold_batch(model, prefer):
    """Puts a Reshape traced at batch 1 (`[1, -1, 0, ...]`) on one input of a residual Add.

    At batch 1 it changes nothing; at batch 8 it folds the batch into the channels, so the Add's inputs
    no longer fit. `prefer` picks the Add: after a Resize (an FPN branch), inside an If, or any.
    """
    rank_of = ranks(model)
    constants = set()
    for graph, _ in all_graphs(model.graph):
        constants |= {t.name for t in graph.initializer}
        for n in graph.node:  # values computed from constants only (a reshaped bias) are constants too
            if all(i in constants or not i for i in n.input) and not any(a.type == onnx.AttributeProto.GRAPH for a in n.attribute):
                constants |= set(n.output)
    choices = []
    for graph, path in all_graphs(model.graph):
        producer = {o: n for n in graph.node for o in n.output}
        for position, node in enumerate(graph.node):
            if node.op_type != "Add" or len(node.input) != 2:
                continue
            a, b = node.input
            if a in constants or b in constants or rank_of.get(a, 0) < 3 or rank_of.get(a) != rank_of.get(b):
                continue
            score = 0
            if prefer == "resize" and any(producer.get(x) is not None and producer[x].op_type == "Resize" for x in (a, b)):
                score = 2
            if prefer == "if" and path:
                score = 2
            choices.append((-score, len(choices), graph, position, node, path))
    if not choices:
        return None
    _, _, graph, position, node, path = sorted(choices, key=lambda c: (c[0], c[1]))[0]
    rank = rank_of[node.input[1]]
    target = f"rampart_fold_target_{position}"
    folded = f"rampart_folded_{position}"
    shape = numpy_helper.from_array(np.array([1, -1] + [0] * (rank - 2), dtype=np.int64))
    graph.node.insert(position, helper.make_node("Constant", [], [target], value=shape, name=target))
    graph.node.insert(position + 1, helper.make_node("Reshape", [node.input[1], target], [folded], name=folded))
    node.input[1] = folded
    where = " > ".join(f"{n}.{a}" for n, a in path) or "main graph"
    return f"Add {node.name or '(unnamed)'} ({where}) gets a batch-1 reshape on one input"


def lstm_hidden(model):
    for graph, _ in all_graphs(model.graph):
        for node in graph.node:
            if node.op_type in ("LSTM", "GRU", "RNN") and node.domain in ("", "ai.onnx"):
                for attr in node.attribute:
                    if attr.name == "hidden_size":
                        attr.i += 1
                        return f"{node.op_type} {node.name or ''} hidden_size {attr.i - 1} -> {attr.i} (weights unchanged)"
    return None


# --- architectures built here (run with ONNX's reference evaluator) ------------------------------------------

RNG = np.random.default_rng(6)


def w(name, *shape):
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.1).astype(np.float32), name)


def i64(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def finish(name, nodes, inputs, outputs, inits, opset=17):
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def fin(name, *dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def arch_resnet():
    n = [
        helper.make_node("Conv", ["x", "c1"], ["h1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "c2"], ["h2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["h2", "h1"], ["res"], name="residual_add"),
        helper.make_node("GlobalAveragePool", ["res"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc", "fc_b"], ["logits"], transB=1, name="fc"),
    ]
    inits = [w("c1", 8, 3, 3, 3), w("c2", 8, 8, 3, 3), w("fc", 10, 8), w("fc_b", 10)]
    return finish("resnet", n, [fin("x", "batch", 3, 8, 8)], [fin("logits", "batch", 10)], inits), {"x": ("f", ["B", 3, 8, 8])}


def arch_transformer():
    d, t, heads = 16, 6, 2
    n = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k_proj"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="v_proj"),
        helper.make_node("Reshape", ["q", "heads_shape"], ["qh"], name="q_heads"),
        helper.make_node("Reshape", ["k", "heads_shape"], ["kh"], name="k_heads"),
        helper.make_node("Reshape", ["v", "heads_shape"], ["vh"], name="v_heads"),
        helper.make_node("Transpose", ["qh"], ["qt"], perm=[0, 2, 1, 3], name="q_t"),
        helper.make_node("Transpose", ["kh"], ["kt"], perm=[0, 2, 3, 1], name="k_t"),
        helper.make_node("Transpose", ["vh"], ["vt"], perm=[0, 2, 1, 3], name="v_t"),
        helper.make_node("MatMul", ["qt", "kt"], ["scores"], name="scores"),
        helper.make_node("Softmax", ["scores"], ["attn"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["attn", "vt"], ["ctx"], name="context"),
        helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3], name="ctx_t"),
        helper.make_node("Reshape", ["ctx_t", "merge_shape"], ["merged"], name="merge_heads"),
        helper.make_node("MatMul", ["merged", "wo"], ["attn_out"], name="o_proj"),
        helper.make_node("Add", ["x", "attn_out"], ["res1"], name="attn_residual"),
        helper.make_node("LayerNormalization", ["res1", "ln_s", "ln_b"], ["norm1"], axis=-1, name="ln1"),
        helper.make_node("MatMul", ["norm1", "w1"], ["ff1"], name="ff1"),
        helper.make_node("Relu", ["ff1"], ["ff1r"], name="ff_relu"),
        helper.make_node("MatMul", ["ff1r", "w2"], ["ff2"], name="ff2"),
        helper.make_node("Add", ["norm1", "ff2"], ["y"], name="ff_residual"),
    ]
    inits = [w("wq", d, d), w("wk", d, d), w("wv", d, d), w("wo", d, d), w("w1", d, 32), w("w2", 32, d), w("ln_s", d), w("ln_b", d),
             i64("heads_shape", [0, 0, heads, d // heads]), i64("merge_shape", [0, 0, d])]
    return finish("encoder", n, [fin("x", "batch", t, d)], [fin("y", "batch", t, d)], inits), {"x": ("f", ["B", t, d])}


def arch_lstm():
    hidden, feat, seq = 8, 4, 5
    n = [
        helper.make_node("Transpose", ["x"], ["x_t"], perm=[1, 0, 2], name="to_time_major"),
        helper.make_node("LSTM", ["x_t", "W", "R", "B", "", "h0", "c0"], ["Y", "Y_h", "Y_c"], hidden_size=hidden, name="lstm"),
        helper.make_node("Squeeze", ["Y_h", "zero"], ["last"], name="last_state"),
        helper.make_node("Gemm", ["last", "fc", "fc_b"], ["logits"], transB=1, name="head"),
        helper.make_node("ReduceMean", ["x"], ["mean_feat"], axes=[1], keepdims=0, name="mean_over_time"),
        helper.make_node("MatMul", ["mean_feat", "skip_w"], ["skip"], name="skip_proj"),
        helper.make_node("Add", ["logits", "skip"], ["y"], name="skip_add"),
    ]
    inits = [w("W", 1, 4 * hidden, feat), w("R", 1, 4 * hidden, hidden), w("B", 1, 8 * hidden), w("fc", 3, hidden), w("fc_b", 3),
             w("skip_w", feat, 3), i64("zero", [0])]
    inputs = [fin("x", "batch", seq, feat), fin("h0", 1, "batch", hidden), fin("c0", 1, "batch", hidden)]
    return finish("lstm", n, inputs, [fin("y", "batch", 3)], inits), {
        "x": ("f", ["B", seq, feat]), "h0": ("f", [1, "B", hidden]), "c0": ("f", [1, "B", hidden])}


def arch_unet():
    n = [
        helper.make_node("Conv", ["x", "e1"], ["enc1"], pads=[1, 1, 1, 1], name="enc1"),
        helper.make_node("MaxPool", ["enc1"], ["down"], kernel_shape=[2, 2], strides=[2, 2], name="down"),
        helper.make_node("Conv", ["down", "e2"], ["enc2"], pads=[1, 1, 1, 1], name="enc2"),
        helper.make_node("Resize", ["enc2", "", "scales"], ["up"], mode="nearest", name="up"),
        helper.make_node("Conv", ["up", "lat"], ["up_c"], name="lateral"),
        helper.make_node("Add", ["enc1", "up_c"], ["skip"], name="skip_add"),
        helper.make_node("ConvTranspose", ["skip", "dec"], ["dec_out"], strides=[2, 2], kernel_shape=[2, 2], name="dec"),
        helper.make_node("Conv", ["dec_out", "head"], ["y"], name="head"),
    ]
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    inits = [w("e1", 4, 3, 3, 3), w("e2", 8, 4, 3, 3), w("lat", 4, 8, 1, 1), w("dec", 4, 4, 2, 2), w("head", 2, 4, 1, 1), scales]
    return finish("unet", n, [fin("x", "batch", 3, 8, 8)], [fin("y", "batch", 2, 16, 16)], inits), {"x": ("f", ["B", 3, 8, 8])}


def arch_detector():
    n = [
        helper.make_node("Conv", ["x", "stem"], ["feat"], pads=[1, 1, 1, 1], name="stem"),
        helper.make_node("Split", ["feat", "halves"], ["left", "right"], axis=1, name="csp_split"),
        helper.make_node("Conv", ["right", "block"], ["right2"], pads=[1, 1, 1, 1], name="csp_block"),
        helper.make_node("Add", ["right", "right2"], ["right3"], name="csp_residual"),
        helper.make_node("Concat", ["left", "right3"], ["csp"], axis=1, name="csp_concat"),
        helper.make_node("Conv", ["csp", "box"], ["boxes"], name="box_head"),
        helper.make_node("Conv", ["csp", "cls"], ["classes"], name="cls_head"),
        helper.make_node("Concat", ["boxes", "classes"], ["raw"], axis=1, name="heads_concat"),
        helper.make_node("Reshape", ["raw", "flat_shape"], ["flat"], name="flatten_anchors"),
        helper.make_node("Transpose", ["flat"], ["y"], perm=[0, 2, 1], name="anchors_last"),
    ]
    inits = [w("stem", 8, 3, 3, 3), i64("halves", [4, 4]), w("block", 4, 4, 3, 3), w("box", 4, 8, 1, 1), w("cls", 3, 8, 1, 1),
             i64("flat_shape", [0, 7, -1])]
    return finish("detector", n, [fin("x", "batch", 3, 8, 8)], [fin("y", "batch", 64, 7)], inits), {"x": ("f", ["B", 3, 8, 8])}


ARCHS = {"arch_resnet": arch_resnet, "arch_transformer": arch_transformer, "arch_lstm": arch_lstm,
         "arch_unet": arch_unet, "arch_detector": arch_detector}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/real-models"
    original, cases_dir = os.path.join(root, "original"), os.path.join(root, "cases")
    os.makedirs(cases_dir, exist_ok=True)
    models = {}
    for name, build in ARCHS.items():
        model, spec = build()
        onnx.checker.check_model(model, full_check=True)
        path = os.path.join(original, name + ".onnx")
        onnx.save(model, path)
        models[name] = (path, spec, "both")
    for name, spec in FEEDS.items():
        path = os.path.join(original, name + ".onnx")
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run scripts/real-models first")
        models[name] = (path, spec, "onnxruntime")

    cases = []
    for name, (path, spec, engine) in sorted(models.items()):
        base = onnx.load(path)
        dynamic = has_dynamic_batch(spec)
        prefer = "if" if name.startswith("silero") else "resize"
        breaks = [("self", None), ("no_opset", drop_opset), ("dangling_input", dangle_input),
                  ("duplicate_output", duplicate_output), ("fold_batch", lambda m: fold_batch(m, prefer)),
                  ("lstm_hidden", lstm_hidden)]
        if dynamic:
            breaks.append(("pinned_batch", lambda m: pin_batch(m, spec)))
        for kind, make in breaks:
            if make is None:
                candidate, what = path, "the model against itself"
            else:
                model = copy.deepcopy(base)
                what = make(model)
                if what is None:
                    continue
                candidate = os.path.join(cases_dir, f"{name}__{kind}.onnx")
                onnx.save(model, candidate)
            valid, why = checker_verdict(onnx.load(candidate))
            case = {"name": f"{name}/{kind}", "model": name, "kind": kind, "change": what,
                    "candidate": os.path.relpath(candidate, root), "baseline": os.path.relpath(path, root)}
            if not valid:
                case.update(expect="invalid", reference=f"onnx.checker rejects it: {why}", batches={})
            else:
                batches, notes = {}, []
                for batch in BATCHES if dynamic else [1]:
                    ok, reason = runs(candidate, spec, batch, engine)
                    batches[str(batch)] = "fits" if ok else "does-not-fit"
                    if not ok:
                        notes.append(f"batch {batch}: {reason}")
                if not dynamic:
                    for batch in BATCHES[1:]:
                        batches[str(batch)] = batches["1"]
                    notes.append("declared fixed batch: run at batch 1 only")
                fits_all = all(v == "fits" for v in batches.values())
                case.update(expect="compatible" if kind == "self" and fits_all else "incompatible",
                            reference=f"onnx.checker accepts it; {'onnxruntime and the reference evaluator' if engine == 'both' else engine}: " + ("; ".join(notes) or "runs at 1, 8, 64"),
                            batches=batches)
                if kind != "self" and fits_all:
                    case["expect"] = "compatible"
            print(f"{case['name']}: {case['expect']} {case['batches']}", flush=True)
            cases.append(case)
    with open(os.path.join(root, "manifest.json"), "w") as out:
        json.dump({"batch_sizes": BATCHES, "cases": cases}, out, indent=1)
    print(f"{len(cases)} cases written to {root}/manifest.json")


if __name__ == "__main__":
    main()
