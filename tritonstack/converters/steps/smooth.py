"""``smooth``: SmoothQuant-style activation smoothing of an FP32 ONNX graph, before dynamic INT8.

BERT-like encoders put a few outlier channels in their LayerNorm outputs (MiniLM: up to 28 vs a
median of 2), and ORT's dynamic quantizer gives each MatMul input ONE scale, so these channels
cost every other channel its resolution. Per smoothed activation ``X`` feeding MatMuls with
weights ``W`` (Q/K/V share one ``X``)::

    s_j = max|X_j| ** alpha / max_n |W_jn| ** (1 - alpha)      (maxima: calibration data)
    X @ W  ==  (X / s) @ (s[:, None] * W)

The ``1 / s`` is an inserted ``Mul`` (not folded into the LayerNorm's gamma/beta: in post-LN BERT
that LayerNorm output is also the residual input of the next Add, which must stay unscaled);
the ``s`` goes into the weight rows. In FP32 the graph computes the same function (float
rounding only; the tests check it); after quantization the activation is flatter and the weights
absorb the outliers, which per-channel INT8 weights tolerate.

Which MatMuls: those with a constant 2-D weight whose input is a ``LayerNormalization`` output
(BERT: Q/K/V and the FFN up-projection), found from the graph, not from node names.
Activation maxima come from the calibration feeds, real tokens only (``attention_mask == 1``),
never from the held-out evaluation data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from tritonstack.converters.steps.base import ExportContext, OnnxModel, Step, ort_session

Feed = Mapping[str, np.ndarray]
SMOOTHED_PRODUCERS = ("LayerNormalization",)
DEFAULT_ALPHA = 0.5


@dataclasses.dataclass(frozen=True)
class SmoothInput:
    model: OnnxModel  # FP32, unfused
    output: Path
    calibration: Callable[[], Sequence[Feed]]
    alpha: float = DEFAULT_ALPHA


@dataclasses.dataclass(frozen=True)
class SmoothResult:
    model: OnnxModel
    smoothed: int  # activations smoothed (Q/K/V count once)
    matmuls: int  # MatMuls whose weights were rescaled

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model.to_dict(), "smoothed": self.smoothed, "matmuls": self.matmuls}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SmoothResult:
        return cls(OnnxModel.from_dict(data["model"]), int(data["smoothed"]), int(data["matmuls"]))  # type: ignore[arg-type]


def run(inp: SmoothInput) -> SmoothResult:
    import onnx

    if not 0.0 <= inp.alpha <= 1.0:
        raise ValueError(f"smoothing alpha must lie in 0..1, got {inp.alpha}")
    model = onnx.load(str(inp.model.path))
    groups = smoothable_groups(model)
    maxima = activation_maxima(inp.model.path, list(groups), inp.calibration())
    count = smooth_graph(model, groups, maxima, inp.alpha)
    inp.output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(inp.output))
    return SmoothResult(OnnxModel.load(inp.output), len(groups), count)


def smoothable_groups(model) -> dict[str, list]:
    """Activation name -> the MatMul nodes it feeds, for LayerNorm-fed MatMuls with constant
    2-D weights used by that node only (a shared weight cannot be rescaled for one consumer)."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    groups: dict[str, list] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or uses[node.input[1]] != 1:
            continue
        if len(inits[node.input[1]].dims) != 2:
            continue
        source = producer.get(node.input[0])
        if source is not None and source.op_type in SMOOTHED_PRODUCERS:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def activation_maxima(path: Path, names: list[str], feeds: Sequence[Feed]) -> dict[str, np.ndarray]:
    """Per-channel ``max |x|`` of the named intermediate tensors over ``feeds``; for ``[B, S, C]``
    tensors only the positions where the feed's ``attention_mask`` is 1 count."""
    import tempfile

    import onnx
    from onnx import TensorProto, helper

    if not names:
        return {}
    model = onnx.load(str(path))
    for name in names:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    maxima: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.onnx"
        onnx.save(model, str(probe))
        session = ort_session(probe)
        inputs = {i.name for i in session.get_inputs()}
        from tritonstack.converters.progress import bar

        for feed in bar(feeds, "smoothing: calibration batches"):
            outs = session.run(names, {k: v for k, v in feed.items() if k in inputs})
            mask = feed.get("attention_mask")
            for name, value in zip(names, outs, strict=True):
                value = np.abs(value)
                if mask is not None and value.ndim == 3 and value.shape[:2] == mask.shape:
                    value = value[mask.astype(bool)]
                channel_max = value.reshape(-1, value.shape[-1]).max(axis=0)
                maxima[name] = channel_max if name not in maxima else np.maximum(maxima[name], channel_max)
    missing = [n for n in names if n not in maxima]
    if missing:
        raise ValueError(f"no calibration data reached {missing[:3]}")
    return maxima


