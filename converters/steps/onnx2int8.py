"""``onnx2int8``: FP32 ONNX -> INT8 ONNX with ONNX Runtime's quantizer.

* ``dynamic``: weights INT8 (per channel), activations quantized at run time (MatMul ->
  MatMulInteger). Starts from the unfused graph; ORT fuses at load: the fast CPU form.
  ``per_token=True`` (transformer encoders) first rewrites the feed-forward MatMuls to
  per-token activation scales (:mod:`converters.steps.per_token`); ``quantize_dynamic`` then
  quantizes the remaining float MatMuls per tensor.
* ``static``: calibrated QDQ graph (symmetric INT8, per-channel weights, MinMax calibration on
  real data in fixed-length batches), from the UNFUSED graph after ``quant_pre_process``:
  the form TensorRT builds strongly-typed INT8 engines from. Only MatMul/Gemm/Conv are
  quantized, so the pooling/normalisation tail stays FP32.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from converters.steps.base import OnnxModel

Feed = Mapping[str, np.ndarray]
QUANTIZED_OPS = ["MatMul", "Gemm", "Conv"]


@dataclasses.dataclass(frozen=True)
class Int8Input:
    model: OnnxModel
    mode: str  # "dynamic" | "static"
    output: Path
    calibration: Callable[[], Sequence[Feed]] | None = None  # static only; fixed-shape batches
    per_token: bool = False  # dynamic only: per-token activation scales in the FFN MatMuls


def run(inp: Int8Input) -> OnnxModel:

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # the quantizer logs advice on the root logger
    try:
        return _quantize(inp)
    finally:
        root.setLevel(level)


def _quantize(inp: Int8Input) -> OnnxModel:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    inp.output.parent.mkdir(parents=True, exist_ok=True)
    if inp.mode == "dynamic":
        import onnx

        source = inp.model.path
        if inp.per_token:
            from converters.steps import per_token

            model = onnx.load(str(source))
            if per_token.rewrite(model):
                source = inp.output.with_name(inp.output.stem + ".per-token.onnx")
                onnx.save(model, str(source))
        # ONNX shape inference cannot see through the fused contrib ops: tell the quantizer
        # that untyped tensors are FP32.
        quantize_dynamic(str(source), str(inp.output), weight_type=QuantType.QInt8,
                         per_channel=True, op_types_to_quantize=["MatMul", "Gemm", "Conv"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        if source != inp.model.path:
            source.unlink(missing_ok=True)
        return OnnxModel.load(inp.output)
    if inp.calibration is None:
        raise ValueError("static INT8 needs calibration data")
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = inp.output.with_name(inp.output.stem + ".pre.onnx")
    # The symbolic shape inference pass chokes on BERT graphs with appended pooling: skip it.
    quant_pre_process(str(inp.model.path), str(pre), skip_symbolic_shape=True)
    feeds = list(inp.calibration())
    names = set(inp.model.input_names)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[Feed] = iter(feeds)

        def get_next(self):
            feed = next(self._it, None)
            return None if feed is None else {k: v for k, v in feed.items() if k in names}

        def rewind(self) -> None:
            self._it = iter(feeds)

    quantize_static(str(pre), str(inp.output), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=QUANTIZED_OPS,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    pre.unlink(missing_ok=True)
    return OnnxModel.load(inp.output)
