"""Model IO specs, client-side validation, request encoding and response decoding (pure).

The gRPC messages are built and read here; HTTP's JSON + binary bodies in _http.py, from the same
tensor bytes (``tensor_bytes``, ``decode_tensor``)."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2, service_pb2

from tritonstack.client._errors import invalid

_NUMPY = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
_TRITON = {dtype: name for name, dtype in _NUMPY.items() if name != "BYTES"}


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One model input or output: Triton datatype and shape without the batch axis (-1: any)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False

    @property
    def numpy_dtype(self) -> np.dtype | None:
        """The numpy dtype of this tensor (None for types numpy lacks, e.g. BF16)."""
        return _NUMPY.get(self.datatype)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the client needs to know about a model; cached per client and model."""

    name: str
    version: str
    platform: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def batched(self) -> bool:
        """True when requests carry a leading batch axis."""
        return self.max_batch_size > 0


@dataclasses.dataclass(frozen=True)
class ModelState:
    """One row of the server's model repository index."""

    name: str
    version: str
    state: str
    reason: str


def _datatype(enum_value: int) -> str:
    return datatype_name(model_config_pb2.DataType.Name(enum_value))


def datatype_name(config_type: str) -> str:
    """The tensor datatype of a model config's ``TYPE_...`` name (TYPE_STRING is BYTES)."""
    name = config_type.removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def model_info(config: model_config_pb2.ModelConfig, version: str = "") -> ModelInfo:
    """ModelInfo from Triton's ModelConfig message."""
    def spec(t: object) -> TensorSpec:
        return TensorSpec(t.name, _datatype(t.data_type), tuple(int(d) for d in t.dims),  # type: ignore[attr-defined]
                          bool(getattr(t, "optional", False)))
    return ModelInfo(
        name=config.name, version=version, platform=config.platform or config.backend,
        max_batch_size=int(config.max_batch_size),
        inputs=tuple(spec(t) for t in config.input), outputs=tuple(spec(t) for t in config.output),
    )


def model_info_json(config: Mapping[str, Any], version: str = "") -> ModelInfo:
    """ModelInfo from the model config as JSON (Triton's HTTP ``/v2/models/NAME/config``)."""
    def spec(t: Mapping[str, Any]) -> TensorSpec:
        return TensorSpec(t["name"], datatype_name(t.get("data_type", "TYPE_INVALID")),
                          tuple(int(d) for d in t.get("dims", ())), bool(t.get("optional", False)))
    return ModelInfo(
        name=config["name"], version=version, platform=config.get("platform") or config.get("backend", ""),
        max_batch_size=int(config.get("max_batch_size", 0)),
        inputs=tuple(spec(t) for t in config.get("input", ())),
        outputs=tuple(spec(t) for t in config.get("output", ())),
    )


def _shape_text(spec: TensorSpec, batched: bool) -> str:
    dims = (["batch"] if batched else []) + [str(d) if d >= 0 else "any" for d in spec.shape]
    return "[" + ", ".join(dims) + "]"


def validate(info: ModelInfo, inputs: Mapping[str, np.ndarray],
             outputs: Sequence[str] | None) -> int:
    """Check ``inputs`` against the model; return the batch size (0 for unbatched models).

    Raises ClientError(INVALID_ARGUMENT, origin="client") naming the input and the fix.
    """
    model = info.name
    specs = {s.name: s for s in info.inputs}
    unknown = [name for name in inputs if name not in specs]
    if unknown:
        raise invalid(f"model '{model}' has no input '{unknown[0]}'; its inputs are "
                      f"{', '.join(specs)}", model)
    missing = [s.name for s in info.inputs if s.name not in inputs and not s.optional]
    if missing:
        raise invalid(f"model '{model}' needs input '{missing[0]}' ({specs[missing[0]].datatype} "
                      f"{_shape_text(specs[missing[0]], info.batched)})", model)
    if outputs is not None:
        names = {s.name for s in info.outputs}
        for name in outputs:
            if name not in names:
                raise invalid(f"model '{model}' has no output '{name}'; its outputs are "
                              f"{', '.join(sorted(names))}", model)
    batch_sizes = set()
    for name, array in inputs.items():
        spec = specs[name]
        expected = _shape_text(spec, info.batched)
        rank = len(spec.shape) + (1 if info.batched else 0)
        if array.ndim != rank:
            hint = "; add the batch axis, e.g. x[None]" if array.ndim == rank - 1 else ""
            raise invalid(f"input '{name}' of '{model}' must have rank {rank} {expected}, "
                          f"got rank {array.ndim} with shape {tuple(array.shape)}{hint}", model)
        tail = array.shape[1:] if info.batched else array.shape
        for want, got in zip(spec.shape, tail, strict=True):
            if want >= 0 and want != got:
                raise invalid(f"input '{name}' of '{model}' must have shape {expected}, "
                              f"got {tuple(array.shape)}", model)
        _check_dtype(model, spec, array)
        if info.batched:
            batch_sizes.add(array.shape[0])
    if not info.batched:
        return 0
    if len(batch_sizes) > 1:
        raise invalid(f"inputs of '{model}' disagree on the batch size (axis 0): "
                      f"{sorted(batch_sizes)}", model)
    batch = batch_sizes.pop() if batch_sizes else 0
    if batch == 0:
        raise invalid(f"inputs of '{model}' have an empty batch (axis 0 is 0)", model)
    return batch