def smoothing_scales(x_max: np.ndarray, w_max: np.ndarray, alpha: float) -> np.ndarray:
    """``s_j = max|X_j|^alpha / max|W_j|^(1-alpha)``; channels never active get ``s = 1``."""
    x = np.asarray(x_max, np.float64)
    w = np.asarray(w_max, np.float64)
    s = np.ones_like(x)
    live = (x > 1e-5) & (w > 1e-5)
    s[live] = x[live] ** alpha / w[live] ** (1.0 - alpha)
    return s.astype(np.float32)


def smooth_graph(model, groups: dict[str, list], maxima: Mapping[str, np.ndarray], alpha: float) -> int:
    """Rewrite ``model`` in place: ``Mul(X, 1/s)`` before each group, weight rows times ``s``."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    inserted: dict[str, object] = {}  # name of the group's first MatMul -> the Mul placed before it
    count = 0
    for index, (activation, matmuls) in enumerate(groups.items()):
        weights = [numpy_helper.to_array(inits[m.input[1]]).astype(np.float32) for m in matmuls]
        w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        s = smoothing_scales(maxima[activation], w_max, alpha)
        inverse, smoothed = f"smooth_{index}_inv_scale", f"{activation}_smoothed"
        graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), inverse))
        inserted[matmuls[0].name or matmuls[0].output[0]] = helper.make_node(
            "Mul", [activation, inverse], [smoothed], name=f"smooth_{index}")
        for matmul, weight in zip(matmuls, weights, strict=True):
            inits[matmul.input[1]].CopyFrom(
                numpy_helper.from_array((weight * s[:, None]).astype(np.float32), matmul.input[1]))
            matmul.input[0] = smoothed
            count += 1
    nodes = []
    for node in graph.node:  # keep topological order: each Mul right before its group's first MatMul
        key = node.name or node.output[0]
        if key in inserted:
            nodes.append(inserted.pop(key))
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def per_token_applies(ctx: ExportContext) -> str | None:
    """Why dynamic per-token INT8 (smoothing + per-token FFN scales) does not apply (None: it does)."""
    from tritonstack.converters.sources.hf import HFSource
    from tritonstack.converters.spec import Int8Mode, Precision

    if Precision.INT8 not in ctx.spec.precisions:
        return "int8 not asked"
    if ctx.spec.effective_int8_mode is Int8Mode.STATIC:
        return "static INT8 calibrates its own activation ranges"
    if not isinstance(ctx.source, HFSource):
        return "not a HF transformer"
    if ctx.spec.int8_activations != "per-token":
        return "--int8-activations per-tensor"
    return None


class SmoothStep(Step):
    """Activation smoothing before dynamic per-token INT8 (HF transformer encoders)."""

    name = "smooth"

    def skipped_because(self, ctx: ExportContext) -> str | None:
        return per_token_applies(ctx)

    def run(self, ctx: ExportContext) -> SmoothResult:
        assert ctx.raw is not None
        size = ctx.spec.calibration_size
        return run(SmoothInput(ctx.raw, ctx.work / "int8-dynamic" / "smoothed.onnx",
                               lambda: ctx.family.calibration("corpus", size)))

    def keep(self, ctx: ExportContext, result: object) -> None:
        assert isinstance(result, SmoothResult)
        ctx.smoothed = result.model

    def to_dict(self, result: object) -> dict:
        assert isinstance(result, SmoothResult)
        return result.to_dict()

    def from_dict(self, data: dict) -> SmoothResult:
        return SmoothResult.from_dict(data)

    def describe(self, result: object) -> str:
        assert isinstance(result, SmoothResult)
        return f"{result.smoothed} activations, {result.matmuls} MatMuls"
