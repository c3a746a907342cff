"""Triton ``config.pbtxt`` as data.

Dataclasses validate in ``__post_init__``; :meth:`ModelConfig.to_proto` goes through
``tritonclient.grpc.model_config_pb2.ModelConfig`` (``json_format.ParseDict``), so the real
schema checks every field name and enum, and :meth:`ModelConfig.to_pbtxt` writes it with
``text_format``. :func:`config_for_target` builds the config of each export target from the
inputs/outputs read off the ONNX graph (:func:`io_from_onnx`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tritonstack.converters.errors import InvalidSpec

__all__ = [
    "DynamicBatching",
    "InstanceGroup",
    "ModelConfig",
    "TensorConfig",
    "Warmup",
    "config_for_target",
    "io_from_onnx",
]

ONNX_TO_TRITON = {
    1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 5: "TYPE_INT16", 6: "TYPE_INT32",
    7: "TYPE_INT64", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64",
}
TRITON_TYPES = frozenset(ONNX_TO_TRITON.values()) | {"TYPE_STRING"}
TARGETS = ("python-ort", "onnxruntime", "tensorrt")


@dataclass(frozen=True)
class TensorConfig:
    """One input or output; ``dims`` exclude the batch axis, -1 = variable."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    allow_ragged_batch: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if not self.name:
            raise InvalidSpec("tensor name must not be empty")
        if self.data_type not in TRITON_TYPES:
            raise InvalidSpec(
                f"tensor {self.name!r}: data_type {self.data_type!r} not in {sorted(TRITON_TYPES)}")
        if any(d == 0 or d < -1 for d in self.dims):
            raise InvalidSpec(f"tensor {self.name!r}: dims {list(self.dims)} must be > 0 or -1")

    @property
    def variable(self) -> bool:
        """Whether any non-batch axis is variable."""
        return -1 in self.dims

    def to_dict(self, is_input: bool) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "data_type": self.data_type, "dims": list(self.dims)}
        if is_input and self.allow_ragged_batch:
            out["allow_ragged_batch"] = True
        return out


@dataclass(frozen=True)
class DynamicBatching:
    """Server-side batching: preferred batch sizes and how long a request may wait.

    With a queue policy the batcher delay is always 0. Any ``default_queue_policy`` turns off
    Triton's payload prefetching, and then a delay > 0 lets queued payloads merge, which drifts
    the dispatcher's count of idle instances until the model serves a fraction of its capacity
    with its instances idle (triton-inference-server/server#8870, fixed in core#509, after the
    2.51 used here). Without prefetching the batcher still batches: it waits for a free instance
    and takes what has queued meanwhile.
    """

    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 1000
    # Overload policy (Triton's default_queue_policy): past ``max_queue_size`` queued requests, or
    # after ``queue_timeout_us`` in the queue, a request is rejected (UNAVAILABLE) instead of
    # waiting: callers get a fast, clear error and accepted requests keep their latency. 0 = off.
    # Triton checks the timeout only when the batcher runs, so expired requests are refused when
    # an instance frees, not at expiry. Either policy turns off the batcher's prefetching
    # (Triton 2.51, scheduler_utils.cc), which a model of one fast instance feels (digits_cnn).
    max_queue_size: int = 0
    queue_timeout_us: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "preferred_batch_sizes", tuple(sorted(set(self.preferred_batch_sizes))))
        if any(b < 1 for b in self.preferred_batch_sizes):
            raise InvalidSpec("preferred batch sizes must be >= 1")
        if self.max_queue_delay_us < 0:
            raise InvalidSpec("max_queue_delay_us must be >= 0")
        if self.max_queue_size < 0 or self.queue_timeout_us < 0:
            raise InvalidSpec("max_queue_size and queue_timeout_us must be >= 0 (0 = unbounded)")
        if self.queue_policy():
            object.__setattr__(self, "max_queue_delay_us", 0)

    def queue_policy(self) -> dict[str, object]:
        return queue_policy(self.max_queue_size, self.queue_timeout_us)

    def to_dict(self) -> dict[str, object]:
        """The ``dynamic_batching`` message as a dict."""
        out: dict[str, object] = {"max_queue_delay_microseconds": self.max_queue_delay_us}
        if self.preferred_batch_sizes:
            out["preferred_batch_size"] = list(self.preferred_batch_sizes)
        if policy := self.queue_policy():
            out["default_queue_policy"] = policy
        return out


