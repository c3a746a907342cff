"""``optimize``: ONNX Runtime's transformer fusions for BERT-like encoders.

``onnxruntime.transformers.optimizer.optimize_model`` rewrites the encoder into fused contrib ops
(Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization). The fused graph is what
the CPU targets serve and what dynamic INT8 quantizes (Attention -> QAttention). Static QDQ
quantization and TensorRT start from the unfused graph: TensorRT does not know contrib ops.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

from tritonstack.converters.steps.base import ExportContext, OnnxModel, Step


@dataclasses.dataclass(frozen=True)
class OptimizeInput:
    model: OnnxModel
    model_type: str  # "bert" for every encoder in converters.sources.hf.FUSABLE
    output: Path


@dataclasses.dataclass(frozen=True)
class OptimizeResult:
    model: OnnxModel
    fused: dict[str, int]


FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "EmbedLayerNormalization",
             "BiasGelu", "FastGelu", "Gelu", "LayerNormalization")


def run(inp: OptimizeInput) -> OptimizeResult:
    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    # opt_level=0: graph-level fusions only, saved as portable ONNX (ORT's own level-1/2
    # optimizations still run at session creation in Triton).
    optimized = optimize_model(str(inp.model.path), model_type=inp.model_type, num_heads=0,
                               hidden_size=0, opt_level=0, use_gpu=False)
    optimized.save_model_to_file(str(inp.output))
    ops = Counter(node.op_type for node in optimized.model.graph.node)
    fused = {op: ops[op] for op in FUSED_OPS if ops.get(op)}
    return OptimizeResult(OnnxModel.load(inp.output), fused)


class OptimizeStep(Step):
    """ORT's offline transformer fusions, served instead of the as-exported graph (opt-in)."""

    name = "optimize"

    def skipped_because(self, ctx: ExportContext) -> str | None:
        from tritonstack.converters.spec import Target

        if ctx.spec.target is Target.TENSORRT:
            return "TensorRT fuses itself and does not know ORT contrib ops"
        if not ctx.spec.optimize:
            return "not asked (--optimize); ORT fuses at load"
        if not ctx.family.fusable_as:
            return "no ORT transformer fusions for this architecture"
        return None

    def run(self, ctx: ExportContext) -> OptimizeResult:
        assert ctx.raw is not None
        return run(OptimizeInput(ctx.raw, str(ctx.family.fusable_as),
                                 ctx.work / "fp32" / "model.opt.onnx"))

    def keep(self, ctx: ExportContext, result: object) -> None:
        assert isinstance(result, OptimizeResult)
        ctx.served["fp32"] = result.model

    def to_dict(self, result: object) -> dict:
        assert isinstance(result, OptimizeResult)
        return {"model": result.model.to_dict(), "fused": result.fused}

    def from_dict(self, data: dict) -> OptimizeResult:
        return OptimizeResult(OnnxModel.from_dict(data["model"]), data["fused"])

    def describe(self, result: object) -> str:
        assert isinstance(result, OptimizeResult)
        return "fused " + ", ".join(f"{k} x{v}" for k, v in result.fused.items())
