"""Describe a plain ``torch.nn.Module`` so the converters can export, validate and gate it.

A ``package.module:factory`` source returns ``(module, TorchInputSpec)``. The spec says what the
ONNX graph looks like (input/output names, per-input shapes with *named* dynamic axes, dtypes),
how to make example inputs of any batch size, and, optionally, where real labelled data comes
from for INT8 calibration and the accuracy gate::

    def factory() -> tuple[nn.Module, TorchInputSpec]:
        model = train_digits_cnn(seed=0)
        split = digits_split(seed=0)
        spec = TorchInputSpec(
            inputs=(TensorSpec("image", ("batch", 1, 8, 8), "float32"),),
            output_names=("logits",),
            task="image-classification",
            calibration_data=lambda: {"image": split.x_calib},
            evaluation_data=lambda: ({"image": split.x_test}, split.y_test),
        )
        return model, spec

Axes given as strings are dynamic (their name becomes the ONNX ``dim_param``); integers are
fixed. The first axis of every input must be the dynamic batch axis named ``"batch"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TensorSpec", "TorchInputSpec", "Batch", "LabelledBatch"]

#: Named input arrays, one per ``TorchInputSpec.inputs`` entry (first axis = batch).
Batch = Mapping[str, np.ndarray]
#: Inputs plus integer class labels (classification) or ``None`` (embedding tasks).
LabelledBatch = tuple[Batch, "np.ndarray | None"]

_DTYPES = {"float32", "float16", "int64", "int32", "bool"}
_TASKS = {"feature-extraction", "text-classification", "image-classification", "regression", "custom"}


@dataclass(frozen=True)
class TensorSpec:
    """One named input tensor.

    Args:
        name: ONNX/Triton input name.
        shape: Axes; a ``str`` is a dynamic axis name (e.g. ``"batch"``, ``"sequence"``),
            an ``int`` a fixed size. Axis 0 must be ``"batch"``.
        dtype: numpy dtype name: float32, float16, int64, int32 or bool.
        low: Lower bound of random example values (inclusive).
        high: Upper bound of random example values (exclusive for integers).
        valid_range: ``(lowest, highest)`` values the model accepts, both inclusive; the
            python-ort runner refuses a request holding anything else (or NaN / Inf) with
            INVALID_ARGUMENT. None: any value.
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"
    low: float = 0.0
    high: float = 1.0
    valid_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"input name {self.name!r} must be an identifier")
        if not self.shape or self.shape[0] != "batch":
            raise ValueError(f"input {self.name!r}: axis 0 must be the dynamic axis 'batch'")
        for axis in self.shape:
            if isinstance(axis, int) and axis <= 0:
                raise ValueError(f"input {self.name!r}: fixed axes must be > 0, got {axis}")
            if not isinstance(axis, int | str):
                raise ValueError(f"input {self.name!r}: axes are int (fixed) or str (dynamic)")
        if self.dtype not in _DTYPES:
            raise ValueError(f"input {self.name!r}: dtype {self.dtype!r} not in {sorted(_DTYPES)}")
        if self.high <= self.low:
            raise ValueError(f"input {self.name!r}: high must be > low")
        if self.valid_range is not None and not self.valid_range[0] <= self.valid_range[1]:
            raise ValueError(f"input {self.name!r}: valid_range must be (lowest, highest)")

    @property
    def dynamic_axes(self) -> dict[int, str]:
        """``{axis index: axis name}`` for the dynamic axes (torch.onnx ``dynamic_axes`` form)."""
        return {i: a for i, a in enumerate(self.shape) if isinstance(a, str)}

    def concrete_shape(self, batch: int, dims: Mapping[str, int] | None = None) -> tuple[int, ...]:
        """The shape with dynamic axes filled in (``dims`` names other than batch; default 8)."""
        dims = dict(dims or {})
        dims["batch"] = batch
        return tuple(a if isinstance(a, int) else int(dims.get(a, 8)) for a in self.shape)

    def example(self, batch: int, dims: Mapping[str, int] | None = None, seed: int = 0) -> np.ndarray:
        """A random array of this spec's dtype and a concrete shape."""
        rng = np.random.default_rng(seed)
        shape = self.concrete_shape(batch, dims)
        if self.dtype in ("int64", "int32"):
            return rng.integers(int(self.low), int(self.high), size=shape).astype(self.dtype)
        if self.dtype == "bool":
            return rng.integers(0, 2, size=shape).astype(bool)
        return rng.uniform(self.low, self.high, size=shape).astype(self.dtype)


@dataclass(frozen=True)
class TorchInputSpec:
    """How to export and check a torch module.

    Args:
        inputs: The module's positional inputs, in ``forward`` order.
        output_names: Names for the module's outputs, in return order (tensor or tuple).
        task: What the outputs mean; decides the INT8 accuracy gate: ``image-classification``
            / ``text-classification`` compare argmax accuracy, ``feature-extraction`` compares
            embeddings (cosine, recall@10, Spearman).
        calibration_data: Optional; returns real inputs (a :data:`Batch` with a few hundred
            rows) used to calibrate static INT8. Without it, random examples are used.
        evaluation_data: Optional; returns held-out real inputs and labels
            (:data:`LabelledBatch`, labels ``None`` for embeddings) for the accuracy gate.
            Without it the INT8 gate cannot run and INT8 export is refused.
        opset: Preferred ONNX opset (the export may override).
    """

    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...]
    task: str = "custom"
    calibration_data: Callable[[], Batch] | None = field(default=None, compare=False)
    evaluation_data: Callable[[], LabelledBatch] | None = field(default=None, compare=False)
    opset: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "output_names", tuple(self.output_names))
        if not self.inputs:
            raise ValueError("TorchInputSpec needs at least one input")
        if not self.output_names:
            raise ValueError("TorchInputSpec needs at least one output name")
        names = [i.name for i in self.inputs] + list(self.output_names)
        if len(set(names)) != len(names):
            raise ValueError(f"input/output names must be unique, got {names}")
        if self.task not in _TASKS:
            raise ValueError(f"task {self.task!r} not in {sorted(_TASKS)}")

    @property
    def input_names(self) -> tuple[str, ...]:
        """Input names in ``forward`` order."""
        return tuple(i.name for i in self.inputs)

    def example_inputs(self, batch: int = 2, dims: Mapping[str, int] | None = None,
                       seed: int = 0) -> dict[str, np.ndarray]:
        """Random example inputs, one array per input."""
        return {spec.name: spec.example(batch, dims, seed=seed + i) for i, spec in enumerate(self.inputs)}

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """torch.onnx ``dynamic_axes`` for inputs and outputs (outputs: batch axis only)."""
        axes: dict[str, dict[int, str]] = {s.name: s.dynamic_axes for s in self.inputs}
        axes.update({name: {0: "batch"} for name in self.output_names})
        return axes

    def order(self, batch: Batch) -> Sequence[np.ndarray]:
        """The arrays of ``batch`` in input order (raises KeyError naming a missing input)."""
        return [batch[name] for name in self.input_names]