def queue_policy(max_queue_size: int, timeout_us: int) -> dict[str, object]:
    """Triton's ``default_queue_policy`` message as a dict ({} = unbounded, Triton's default).

    Expired requests are rejected (not delayed) and a client may ask for a shorter timeout.
    """
    policy: dict[str, object] = {}
    if max_queue_size:
        policy["max_queue_size"] = max_queue_size
    if timeout_us:
        policy.update(timeout_action="REJECT", default_timeout_microseconds=timeout_us,
                      allow_timeout_override=True)
    return policy


@dataclass(frozen=True)
class InstanceGroup:
    """``count`` copies of the model on CPU or GPU."""

    count: int = 1
    kind: str = "KIND_CPU"

    def __post_init__(self) -> None:
        if self.count < 1:
            raise InvalidSpec(f"instance count must be >= 1, got {self.count}")
        if self.kind not in ("KIND_CPU", "KIND_GPU", "KIND_AUTO"):
            raise InvalidSpec(f"instance kind {self.kind!r} must be KIND_CPU, KIND_GPU or KIND_AUTO")


# Bytes per element of the integer types a warmup can fill with ones.
_INT_BYTES = {"TYPE_INT64": 8, "TYPE_INT32": 4, "TYPE_INT8": 1, "TYPE_UINT8": 1, "TYPE_BOOL": 1}


@dataclass(frozen=True)
class Warmup:
    """One warmup request; ``dims`` per input (variable axes made concrete).

    Inputs are zeros, except those named in ``ones``: fed ones from ``warmup/<input>`` beside
    config.pbtxt (Triton's ``input_data_file``). An attention mask of zeros masks every token,
    which the python-ort runner refuses, so a warmup of zeros would fail the model's load.
    """

    name: str
    batch_size: int
    inputs: Mapping[str, tuple[str, tuple[int, ...]]]
    ones: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ones", tuple(self.ones))
        if self.batch_size < 1:
            raise InvalidSpec("warmup batch_size must be >= 1")
        for name, (_, dims) in self.inputs.items():
            if any(d < 1 for d in dims):
                raise InvalidSpec(f"warmup input {name!r}: dims must be concrete, got {list(dims)}")
        for name in self.ones:
            if name not in self.inputs or self.inputs[name][0] not in _INT_BYTES:
                raise InvalidSpec(f"warmup {self.name!r}: only an integer input can be fed ones, not {name!r}")

    def files(self) -> dict[str, bytes]:
        """``{file name under warmup/: content}``: raw little-endian ones, row-major, one request."""
        out = {}
        for name in self.ones:
            dtype, dims = self.inputs[name]
            count = self.batch_size * math.prod(dims)
            out[name] = (1).to_bytes(_INT_BYTES[dtype], "little") * count
        return out

    def to_dict(self) -> dict[str, object]:
        def feed(name: str) -> dict[str, bool | str]:
            return {"input_data_file": name} if name in self.ones else {"zero_data": True}

        return {"name": self.name, "batch_size": self.batch_size,
                "inputs": {n: {"data_type": dt, "dims": list(d), **feed(n)}
                           for n, (dt, d) in sorted(self.inputs.items())}}


