"""Per-token (per-row) dynamic INT8 for the feed-forward MatMuls of transformer encoders.

ORT's ``quantize_dynamic`` quantizes a MatMul input with ONE scale per tensor (the whole batch).
In BERT-like encoders a few tokens ([CLS] above all) carry activations 2-3x larger than every
other token in the feed-forward block (MiniLM FFN input: 28 vs 13; GELU output: 16 vs 6), so
one scale wastes most of the 8 bits on them. Measured on MiniLM (1000 held-out sentences):
weights-only INT8 keeps recall@10 at 0.98; per-tensor activations drop it to 0.90; per-token
activations in the two FFN MatMuls bring it back to 0.95 (0.96 with :mod:`smooth`).

This rewrites selected MatMuls (constant 2-D weight ``W [K, N]``) into plain ONNX ops that ORT
runs on its integer kernels (``MatMulInteger``)::

    s_row = max_k |x_row,k| / 127                 (per token, at run time)
    x_q   = QuantizeLinear(x, s_row, 128)          uint8, zero point 128 = symmetric
    y     = MatMulInteger(x_q, W_q, 128) * s_w * s_row     W_q per column, s_w = max|W_:n|/127

``W_q`` is stored as the ``weights`` form says (:mod:`converters.int8_kernels`): ``u8`` as
``int8 + 128`` with zero point 128 (the same integers, run on ORT's exact u8 x u8 kernels),
``s8`` as int8 (u8 x s8 kernels, which saturate on CPUs without VNNI), ``s7`` as int8 in
[-64, 64] (``s_w = max|W_:n| / 64``).

* ``sym`` (above): MatMuls that expand (``N > K``: the FFN up-projection).
* ``shift``: MatMuls fed by a GELU (erf or tanh form; ``GELU(x) >= -0.17``): ``x + 0.17 >= 0``
  is quantized unsigned with zero point 0 (all 256 levels on the one-sided range) and
  ``0.17 * colsum(W)`` is taken off the bias.

Everything else (attention projections, the attention output) is left as float MatMul for
``quantize_dynamic`` to quantize per tensor as before.
"""

from __future__ import annotations

import numpy as np

GELU_SHIFT = 0.17  # min over x of x * Phi(x) is -0.16997 (erf form); tanh form alike
_GELU_OPS = ("Gelu", "FastGelu", "BiasGelu", "QuickGelu")


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _is_gelu_output(name: str, producer: dict) -> bool:
    """The tensor is a GELU's output: a fused Gelu op, or a Mul with an Erf/Tanh at most 3 nodes up."""
    node = producer.get(name)
    if node is None:
        return False
    if node.op_type in _GELU_OPS:
        return True
    if node.op_type != "Mul":
        return False
    frontier, seen = [node], set()
    for _ in range(3):
        parents = [producer[i] for n in frontier for i in n.input if i in producer and i not in seen]
        seen.update(o for p in parents for o in p.output)
        if any(p.op_type in ("Erf", "Tanh") for p in parents):
            return True
        frontier = parents
    return False


