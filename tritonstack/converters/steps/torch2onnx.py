"""``torch2onnx``: a torch module + TorchInputSpec -> ONNX with named dynamic axes.

Uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``). torch 2.13
defaults to the dynamo exporter, which needs ``onnxscript`` (not installed) and expresses
dynamic axes as ``torch.export.Dim`` constraints; the TorchScript path takes ``dynamic_axes``
names directly, writes them as ``dim_param`` (which the Triton config and the runner read), is
what optimum uses for the HF models too, and handles the small CNN/MLP modules served here.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import torch
from torch import nn

from tritonstack.converters.sources.torch_module import TorchInputSpec
from tritonstack.converters.steps.base import ExportContext, OnnxModel, OnnxStep


@dataclasses.dataclass(frozen=True)
class Torch2OnnxInput:
    module: nn.Module
    spec: TorchInputSpec
    opset: int
    output: Path


def run(inp: Torch2OnnxInput) -> OnnxModel:
    """Export ``inp.module``; the example batch is 2 so that batch-1 special-casing cannot leak."""
    examples = inp.spec.example_inputs(batch=2)
    args = tuple(torch.from_numpy(examples[name]) for name in inp.spec.input_names)
    inp.output.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, chosen on purpose
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            inp.module.eval(), args, str(inp.output),
            input_names=list(inp.spec.input_names),
            output_names=list(inp.spec.output_names),
            dynamic_axes=inp.spec.dynamic_axes(),
            opset_version=inp.spec.opset or inp.opset,
            dynamo=False,
            do_constant_folding=True,
        )
        outputs = inp.module(*args)
    _fix_output_dims(inp.output, outputs if isinstance(outputs, tuple | list) else (outputs,))
    return OnnxModel.load(inp.output)


def _fix_output_dims(path: Path, outputs) -> None:
    """The TorchScript exporter can leave fixed output axes unnamed; take them from torch."""
    import onnx

    model = onnx.load(str(path))
    changed = False
    for value, tensor in zip(model.graph.output, outputs, strict=False):
        dims = value.type.tensor_type.shape.dim
        for axis in range(1, min(len(dims), tensor.dim())):
            # Outputs are dynamic on the batch axis only (TorchInputSpec.dynamic_axes); the
            # exporter may still write generated names like "Divembedding_dim_1" here.
            if not dims[axis].HasField("dim_value"):
                dims[axis].dim_value = int(tensor.shape[axis])
                changed = True
    if changed:
        onnx.save(model, str(path))


class Torch2OnnxStep(OnnxStep):
    """An ``nn.Module`` factory to its FP32 graph."""

    name = "torch2onnx"

    def skipped_because(self, ctx: ExportContext) -> str | None:
        from tritonstack.converters.sources.resolve import TorchSource

        if isinstance(ctx.source, TorchSource):
            return None
        return "source is a Hugging Face folder (hf2onnx ran)"

    def run(self, ctx: ExportContext) -> OnnxModel:
        source = ctx.source
        return run(Torch2OnnxInput(source.module, source.spec, ctx.spec.opset,
                                   ctx.work / "fp32" / "model.onnx"))

    def keep(self, ctx: ExportContext, result: object) -> None:
        assert isinstance(result, OnnxModel)
        ctx.raw = ctx.served["fp32"] = result