@dataclass(frozen=True)
class ModelConfig:
    """A Triton model configuration.

    Exactly one of ``backend`` / ``platform`` is set. ``parameters`` are string key/values
    (read by the python-ort runner and the onnxruntime backend).
    """

    name: str
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    backend: str = "python"
    max_batch_size: int = 32
    dynamic_batching: DynamicBatching | None = field(default_factory=DynamicBatching)
    instance_groups: tuple[InstanceGroup, ...] = (InstanceGroup(),)
    parameters: Mapping[str, str] = field(default_factory=dict)
    warmup: tuple[Warmup, ...] = ()
    default_model_filename: str | None = None
    gpu_accelerators: tuple[Mapping[str, object], ...] = ()

    def __post_init__(self) -> None:
        for name in ("inputs", "outputs", "instance_groups", "warmup", "gpu_accelerators"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise InvalidSpec(f"model name {self.name!r} must be non-empty, without '/' or a leading '.'")
        if not self.inputs or not self.outputs:
            raise InvalidSpec(f"model {self.name!r} needs at least one input and one output")
        names = [t.name for t in self.inputs + self.outputs]
        if len(set(names)) != len(names):
            raise InvalidSpec(f"model {self.name!r}: tensor names must be unique, got {names}")
        if self.max_batch_size < 0:
            raise InvalidSpec("max_batch_size must be >= 0")
        if self.dynamic_batching and self.max_batch_size == 0:
            raise InvalidSpec("dynamic batching needs max_batch_size > 0")
        if self.dynamic_batching and any(b > self.max_batch_size
                                         for b in self.dynamic_batching.preferred_batch_sizes):
            raise InvalidSpec(f"preferred batch sizes must be <= max_batch_size {self.max_batch_size}")
        known = {t.name for t in self.inputs}
        for w in self.warmup:
            if set(w.inputs) != known:
                raise InvalidSpec(f"warmup {w.name!r} must feed exactly the inputs {sorted(known)}")
            if w.batch_size > max(self.max_batch_size, 1):
                raise InvalidSpec(f"warmup {w.name!r}: batch_size exceeds max_batch_size")

    def to_dict(self) -> dict[str, object]:
        """The ``ModelConfig`` message as a JSON-style dict (proto field names)."""
        out: dict[str, object] = {
            "name": self.name,
            "backend": self.backend,
            "max_batch_size": self.max_batch_size,
            "input": [t.to_dict(True) for t in self.inputs],
            "output": [t.to_dict(False) for t in self.outputs],
            "instance_group": [{"count": g.count, "kind": g.kind} for g in self.instance_groups],
        }
        if self.default_model_filename:
            out["default_model_filename"] = self.default_model_filename
        if self.dynamic_batching is not None:
            out["dynamic_batching"] = self.dynamic_batching.to_dict()
        if self.parameters:
            out["parameters"] = {k: {"string_value": str(v)} for k, v in sorted(self.parameters.items())}
        if self.warmup:
            out["model_warmup"] = [w.to_dict() for w in self.warmup]
        if self.gpu_accelerators:
            out["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [
                {"name": a["name"], "parameters": {k: str(v) for k, v in a.get("parameters", {}).items()}}
                for a in self.gpu_accelerators]}}
        return out

    def to_proto(self):
        """``model_config_pb2.ModelConfig`` (raises InvalidSpec if the schema rejects it)."""
        from google.protobuf import json_format
        from tritonclient.grpc import model_config_pb2

        try:
            return json_format.ParseDict(self.to_dict(), model_config_pb2.ModelConfig())
        except json_format.ParseError as exc:  # a bug here, but say which model
            raise InvalidSpec(f"config for {self.name!r} does not fit Triton's schema: {exc}") from exc

    def warmup_files(self) -> dict[str, bytes]:
        """The files the warmups read, ``{name under warmup/: content}``; written with config.pbtxt."""
        files: dict[str, bytes] = {}
        for w in self.warmup:
            for name, data in w.files().items():
                if files.setdefault(name, data) != data:
                    raise InvalidSpec(f"warmups of {self.name!r} need two different files for {name!r}")
        return files

    def to_pbtxt(self) -> str:
        """The text written to ``config.pbtxt``."""
        from google.protobuf import text_format

        return text_format.MessageToString(self.to_proto())


