"""``onnx2fp16``: FP32 ONNX -> FP16 ONNX (inputs/outputs stay FP32), for GPU execution providers.

CPU ONNX Runtime has few FP16 kernels, so the check runs the model where it can and the parity
tolerance for FP16 is looser (``atol``/``rtol`` 1e-2) than for FP32.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tritonstack.converters.steps.base import ExportContext, OnnxModel, OnnxStep


@dataclasses.dataclass(frozen=True)
class Fp16Input:
    model: OnnxModel
    output: Path


def run(inp: Fp16Input) -> OnnxModel:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(inp.model.path))
    converted = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True)
    onnx.save(converted, str(inp.output))
    return OnnxModel.load(inp.output)


class Onnx2Fp16Step(OnnxStep):
    """FP16 ONNX for the ONNX targets (TensorRT builds its FP16 plan from the FP32 graph)."""

    name = "onnx2fp16"

    def skipped_because(self, ctx: ExportContext) -> str | None:
        from tritonstack.converters.spec import Precision, Target

        if Precision.FP16 not in ctx.spec.precisions:
            return "fp16 not asked"
        if ctx.spec.target is Target.TENSORRT:
            return "the TensorRT plan is built FP16 from the FP32 graph"
        return None

    def run(self, ctx: ExportContext) -> OnnxModel:
        return run(Fp16Input(ctx.served["fp32"], ctx.work / "fp16" / "model.onnx"))

    def keep(self, ctx: ExportContext, result: object) -> None:
        assert isinstance(result, OnnxModel)
        ctx.served["fp16"] = result