def _check_dtype(model: str, spec: TensorSpec, array: np.ndarray) -> None:
    if spec.datatype == "BYTES":
        if array.dtype.kind not in "OSU":
            raise invalid(f"input '{spec.name}' of '{model}' holds strings (BYTES): pass an array "
                          f"of str or bytes (dtype object), got {array.dtype}", model)
        return
    want = spec.numpy_dtype
    if want is None:
        raise invalid(f"input '{spec.name}' of '{model}' is {spec.datatype}, which numpy cannot "
                      "hold; disable validate_inputs and send raw data another way", model)
    if array.dtype != want:
        raise invalid(f"input '{spec.name}' of '{model}' must be {want} ({spec.datatype}), got "
                      f"{array.dtype}; convert with x.astype(np.{want.name})", model)


def triton_datatype(array: np.ndarray) -> str:
    """Triton datatype of a numpy array (str/bytes/object arrays are BYTES)."""
    if array.dtype.kind in "OSU":
        return "BYTES"
    try:
        return _TRITON[array.dtype.newbyteorder("=") if array.dtype.byteorder == ">" else array.dtype]
    except KeyError:
        raise invalid(f"numpy dtype {array.dtype} has no Triton datatype") from None


def serialize_bytes(array: np.ndarray) -> bytes:
    """Triton's BYTES wire form: each element as a 4-byte little-endian length, then the bytes."""
    parts = []
    for item in array.flat:
        data = item.encode("utf-8") if isinstance(item, str) else item
        if not isinstance(data, bytes | np.bytes_):
            raise invalid(f"a BYTES tensor may hold only str or bytes, found {type(item).__name__}")
        parts.append(struct.pack("<I", len(data)))
        parts.append(bytes(data))
    return b"".join(parts)


def deserialize_bytes(raw: bytes, shape: Sequence[int]) -> np.ndarray:
    """The inverse of ``serialize_bytes``: an object array of bytes."""
    items, offset, view = [], 0, memoryview(raw)
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        items.append(bytes(view[offset:offset + length]))
        offset += length
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(tuple(shape))


def build_request(model: str, version: str, inputs: Mapping[str, np.ndarray],
                  outputs: Sequence[str] | None,
                  parameters: Mapping[str, str | int | bool] | None = None) -> service_pb2.ModelInferRequest:
    """A ModelInferRequest carrying every input as raw bytes, and the request parameters."""
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for key, value in (parameters or {}).items():
        if isinstance(value, bool):
            request.parameters[key].bool_param = value
        elif isinstance(value, int):
            request.parameters[key].int64_param = value
        elif isinstance(value, str):
            request.parameters[key].string_param = value
        else:
            raise TypeError(f"request parameter {key!r} must be a str, int or bool, got "
                            f"{type(value).__name__}")
    for name, array in inputs.items():
        datatype, raw = tensor_bytes(array)
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(raw)
    for name in outputs or ():
        request.outputs.add(name=name)
    return request


def tensor_bytes(array: np.ndarray) -> tuple[str, bytes]:
    """(Triton datatype, raw bytes) of an input: little-endian values, or BYTES' wire form."""
    datatype = triton_datatype(array)
    if datatype == "BYTES":
        return datatype, serialize_bytes(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return datatype, np.ascontiguousarray(array).tobytes()


def numpy_dtype(datatype: str) -> np.dtype | None:
    """The numpy dtype of a Triton datatype (object for BYTES; None for those numpy lacks)."""
    return _NUMPY.get(datatype)


def decode_tensor(name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview) -> np.ndarray:
    """An output's raw bytes as a writable numpy array."""
    if datatype == "BYTES":
        return deserialize_bytes(bytes(raw), shape)
    dtype = numpy_dtype(datatype)
    if dtype is None:
        raise invalid(f"output '{name}' is {datatype}, which numpy cannot hold")
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(shape)).copy()


def parse_response(response: service_pb2.ModelInferResponse) -> dict[str, np.ndarray]:
    """Every output of a ModelInferResponse as a writable numpy array."""
    return {tensor.name: decode_tensor(tensor.name, tensor.datatype, tensor.shape, raw)
            for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)}


def chunks(inputs: Mapping[str, np.ndarray], batch: int,
           max_batch_size: int) -> list[dict[str, np.ndarray]]:
    """Split batched ``inputs`` along axis 0 into pieces of at most ``max_batch_size`` rows."""
    if max_batch_size <= 0 or batch <= max_batch_size:
        return [dict(inputs)]
    return [{name: array[start:start + max_batch_size] for name, array in inputs.items()}
            for start in range(0, batch, max_batch_size)]


def merge(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Reassemble chunk results, in order, along axis 0."""
    if len(parts) == 1:
        return dict(parts[0])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
