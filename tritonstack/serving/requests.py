"""One request checked against the model's inputs and limits, before any compute: dtype, rank,
fixed dims, equal lengths on axes the ONNX graph names alike (``input_ids`` and
``attention_mask`` both ``sequence_length``), the longest axis and the value range an input may
hold (config parameters ``axis_limits`` and ``value_ranges``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidInput

TRITON_TO_NUMPY = {
    "TYPE_BOOL": np.bool_, "TYPE_UINT8": np.uint8, "TYPE_INT8": np.int8, "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32, "TYPE_INT64": np.int64, "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32, "TYPE_FP64": np.float64,
}


@dataclass(frozen=True)
class TensorInfo:
    """An input or output as the runner sees it.

    ``axes`` excludes the batch axis: an ``int`` is fixed, a ``str`` names a variable axis
    (the ONNX ``dim_param``; axes with the same name must agree within a request).
    """

    name: str
    dtype: np.dtype
    axes: tuple[int | str, ...]


def onnx_axes(shape: Sequence[object], dims: Sequence[int]) -> tuple[int | str, ...]:
    """Per-axis description (batch axis dropped) from an ORT shape and the Triton config dims.

    ORT gives ``dim_param`` strings for named axes, ints for fixed ones and ``None`` (or odd
    strings) for unnamed dynamic axes; config dims fill gaps (-1 = variable).
    """
    onnx = list(shape[1:])
    axes: list[int | str] = []
    for i, dim in enumerate(dims):
        from_onnx = onnx[i] if i < len(onnx) else None
        if isinstance(from_onnx, str) and from_onnx:
            axes.append(from_onnx)
        elif dim >= 0:
            axes.append(int(dim))
        elif isinstance(from_onnx, int) and from_onnx > 0:
            axes.append(from_onnx)
        else:
            axes.append(f"axis{i + 1}")
    return tuple(axes)


@dataclass(frozen=True)
class Limits:
    """What a request may hold beyond its shape: value ranges per input, longest named axes."""

    value_ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    axis_limits: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> Limits:
        ranges, axes = {}, {}
        for item in filter(None, params.get("value_ranges", "").split(",")):
            name, low, high = item.rsplit(":", 2)
            ranges[name] = (float(low), float(high))
        for item in filter(None, params.get("axis_limits", "").split(",")):
            name, longest = item.rsplit(":", 1)
            axes[name] = int(longest)
        return cls(ranges, axes)


def check_request(arrays: Mapping[str, np.ndarray], inputs: Sequence[TensorInfo],
                  limits: Limits | None = None) -> dict[str, int]:
    """Validate one request's inputs; returns its length per named axis (and ``batch``).

    Raises:
        InvalidInput: missing input, wrong dtype, wrong rank, wrong fixed dim, two inputs
            disagreeing on a shared axis (batch or a named axis such as the sequence), an axis
            longer than its limit, or a value outside its input's range.
    """
    sizes: dict[str, int] = {}
    owners: dict[str, str] = {}
    for info in inputs:
        if info.name not in arrays:
            raise InvalidInput(f"input '{info.name}' is missing", "missing")
        array = arrays[info.name]
        if array.dtype != info.dtype:
            raise InvalidInput(f"input '{info.name}' has dtype {array.dtype}, expected {info.dtype}",
                             "bad_dtype")
        if array.ndim != len(info.axes) + 1:
            raise InvalidInput(
                f"input '{info.name}' has shape {list(array.shape)}, expected rank {len(info.axes) + 1}"
                f" [batch, {', '.join(map(str, info.axes))}]", "bad_shape"
            )
        for axis_name, size in zip(("batch", *info.axes), array.shape, strict=True):
            if isinstance(axis_name, int):
                if size != axis_name:
                    raise InvalidInput(
                        f"input '{info.name}' has shape {list(array.shape)}, fixed dims must be "
                        f"{list(info.axes)}", "bad_shape"
                    )
                continue
            if axis_name in sizes and sizes[axis_name] != size:
                raise InvalidInput(
                    f"inputs '{owners[axis_name]}' and '{info.name}' disagree on '{axis_name}': "
                    f"{sizes[axis_name]} vs {size}", "bad_shape"
                )
            sizes.setdefault(axis_name, size)
            owners.setdefault(axis_name, info.name)
    if sizes.get("batch", 0) < 1:
        raise InvalidInput("empty request: batch size must be at least 1", "empty")
    empty = [k for k, v in sizes.items() if k != "batch" and v < 1]
    if empty:
        raise InvalidInput(f"'{empty[0]}' has length 0 in input '{owners[empty[0]]}'; send at least one "
                         "element", "empty")
    mask = arrays.get("attention_mask")
    if mask is not None and mask.ndim == 2 and not mask.any(axis=1).all():
        row = int(np.flatnonzero(~mask.any(axis=1))[0])
        raise InvalidInput(f"row {row} of input 'attention_mask' is all zeros: it masks every token, and the "
                           "model would answer a meaningless zero vector; send at least one token", "empty")
    limits = limits or Limits()
    for axis, longest in limits.axis_limits.items():
        if sizes.get(axis, 0) > longest:
            raise InvalidInput(f"'{axis}' is {sizes[axis]} in input '{owners[axis]}', longer than this model "
                             f"takes ({longest}); truncate it", "too_long")
    for name, (low, high) in limits.value_ranges.items():
        array = arrays.get(name)
        if array is None or not array.size:
            continue
        if array.dtype.kind == "f":
            _check_float_range(name, array, low, high)
            continue
        lowest, highest = int(array.min()), int(array.max())
        if lowest < low or highest >= high:
            bad = lowest if lowest < low else highest
            raise InvalidInput(f"input '{name}' holds {bad}, outside {int(low)}..{int(high) - 1} (for token "
                             "ids: the model's vocabulary); tokenize with this model's tokenizer",
                             "out_of_range")
    return sizes


def _check_float_range(name: str, array: np.ndarray, low: float, high: float) -> None:
    if not np.isfinite(array).all():
        raise InvalidInput(f"input '{name}' contains NaN or Inf; send finite values in {low:g}..{high:g}",
                         "not_finite")
    lowest, highest = float(array.min()), float(array.max())
    if lowest < low or highest > high:
        raise InvalidInput(f"input '{name}' holds {lowest:g}..{highest:g}, outside {low:g}..{high:g}, the "
                         f"scale this model was trained on; rescale the input to {low:g}..{high:g}",
                         "out_of_range")
