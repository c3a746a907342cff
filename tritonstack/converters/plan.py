"""Which steps an export runs, in order: the registry of the pipeline.

Every step is asked, in this order, whether it applies to the export at hand (source kind x
target x precisions; a step that does not apply is recorded with its reason), and those that
apply run and keep their result in the :class:`~converters.steps.base.ExportContext`. A new
step is a class in its own module under ``converters/steps/`` and one line here.
"""

from __future__ import annotations

from tritonstack.converters.spec import ExportSpec
from tritonstack.converters.steps.accuracy import AccuracyStep
from tritonstack.converters.steps.base import Step
from tritonstack.converters.steps.golden import GoldenStep
from tritonstack.converters.steps.hf2onnx import Hf2OnnxStep
from tritonstack.converters.steps.onnx2fp16 import Onnx2Fp16Step
from tritonstack.converters.steps.onnx2int8 import Onnx2Int8Step
from tritonstack.converters.steps.onnx2trt import Onnx2TrtStep
from tritonstack.converters.steps.optimize import OptimizeStep
from tritonstack.converters.steps.parity import ParityFp16Step, ParityStep
from tritonstack.converters.steps.portability import PortabilityStep
from tritonstack.converters.steps.profile import ProfileStep
from tritonstack.converters.steps.smooth import SmoothStep
from tritonstack.converters.steps.torch2onnx import Torch2OnnxStep

__all__ = ["plan"]


def plan(spec: ExportSpec) -> list[Step]:
    """The ordered steps of one export (the write step is the API's, after all of them)."""
    return [
        Hf2OnnxStep(),  # source -> FP32 ONNX (a Hugging Face folder) ...
        Torch2OnnxStep(),  # ... or an nn.Module factory
        OptimizeStep(),  # ORT transformer fusions, opt-in
        ParityStep(),  # served FP32 graph vs the source
        Onnx2Fp16Step(),
        ParityFp16Step(),
        SmoothStep(),  # dynamic per-token INT8 of HF encoders
        Onnx2Int8Step(),
        AccuracyStep(),  # the INT8 gate
        PortabilityStep(),  # exact on every x86 integer kernel?
        GoldenStep(),  # data for the load-time self-check
        ProfileStep(),  # the reference drift is measured against in serving
        *(Onnx2TrtStep(str(p)) for p in spec.precisions),
    ]
