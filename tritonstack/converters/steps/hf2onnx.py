"""``hf2onnx``: a Hugging Face folder -> ONNX through optimum's exporter.

For ``feature-extraction`` the sentence embedding is computed INSIDE the graph: after optimum
exported the plain encoder (``last_hidden_state``), we append mean pooling weighted by
``attention_mask`` and L2 normalisation as ONNX nodes, and the graph's only output becomes
``embedding [batch, hidden]``. Appending (rather than exporting a wrapper module) keeps optimum
doing the export it knows (its input/axis naming, opset handling) and keeps the encoder's
subgraphs in the exact shape ONNX Runtime's BERT fusions pattern-match (verified: Attention,
SkipLayerNormalization and BiasGelu fuse; see docs/converters.md).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import warnings
from pathlib import Path

from tritonstack.converters.spec import EMBEDDING_OUTPUT
from tritonstack.converters.steps.base import ExportContext, OnnxModel, OnnxStep

EMBEDDING = EMBEDDING_OUTPUT


@dataclasses.dataclass(frozen=True)
class Hf2OnnxInput:
    folder: Path
    task: str
    opset: int
    output: Path
    pooling: str = "mean"  # feature-extraction: mean | cls | max
    normalize: bool = True


def run(inp: Hf2OnnxInput) -> OnnxModel:
    from optimum.exporters.onnx import main_export

    raw_dir = inp.output.parent / "optimum"
    shutil.rmtree(raw_dir, ignore_errors=True)
    quiet = [logging.getLogger(n) for n in ("optimum", "transformers", "torch.onnx")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main_export(str(inp.folder), output=str(raw_dir), task=inp.task, opset=inp.opset,
                        library_name="transformers", do_validation=False, device="cpu")
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)
    exported = raw_dir / "model.onnx"
    if inp.task == "feature-extraction":
        append_pooling(exported, inp.output, inp.pooling, inp.normalize)
    else:
        shutil.copyfile(exported, inp.output)
    return OnnxModel.load(inp.output)


def append_pooling(src: Path, dest: Path, pooling: str = "mean", normalize: bool = True,
                   hidden_output: str = "last_hidden_state") -> None:
    """Replace the encoder output by the pooled (and, with ``normalize``, L2-normalized) embedding.

    Same arithmetic as sentence-transformers' Pooling (+ Normalize, eps 1e-12 on the norm):
    ``mean`` = ``sum(h * m) / max(sum(m), 1e-9)``; ``cls`` = the first token's state; ``max`` =
    the largest value per channel over the real tokens (padding set to -1e9 first).
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    hidden = next((o for o in graph.output if o.name == hidden_output), None)
    if hidden is None:
        names = [o.name for o in graph.output]
        raise ValueError(f"exported graph has no {hidden_output!r} output; got {names}")
    dims = hidden.type.tensor_type.shape.dim
    width = dims[2].dim_value if len(dims) == 3 else 0
    batch_axis = dims[0].dim_param or "batch_size"
    if pooling not in ("mean", "cls", "max"):
        raise ValueError(f"pooling {pooling!r}: choose mean, cls or max")
    consts = {
        "pool_axis_last": np.array([-1], np.int64),
        "pool_axis_seq": np.array([1], np.int64),
        "pool_min_count": np.array(1e-9, np.float32),
        "pool_min_norm": np.array(1e-12, np.float32),
        "pool_first": np.array([0], np.int64),
        "pool_one": np.array(1.0, np.float32),
        "pool_big": np.array(1e9, np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    n = helper.make_node
    pooled = "pool_pooled" if normalize else EMBEDDING
    nodes = [n("Cast", ["attention_mask"], ["pool_mask_f"], to=TensorProto.FLOAT),
             n("Unsqueeze", ["pool_mask_f", "pool_axis_last"], ["pool_mask"])]
    if pooling == "mean":
        nodes += [n("Mul", [hidden_output, "pool_mask"], ["pool_masked"]),
                  n("ReduceSum", ["pool_masked", "pool_axis_seq"], ["pool_sum"], keepdims=0),
                  n("ReduceSum", ["pool_mask", "pool_axis_seq"], ["pool_count_raw"], keepdims=0),
                  n("Max", ["pool_count_raw", "pool_min_count"], ["pool_count"]),
                  n("Div", ["pool_sum", "pool_count"], [pooled])]
    elif pooling == "cls":
        nodes = [n("Gather", [hidden_output, "pool_first"], ["pool_first_token"], axis=1),
                 n("Squeeze", ["pool_first_token", "pool_axis_seq"], [pooled])]
    else:  # max over real tokens: padding pushed to -1e9 first, as sentence-transformers does
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        reduce_max = (n("ReduceMax", ["pool_masked", "pool_axis_seq"], [pooled], keepdims=0) if opset >= 18
                      else n("ReduceMax", ["pool_masked"], [pooled], axes=[1], keepdims=0))
        nodes += [n("Sub", ["pool_one", "pool_mask"], ["pool_pad"]),
                  n("Mul", ["pool_pad", "pool_big"], ["pool_penalty"]),
                  n("Sub", [hidden_output, "pool_penalty"], ["pool_masked"]),
                  reduce_max]
    if normalize:
        nodes += [n("Mul", [pooled, pooled], ["pool_sq"]),
                  n("ReduceSum", ["pool_sq", "pool_axis_last"], ["pool_sumsq"], keepdims=1),
                  n("Sqrt", ["pool_sumsq"], ["pool_norm_raw"]),
                  n("Max", ["pool_norm_raw", "pool_min_norm"], ["pool_norm"]),
                  n("Div", [pooled, "pool_norm"], [EMBEDDING])]
    graph.node.extend(nodes)
    used = {i for node in graph.node for i in node.input}
    kept = [i for i in graph.initializer if i.name in used or not i.name.startswith("pool_")]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.output[:]
    shape = [batch_axis, width or None]
    graph.output.append(helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, shape))
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))


class Hf2OnnxStep(OnnxStep):
    """A Hugging Face folder to its FP32 graph."""

    name = "hf2onnx"

    def skipped_because(self, ctx: ExportContext) -> str | None:
        from tritonstack.converters.sources.hf import HFSource

        return None if isinstance(ctx.source, HFSource) else "source is a torch factory (torch2onnx runs)"

    def run(self, ctx: ExportContext) -> OnnxModel:
        source = ctx.source
        return run(Hf2OnnxInput(source.folder, ctx.family.task, ctx.spec.opset,
                                ctx.work / "fp32" / "model.onnx", source.pooling, source.normalize))

    def keep(self, ctx: ExportContext, result: object) -> None:
        assert isinstance(result, OnnxModel)
        ctx.raw = ctx.served["fp32"] = result