def plan(model) -> dict[str, str]:
    """MatMul node name -> ``sym`` | ``shift`` for the MatMuls this rewrite takes."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    out: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or len(inits[node.input[1]].dims) != 2:
            continue
        k, n = inits[node.input[1]].dims
        if _is_gelu_output(node.input[0], producer):
            out[node.name] = "shift"
        elif n > k:
            out[node.name] = "sym"
    return out


def rewrite(model, weights: str = "u8") -> int:
    """Rewrite ``model`` (an FP32 ModelProto) in place; returns how many MatMuls were rewritten.

    Needs opset >= 13 (per-axis QuantizeLinear); below that nothing is rewritten.
    """
    from onnx import TensorProto, helper, numpy_helper

    opset = _opset(model)
    chosen = plan(model)
    if opset < 13 or not chosen:
        return 0
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        inits[name] = graph.initializer[-1]
        return name

    def reduce_max(x: str, out: str) -> object:
        if opset >= 18:
            return helper.make_node("ReduceMax", [x, "pt_axis_last"], [out], keepdims=1)
        return helper.make_node("ReduceMax", [x], [out], axes=[-1], keepdims=1)

    const("pt_axis_last", np.array([-1], np.int64))
    const("pt_flat", np.array([-1], np.int64))
    const("pt_column", np.array([-1, 1], np.int64))
    const("pt_eps", np.array(1e-8, np.float32))
    const("pt_zp128", np.array(128, np.uint8))
    const("pt_zp0", np.array(0, np.uint8))
    levels = 64.0 if weights == "s7" else 127.0
    const("pt_zero", np.array([0], np.int64))
    const("pt_minus1", np.array([-1], np.int64))

    quantized: dict[tuple[str, str, int], tuple[str, str]] = {}  # (x, mode, K) -> (x_q, s_column)
    new_nodes = []
    count = 0
    for node in graph.node:
        mode = chosen.get(node.name)
        if mode is None:
            new_nodes.append(node)
            continue
        count += 1
        x, w_name, y = node.input[0], node.input[1], node.output[0]
        w = numpy_helper.to_array(inits[w_name]).astype(np.float32)
        k, n = w.shape
        p = f"pt{count}"
        s_w = np.abs(w).max(axis=0) / levels
        s_w[s_w == 0] = 1.0
        w_q = np.clip(np.round(w / s_w), -levels, levels).astype(np.int8)
        if weights == "u8":
            const(p + "_Wq", (w_q.astype(np.int16) + 128).astype(np.uint8))
        else:
            const(p + "_Wq", w_q)
        const(p + "_sw", s_w.astype(np.float32))
        key = (x, mode, k)
        if key not in quantized:  # one quantization of an activation shared by several MatMuls
            q = f"{p}_{mode}"
            if mode == "shift":
                const(q + "_c", np.array(GELU_SHIFT, np.float32))
                new_nodes.append(helper.make_node("Add", [x, q + "_c"], [q + "_x"]))
                source = q + "_x"
                new_nodes.append(reduce_max(source, q + "_max"))
                const(q + "_inv", np.array(1.0 / 255.0, np.float32))
            else:
                source = x
                new_nodes.append(helper.make_node("Abs", [x], [q + "_abs"]))
                new_nodes.append(reduce_max(q + "_abs", q + "_max"))
                const(q + "_inv", np.array(1.0 / 127.0, np.float32))
            const(q + "_2d", np.array([-1, k], np.int64))
            new_nodes += [
                helper.make_node("Mul", [q + "_max", q + "_inv"], [q + "_s0"]),
                helper.make_node("Max", [q + "_s0", "pt_eps"], [q + "_s"]),
                helper.make_node("Reshape", [source, q + "_2d"], [q + "_x2"]),
                helper.make_node("Reshape", [q + "_s", "pt_flat"], [q + "_s1"]),
                helper.make_node("Reshape", [q + "_s", "pt_column"], [q + "_scol"]),
            ]
            zero_point = []
            if mode == "sym":
                new_nodes += [
                    helper.make_node("Shape", [q + "_s1"], [q + "_m"]),
                    helper.make_node("ConstantOfShape", [q + "_m"], [q + "_zp"],
                                     value=numpy_helper.from_array(np.array([128], np.uint8))),
                ]
                zero_point = [q + "_zp"]
            new_nodes.append(
                helper.make_node("QuantizeLinear", [q + "_x2", q + "_s1", *zero_point], [q + "_xq"], axis=0))
            quantized[key] = (q + "_xq", q + "_scol")
        x_q, s_col = quantized[key]
        zero_points = ["pt_zp128" if mode == "sym" else "pt_zp0", "pt_zp128"] if weights == "u8" else (
            ["pt_zp128"] if mode == "sym" else [])
        new_nodes += [
            helper.make_node("MatMulInteger", [x_q, p + "_Wq", *zero_points], [p + "_yi"]),
            helper.make_node("Cast", [p + "_yi"], [p + "_yf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "_yf", p + "_sw"], [p + "_yw"]),
            helper.make_node("Mul", [p + "_yw", s_col], [p + "_y2"]),
            helper.make_node("Shape", [x], [p + "_xshape"]),
            helper.make_node("Slice", [p + "_xshape", "pt_zero", "pt_minus1"], [p + "_lead"]),
            helper.make_node("Concat", [p + "_lead", const(p + "_n", np.array([n], np.int64))],
                             [p + "_shape"], axis=0),
        ]
        result, fix = y, None
        if mode == "shift":
            # x = (x + c) - c: take c * colsum(W as quantized) off the bias (or subtract it here).
            correction = (GELU_SHIFT * (w_q.astype(np.float32) * s_w).sum(axis=0)).astype(np.float32)
            add = next((c for c in consumers.get(y, []) if c.op_type == "Add"), None)
            bias = None
            if add is not None and uses.get(y) == 1:
                bias = next((i for i in add.input if i in inits and uses.get(i) == 1), None)
            if bias is not None and tuple(inits[bias].dims) == (n,):
                b = numpy_helper.to_array(inits[bias]).astype(np.float32)
                inits[bias].CopyFrom(numpy_helper.from_array(b - correction, bias))
            else:
                result = p + "_uncorrected"
                fix = helper.make_node("Sub", [result, const(p + "_corr", correction)], [y])
        new_nodes.append(helper.make_node("Reshape", [p + "_y2", p + "_shape"], [result]))
        if fix is not None:
            new_nodes.append(fix)
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {i for node in graph.node for i in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return count