def io_from_onnx(path: str | Path) -> tuple[tuple[TensorConfig, ...], tuple[TensorConfig, ...]]:
    """Inputs and outputs of an ONNX graph as Triton tensors (batch axis dropped).

    Every input and output must have a dynamic first (batch) axis; other named or unknown axes
    become -1. Variable-length inputs get ``allow_ragged_batch`` set later, per target.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}

    def convert(values) -> tuple[TensorConfig, ...]:
        tensors = []
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            if t.elem_type not in ONNX_TO_TRITON:
                raise InvalidSpec(f"ONNX tensor {v.name!r} has unsupported element type {t.elem_type}")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            if not dims or (dims[0] != -1):
                raise InvalidSpec(f"ONNX tensor {v.name!r} has no dynamic batch axis (shape {dims}); "
                                  "export with a dynamic first axis")
            tensors.append(TensorConfig(v.name, ONNX_TO_TRITON[t.elem_type], tuple(dims[1:])))
        return tuple(tensors)

    return convert(model.graph.input), convert(model.graph.output)


def config_for_target(
    target: str,
    name: str,
    inputs: Sequence[TensorConfig],
    outputs: Sequence[TensorConfig],
    *,
    max_batch_size: int = 32,
    instances: int = 1,
    gpu: bool = False,
    intra_op_threads: int = 0,
    max_queue_delay_us: int = 1000,
    max_queue_size: int = 0,
    queue_timeout_us: int = 0,
    preferred_batch_sizes: Sequence[int] = (),
    admit_rows: int = 0,
    admit_ms: float = 0.0,
    warmup_dims: Mapping[str, int] | None = None,
    value_ranges: Mapping[str, tuple[int, int]] | None = None,
    axis_limits: Mapping[str, int] | None = None,
) -> ModelConfig:
    """The config of one export target.

    * ``python-ort``: the Python-backend runner (``model.py`` + ``model.onnx``); variable-length
      inputs are ``allow_ragged_batch`` (the runner pads); EPs and threads via ``parameters``.
    * ``onnxruntime``: Triton's native ONNX Runtime backend (NGC image); no ragged batching
      (requests batch together only when their shapes match); TensorRT EP on GPU.
    * ``tensorrt``: Triton's TensorRT backend serving ``model.plan`` (GPU only).

    ``warmup_dims`` gives variable axes a concrete size for the warmup request (default 16).
    ``value_ranges`` (``{input: (low, high)}``, high exclusive: token ids below the vocabulary
    size) and ``axis_limits`` (``{axis name: longest}``: the position embeddings) let the
    python-ort runner refuse out-of-range input with INVALID_ARGUMENT instead of failing the
    batch in ONNX Runtime (or, for a negative id, answering from the wrong embedding row).
    """
    if target not in TARGETS:
        raise InvalidSpec(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    warmup_dims = warmup_dims or {}
    ragged = target == "python-ort"
    ins = tuple(TensorConfig(t.name, t.data_type, t.dims, allow_ragged_batch=ragged and t.variable)
                for t in inputs)
    outs = tuple(TensorConfig(t.name, t.data_type, t.dims) for t in outputs)
    kind = "KIND_GPU" if gpu or target == "tensorrt" else "KIND_CPU"
    preferred = (tuple(preferred_batch_sizes)
                 or tuple(b for b in {max_batch_size // 2, max_batch_size} if b >= 1))
    warm = Warmup(
        name="batch1",
        batch_size=1,
        inputs={t.name: (t.data_type, tuple(d if d > 0 else int(warmup_dims.get(t.name, 16)) for d in t.dims))
                for t in ins},
        ones=tuple(t.name for t in ins if t.name == "attention_mask"),
    )
    params: dict[str, str] = {}
    backend, filename, accelerators = "python", None, ()
    if target == "python-ort":
        params = {
            "execution_providers": ("TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider"
                                    if gpu else "CPUExecutionProvider"),
            "intra_op_thread_count": str(intra_op_threads),
            "onnx_file": "model.onnx",
        }
        if value_ranges:
            params["value_ranges"] = ",".join(f"{k}:{lo}:{hi}"
                                              for k, (lo, hi) in sorted(value_ranges.items()))
        if axis_limits:
            params["axis_limits"] = ",".join(f"{k}:{n}" for k, n in sorted(axis_limits.items()))
        if admit_rows:
            params["admit_rows"] = str(admit_rows)
        if admit_ms:
            params["admit_ms"] = f"{admit_ms:g}"
    elif target == "onnxruntime":
        backend, filename = "onnxruntime", "model.onnx"
        params = {"intra_op_thread_count": str(intra_op_threads)}
        if gpu:
            accelerators = ({"name": "tensorrt", "parameters": {"precision_mode": "FP16"}},)
    else:
        backend, filename = "tensorrt", "model.plan"
    return ModelConfig(
        name=name,
        backend=backend,
        inputs=ins,
        outputs=outs,
        max_batch_size=max_batch_size,
        dynamic_batching=DynamicBatching(preferred, max_queue_delay_us, max_queue_size, queue_timeout_us),
        instance_groups=(InstanceGroup(instances, kind),),
        parameters=params,
        warmup=(warm,),
        default_model_filename=filename,
        gpu_accelerators=accelerators,
    )
