"""Triton Python-backend model that runs an ONNX file with ONNX Runtime (the ``python-ort`` target).

This file is copied verbatim next to ``model.onnx`` as ``REPO/NAME/VERSION/model.py``; it needs
only numpy, onnxruntime and ``triton_python_backend_utils`` (imported lazily so the pure
functions below load and test without Triton).

What ``execute`` does with one dynamic batch:

1. checks each request alone (dtype, rank, fixed dims, equal lengths on axes the ONNX graph
   names alike, e.g. ``input_ids`` and ``attention_mask`` both ``sequence_length``); a bad
   request gets an error response and the rest of the batch still runs;
2. sorts the good requests by length and cuts them into as few runs as keep padding under
   ``max_padding_fraction`` of the work (``plan_runs``); each run pads its variable-length axes
   to its longest request (value 0: padding ids are masked out by ``attention_mask = 0``) and is
   ONE ``session.run``. Without this, one long sentence in a batch of 30 short ones makes the
   whole batch pay for its length: batches grow under load, so an overloaded server would get
   slower per request exactly when it needs to be faster, and stay overloaded after the load
   drops (measured: embed served 110 rps after a 3x spike, 400 before). A text request's
   sentences are planned one by one when every output row has a fixed shape (a sentence
   embedding): requests of four sentences, each padded to its longest, cost MiniLM's stubs
   1,550-1,600 us a sentence against 1,360-1,410 planned per sentence, and served 11 % fewer
   sentences (perf_analyzer -b 4, AMD Zen 5, README "Pipelines at the hardware's limit");
3. splits each output back per request, trimming padded axes that the graph names like an
   input axis (e.g. ``token_embeddings [batch, sequence_length, 384]``).

Config ``parameters`` (all optional, string values):

* ``onnx_file``: model file inside the version folder (default ``model.onnx``);
* ``intra_op_thread_count`` / ``inter_op_thread_count``: ORT thread pools (default 0 = ORT's);
* ``max_padding_fraction``: the most of a run's tensor volume that may be padding before the
  batch is cut into another run (default 0.25; 1 = always one run);
* ``value_ranges``: ``input:low:high,...``, integer inputs must lie in ``[low, high)`` (token
  ids below the vocabulary size; a negative id would silently read another embedding row),
  floating-point inputs in ``[low, high]`` and finite (pixels on the scale the model was
  trained on: a graph that scales its own input cannot tell 0..255 from 0..16);
* ``axis_limits``: ``axis:longest,...``, e.g. ``sequence_length:512`` (the position embeddings);
* ``admit_rows``: the most rows one execution computes (default 0 = all). Past it, the batch's
  oldest requests are refused before any tokenizing or compute (UNAVAILABLE, "overloaded: ...",
  counted in ``triton_stack_shed_total{model}``) and the newest are served (:func:`admitted`).
  Triton hands the runner more than that only when requests queued faster than the instances
  took them, so this bounds the wait of what is served. It sheds load the way a queue policy
  would, but a queue policy turns off Triton 2.51's batch prefetching, and then the batcher
  stalls for 500 ms whenever every caller is queued and an instance frees (README, "Goodput
  under overload");
* ``execution_providers``: comma list in priority order, e.g.
  ``TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider``; providers this
  onnxruntime build lacks are dropped (logged). Default ``CPUExecutionProvider``;
* ``text_input`` (with ``tokenizer_file``, ``max_length``, ``pad_token``, ``max_chars``): the
  model takes raw text in that BYTES input and tokenizes it here (:class:`TextFront`; written by
  ``converters.repository.serve_text``);
* ``drift_window``: rows the drift scores are measured over (default: the profile's, 1,000;
  0 turns drift monitoring off);
* ``drift_sample_ms``: a batch is measured only if the last measured one is at least this old
  (default 20: at most 50 batches a second). Measuring a batch costs about 100 us of CPU in a
  stub; at the headline's ~600 batches a second every batch would cost ~11 % of a core (AMD
  Zen 5, `loadtest run headline`), a sample of them under 1 %. Light traffic is measured whole.

At load (``initialize``), before the model takes traffic:

1. **Kernel probe.** A 1 x 64 ``MatMulInteger`` of 255 (uint8) by 127 (int8) tells in a
   millisecond whether this CPU's u8 x s8 kernel sums pairs in int16 and saturates (AVX2 only,
   AVX-512 without VNNI) or is exact (VNNI, AMX). Where it saturates, the session gets
   ``session.x64quantprecision=1`` (ORT then runs int8 weights on its exact u8 x u8 kernels):
   decided by what the kernel computes, not by a list of CPU names.
2. **Golden self-check.** ``golden.npz`` beside the model holds a few inputs, the FP32
   reference outputs and this file's outputs on the build CPU; ``metadata.json["golden"]``
   holds the bounds. The model is run on them here; a version that misses a bound on this CPU
   fails to load with the figures, the CPU and the kernel in Triton's reason, and the version
   already serving keeps serving. ``python -m converters verify`` runs the same check.

In serving, when the version has ``profile.json`` (the export's reference) and ``drift.py``
beside this file, every batch's features go into a sliding window and the Population Stability
Index of each feature against the reference is published on Triton's ``/metrics`` as
``triton_stack_drift_psi{model, version, feature}`` (with ``triton_stack_drift_window_rows``),
at most once a second (:mod:`converters.runtime.drift`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib.util
import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

try:  # only inside Triton
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - exercised by the unit tests
    pb_utils = None

#: What a refusal under overload says; clients match it (``client.is_shed``).
SHED_MESSAGE = "overloaded: more rows queued than the model computes at once"

TRITON_TO_NUMPY = {
    "TYPE_BOOL": np.bool_, "TYPE_UINT8": np.uint8, "TYPE_INT8": np.int8, "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32, "TYPE_INT64": np.int64, "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32, "TYPE_FP64": np.float64,
}


class BadRequest(ValueError):
    """One request cannot run; its message is returned to that client only, and ``reason`` is
    counted in ``triton_stack_data_quality_total{model, reason}``."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


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
        BadRequest: missing input, wrong dtype, wrong rank, wrong fixed dim, two inputs
            disagreeing on a shared axis (batch or a named axis such as the sequence), an axis
            longer than its limit, or a value outside its input's range.
    """
    sizes: dict[str, int] = {}
    owners: dict[str, str] = {}
    for info in inputs:
        if info.name not in arrays:
            raise BadRequest(f"input '{info.name}' is missing", "missing")
        array = arrays[info.name]
        if array.dtype != info.dtype:
            raise BadRequest(f"input '{info.name}' has dtype {array.dtype}, expected {info.dtype}",
                             "bad_dtype")
        if array.ndim != len(info.axes) + 1:
            raise BadRequest(
                f"input '{info.name}' has shape {list(array.shape)}, expected rank {len(info.axes) + 1}"
                f" [batch, {', '.join(map(str, info.axes))}]", "bad_shape"
            )
        for axis_name, size in zip(("batch", *info.axes), array.shape, strict=True):
            if isinstance(axis_name, int):
                if size != axis_name:
                    raise BadRequest(
                        f"input '{info.name}' has shape {list(array.shape)}, fixed dims must be "
                        f"{list(info.axes)}", "bad_shape"
                    )
                continue
            if axis_name in sizes and sizes[axis_name] != size:
                raise BadRequest(
                    f"inputs '{owners[axis_name]}' and '{info.name}' disagree on '{axis_name}': "
                    f"{sizes[axis_name]} vs {size}", "bad_shape"
                )
            sizes.setdefault(axis_name, size)
            owners.setdefault(axis_name, info.name)
    if sizes.get("batch", 0) < 1:
        raise BadRequest("empty request: batch size must be at least 1", "empty")
    empty = [k for k, v in sizes.items() if k != "batch" and v < 1]
    if empty:
        raise BadRequest(f"'{empty[0]}' has length 0 in input '{owners[empty[0]]}'; send at least one "
                         "element", "empty")
    limits = limits or Limits()
    for axis, longest in limits.axis_limits.items():
        if sizes.get(axis, 0) > longest:
            raise BadRequest(f"'{axis}' is {sizes[axis]} in input '{owners[axis]}', longer than this model "
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
            raise BadRequest(f"input '{name}' holds {bad}, outside {int(low)}..{int(high) - 1} (for token "
                             "ids: the model's vocabulary); tokenize with this model's tokenizer",
                             "out_of_range")
    return sizes


def _check_float_range(name: str, array: np.ndarray, low: float, high: float) -> None:
    if not np.isfinite(array).all():
        raise BadRequest(f"input '{name}' contains NaN or Inf; send finite values in {low:g}..{high:g}",
                         "not_finite")
    lowest, highest = float(array.min()), float(array.max())
    if lowest < low or highest > high:
        raise BadRequest(f"input '{name}' holds {lowest:g}..{highest:g}, outside {low:g}..{high:g}, the "
                         f"scale this model was trained on; rescale the input to {low:g}..{high:g}",
                         "out_of_range")


def concat_padded(batches: Sequence[Mapping[str, np.ndarray]], inputs: Sequence[TensorInfo],
                  pad_value: int | float = 0) -> dict[str, np.ndarray]:
    """Concatenate requests along the batch axis, padding variable axes to the longest.

    One array per input, filled in place: ``np.pad`` per request and input took 3.5 % of a
    serving MiniLM stub's samples, this 0.9 % (py-spy, embed at concurrency 16, AMD Zen 5)."""
    merged: dict[str, np.ndarray] = {}
    for info in inputs:
        arrays = [b[info.name] for b in batches]
        if len(arrays) == 1:  # a text request's slice of its batch encoding is not contiguous
            merged[info.name] = np.ascontiguousarray(arrays[0])
            continue
        tail = tuple(np.max([a.shape[1:] for a in arrays], axis=0)) if arrays[0].ndim > 1 else ()
        out = np.full((sum(len(a) for a in arrays), *tail), pad_value, dtype=arrays[0].dtype)
        row = 0
        for a in arrays:
            out[(slice(row, row + len(a)), *(slice(0, n) for n in a.shape[1:]))] = a
            row += len(a)
        merged[info.name] = out
    return merged


def plan_runs(sizes: Sequence[Mapping[str, int]], max_padding_fraction: float = 0.25) -> list[list[int]]:
    """Groups of request indices, each run as one ``session.run``, padded to its longest member.

    ``sizes`` are ``check_request``'s results. Requests are taken shortest first; a group grows
    while padding stays at most ``max_padding_fraction`` of its padded volume (rows x the product
    of its longest variable axes). Fixed-shape models give one group.
    """
    def volume(s: Mapping[str, int]) -> int:
        return int(np.prod([v for k, v in s.items() if k != "batch"] or [1]))

    order = sorted(range(len(sizes)), key=lambda i: volume(sizes[i]))
    groups: list[list[int]] = []
    group: list[int] = []
    rows = real = 0
    longest: dict[str, int] = {}
    for i in order:
        s = sizes[i]
        grown = {k: max(longest.get(k, 0), v) for k, v in s.items() if k != "batch"}
        padded = (rows + s["batch"]) * int(np.prod(list(grown.values()) or [1]))
        work = real + s["batch"] * volume(s)
        if group and padded - work > max_padding_fraction * padded:
            groups.append(group)
            group, rows, real, grown = [], 0, 0, {k: v for k, v in s.items() if k != "batch"}
            work = s["batch"] * volume(s)
        group.append(i)
        rows, real, longest = rows + s["batch"], work, grown
    if group:
        groups.append(group)
    return groups


def admitted(rows: Sequence[int], limit: int) -> int:
    """How many of a batch's requests (oldest first, as Triton hands them) one execution serves:
    the newest ones whose rows fit in ``limit``, and always the newest one (a request larger
    than ``limit`` is served alone rather than never). ``limit`` 0 serves all.

    The newest rather than the oldest: under overload the oldest have waited longest, so
    serving the newest keeps the latency of what is served lowest, and a refused caller that
    tries again joins the back of the queue instead of being refused forever.
    """
    if limit <= 0:
        return len(rows)
    total = served = 0
    for n in reversed(rows):
        if served and total + n > limit:
            break
        total += n
        served += 1
    return served


def split_outputs(outputs: Mapping[str, np.ndarray], sizes: Sequence[Mapping[str, int]],
                  output_infos: Sequence[TensorInfo]) -> list[dict[str, np.ndarray]]:
    """Split batched outputs back per request, trimming axes named like a padded input axis."""
    results: list[dict[str, np.ndarray]] = [{} for _ in sizes]
    for info in output_infos:
        batched = outputs[info.name]
        start = 0
        for i, request_sizes in enumerate(sizes):
            n = request_sizes["batch"]
            part = batched[start:start + n]
            start += n
            index = tuple(
                slice(0, request_sizes[a]) if isinstance(a, str) and a in request_sizes else slice(None)
                for a in info.axes
            )
            part = part[(slice(None), *index)]
            results[i][info.name] = np.ascontiguousarray(part, dtype=info.dtype)
        if start != len(batched):
            raise ValueError(f"output '{info.name}' has {len(batched)} rows, requests sum to {start}")
    return results


def parse_parameters(config: Mapping[str, object]) -> dict[str, str]:
    """Triton ``parameters`` as a plain ``{key: string_value}`` dict."""
    params = config.get("parameters") or {}
    return {k: str(v.get("string_value", "")) if isinstance(v, dict) else str(v)
            for k, v in params.items()}  # type: ignore[union-attr]


def choose_providers(requested: str, available: Sequence[str]) -> tuple[list[str], list[str]]:
    """(usable providers in requested order, dropped ones); CPU is always kept last."""
    wanted = [p.strip() for p in requested.split(",") if p.strip()] or ["CPUExecutionProvider"]
    usable = [p for p in wanted if p in available]
    dropped = [p for p in wanted if p not in available]
    if "CPUExecutionProvider" not in usable:
        usable.append("CPUExecutionProvider")
    return usable, dropped


def make_session(model_path: str, params: Mapping[str, str], device_id: int = 0,
                 config_entries: Mapping[str, str] | None = None):
    """An ORT InferenceSession configured from the config parameters (and session config entries)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    for key, value in (config_entries or {}).items():
        options.add_session_config_entry(key, value)
    options.intra_op_num_threads = int(params.get("intra_op_thread_count", "0") or 0)
    options.inter_op_num_threads = int(params.get("inter_op_thread_count", "0") or 0)
    providers, dropped = choose_providers(params.get("execution_providers", ""),
                                          ort.get_available_providers())
    provider_options = [{"device_id": str(device_id)} if p in ("CUDAExecutionProvider",
                                                                "TensorrtExecutionProvider") else {}
                        for p in providers]
    session = ort.InferenceSession(model_path, sess_options=options, providers=providers,
                                   provider_options=provider_options)
    return session, dropped


# --- INT8 kernel probe and golden self-check (also run by `python -m converters verify`) ---

#: The session option that makes ORT run int8 weights on its exact u8 x u8 kernels.
EXACT_INT8_OPTION = {"session.x64quantprecision": "1"}
_PROBE_K = 64
_PROBE_EXACT = 255 * 127 * _PROBE_K  # 2,072,640; the int16-pair kernel returns 1,048,544


# MatMulInteger(a: uint8 [1, 64], b: int8 [64, 1] all 127) -> int32 [1, 1], opset 13, IR 7; kept
# serialized so the runner needs no `onnx` package (the NGC image has none); tests rebuild it.
_PROBE_MODEL = (
    "CAcSFHRyaXRvbi1zZXJ2aW5nLXN0YWNrOqQBChgKAWEKAWISAXkiDU1hdE11bEludGVnZXISEWludDhfa2VybmVsX3By"
    "b2JlKksIQAgBEANCAWJKQH9/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/f39/"
    "f39/f39/f39/f39aEwoBYRIOCgwIAhIICgIIAQoCCEBiEwoBeRIOCgwIBhIICgIIAQoCCAFCBAoAEA0="
)


def probe_matmul(config_entries: Mapping[str, str] | None = None) -> int:
    """What ORT's CPU u8 x s8 kernel returns for 255 x 127 summed over 64 (exact: 2,072,640)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    for key, value in (config_entries or {}).items():
        options.add_session_config_entry(key, value)
    session = ort.InferenceSession(base64.b64decode(_PROBE_MODEL), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    return int(session.run(None, {"a": np.full((1, _PROBE_K), 255, np.uint8)})[0][0, 0])


@functools.lru_cache(maxsize=1)
def int8_kernel() -> str:
    """``exact`` (VNNI / AMX) or ``int16-saturating`` (AVX2, AVX-512 without VNNI), by probing."""
    return "exact" if probe_matmul() == _PROBE_EXACT else "int16-saturating"


def int8_config_entries() -> dict[str, str]:
    """Session config entries that make this CPU compute INT8 graphs exactly (empty if it does)."""
    return dict(EXACT_INT8_OPTION) if int8_kernel() != "exact" else {}


#: Set by ``converters verify --emulate-cpu`` for the child it runs under QEMU.
EMULATED_CPU_ENV = "TRITON_STACK_EMULATED_CPU"


@functools.lru_cache(maxsize=1)
def cpu_description() -> dict[str, object]:
    """Vendor, model name and the INT8-relevant flags of this CPU, from ``/proc/cpuinfo``."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    wanted = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
    emulated = os.environ.get(EMULATED_CPU_ENV)
    if emulated:  # under QEMU user mode /proc/cpuinfo still describes the host
        return {"vendor": "QEMU", "model": f"{emulated} (emulated by QEMU on {info.get('model name')})",
                "int8_flags": []}
    return {"vendor": info.get("vendor_id", "unknown"), "model": info.get("model name", "unknown"),
            "int8_flags": [f for f in wanted if f in flags]}


def describe_cpu(cpu: Mapping[str, object] | None = None) -> str:
    cpu = cpu or cpu_description()
    flags = cpu.get("int8_flags") or []
    if cpu.get("vendor") == "QEMU":  # the flags are the emulated model's, not read here
        return str(cpu.get("model"))
    return f"{cpu.get('model', 'unknown CPU')} ({', '.join(map(str, flags)) or 'no AVX2'})"


@dataclass
class GoldenResult:
    """The golden self-check of one model version on this CPU."""

    ok: bool
    rows: int
    figures: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    built_on: Mapping[str, object] | None = None  # metadata.json's build_cpu

    def summary(self) -> str:
        shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in self.figures.items())
        return f"{shown} ({self.rows} rows)"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, np.sum(a * b, axis=1) / np.maximum(norms, 1e-30), 1.0)


def golden_figures(outputs: np.ndarray, golden: Mapping[str, np.ndarray], output: str,
                   kind: str) -> dict[str, float]:
    """How ``outputs`` (this CPU) agree with the build CPU's outputs and the FP32 reference."""
    to_build = _cosines(outputs, golden[f"built:{output}"])
    to_fp32 = _cosines(outputs, golden[f"fp32:{output}"])
    figures = {"min_cosine_to_build": float(to_build.min()),
               "mean_cosine_to_fp32": float(to_fp32.mean()), "min_cosine_to_fp32": float(to_fp32.min())}
    if kind == "classification":
        labels = golden[f"fp32:{output}"].reshape(len(outputs), -1).argmax(axis=1)
        figures["label_changes_vs_fp32"] = int((outputs.reshape(len(outputs), -1).argmax(axis=1)
                                                != labels).sum())
    return figures


def judge_golden(figures: Mapping[str, float], bounds: Mapping[str, float], rows: int) -> GoldenResult:
    """Hold ``figures`` to ``bounds`` (``min_<figure>`` / ``max_<figure>`` keys)."""
    failures = []
    for key, bound in bounds.items():
        kind, _, name = key.partition("_")
        value = figures.get(name)
        if value is None:
            continue
        if (kind == "min" and value < bound - 1e-9) or (kind == "max" and value > bound + 1e-9):
            failures.append(f"{name} {value:.4f} (needs {'>=' if kind == 'min' else '<='} {bound})")
    return GoldenResult(not failures, rows, dict(figures), failures)


def load_golden(folder: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays, metadata.json) of a version folder with golden data; None without it."""
    try:
        with open(os.path.join(folder, "metadata.json"), encoding="utf-8") as f:
            metadata = json.load(f)
    except (OSError, ValueError):
        return None
    golden = metadata.get("golden")
    if not golden or not os.path.isfile(os.path.join(folder, golden.get("file", "golden.npz"))):
        return None
    with np.load(os.path.join(folder, golden.get("file", "golden.npz"))) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, metadata


def golden_check(session, folder: str) -> GoldenResult | None:
    """Run the version's golden inputs through ``session`` and hold them to its bounds."""
    loaded = load_golden(folder)
    if loaded is None:
        return None
    arrays, metadata = loaded
    meta = metadata["golden"]
    output = meta["output"]
    names = {i.name for i in session.get_inputs()}
    feed = {k.split(":", 1)[1]: v for k, v in arrays.items()
            if k.startswith("input:") and k.split(":", 1)[1] in names}
    outputs = session.run([output], feed)[0]
    figures = golden_figures(outputs, arrays, output, meta.get("kind", "embedding"))
    result = judge_golden(figures, meta["bounds"], int(len(outputs)))
    result.built_on = metadata.get("build_cpu")
    return result


def golden_failure_message(result: GoldenResult) -> str:
    """One line for Triton's load error: the figures, this CPU and kernel, the build CPU."""
    built = describe_cpu(result.built_on) if result.built_on else "an unknown CPU"
    return (f"golden self-check failed on this CPU, {describe_cpu()}, int8 kernel {int8_kernel()}: "
            f"{'; '.join(result.failures)} over {result.rows} golden rows (built on {built}). "
            "The version already serving keeps serving; re-export on this CPU or serve the FP32 "
            "twin (python -m converters verify REPOSITORY lists what passes here)")


def load_sibling(folder: str, module: str):
    """``module``.py from the version folder (None if absent): the stub puts no folder on sys.path."""
    path = os.path.join(folder, f"{module}.py")
    if not os.path.isfile(path):
        return None
    spec = importlib.util.spec_from_file_location(f"triton_stack_{module}_{abs(hash(folder))}", path)
    loaded = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = loaded  # type: ignore[union-attr]  # dataclasses look their module up there
    spec.loader.exec_module(loaded)  # type: ignore[union-attr]
    return loaded


class DriftMetrics:
    """A drift window whose PSI per feature is published on Triton's /metrics (custom metrics of
    the Python backend), at most once every ``interval_s``: a metric update is a message to
    the Triton process, too dear for every batch. A batch that comes too soon schedules one
    publication at the end of the interval, so the last batch of a burst is published too."""

    def __init__(self, window, model: str, version: str, interval_s: float = 1.0, sample_s: float = 0.02):
        self.window = window
        self.interval_s = interval_s
        self.sample_s = sample_s
        self.sampled = 0.0
        self.published = 0.0
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None
        psi = pb_utils.MetricFamily(
            name="triton_stack_drift_psi", kind=pb_utils.MetricFamily.GAUGE,
            description="Population Stability Index of a feature over the last window of rows "
                        "against the export's reference profile (> 0.25: shifted)")
        rows = pb_utils.MetricFamily(
            name="triton_stack_drift_window_rows", kind=pb_utils.MetricFamily.GAUGE,
            description="rows in the drift window the scores are measured over")
        self.labels = {"model": model, "version": version}
        # a feature's series appears with its first score (window >= min_rows): never a 0 that
        # would read as "no drift" before there is anything to judge
        self.gauges: dict[str, object] = {}
        self.rows = rows.Metric(labels=self.labels)
        self.psi_family, self.rows_family = psi, rows  # kept alive with their metrics

    def observe(self, feed: Mapping[str, np.ndarray], output: np.ndarray) -> None:
        now = time.monotonic()
        if now - self.sampled < self.sample_s:
            return
        self.sampled = now
        with self.lock:
            self.window.observe(feed, output)
            wait = self.published + self.interval_s - time.monotonic()
            if wait > 0:
                if self.timer is None:
                    self.timer = threading.Timer(wait, self.publish)
                    self.timer.daemon = True
                    self.timer.start()
                return
        self.publish()

    def publish(self) -> None:
        with self.lock:
            self.timer = None
            self.published = time.monotonic()
            rows = float(self.window.rows)
            scores = self.window.scores()
        self.rows.set(rows)
        for feature, score in scores.items():
            gauge = self.gauges.get(feature)
            if gauge is None:
                gauge = self.gauges[feature] = self.psi_family.Metric(
                    labels={**self.labels, "feature": feature})
            gauge.set(score)  # type: ignore[attr-defined]


def drift_metrics(folder: str, params: Mapping[str, str], model: str, version: str) -> DriftMetrics | None:
    """The version's drift monitor, or None (no profile, no drift.py, or ``drift_window`` 0)."""
    drift = load_sibling(folder, "drift")
    profile = drift.load_profile(folder) if drift is not None else None
    if profile is None or params.get("drift_window") == "0":
        return None
    if params.get("drift_window"):
        profile["window"] = int(params["drift_window"])
        profile["min_rows"] = min(int(profile.get("min_rows") or 0), profile["window"])
    sample_ms = float(params.get("drift_sample_ms") or 20)
    return DriftMetrics(drift.DriftWindow(profile), model, version, sample_s=sample_ms / 1000)


class RefusalCounter:
    """Requests refused, per reason, on Triton's /metrics: by default as invalid input,
    ``triton_stack_data_quality_total{model, reason}``, the series the Python steps that see raw
    input count in (a series appears with its first refusal)."""

    def __init__(self, model: str, name: str = "triton_stack_data_quality_total",
                 description: str = "inputs refused (empty, too_long, out_of_range, ...) or repaired "
                                    "(truncated), per reason"):
        self.model = model
        self.family = pb_utils.MetricFamily(name=name, kind=pb_utils.MetricFamily.COUNTER,
                                            description=description)
        self.counters: dict[str, object] = {}

    def count(self, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        counter = self.counters.get(reason)
        if counter is None:
            counter = self.counters[reason] = self.family.Metric(
                labels={"model": self.model, "reason": reason})
        counter.increment(n)  # type: ignore[attr-defined]


class TextFront:
    """Raw text in, the graph's token inputs out, in the model's own process.

    A model whose config has the ``text_input`` parameter takes that BYTES input (one text per
    row) and tokenizes it here with ``tokenizer_file`` (in the model folder, beside
    config.pbtxt), instead of behind a separate tokenizer model in an ensemble. That saves the
    tokenizer's Python-backend hop and the token tensors' trip through Triton, and a request
    refused at this model's full queue has cost no tokenizer work. All texts of a dynamic
    batch are encoded in one call; token inputs are still taken from callers that send them.
    The tokenizing code is ``text.py`` beside this file (:mod:`converters.runtime.text`)."""

    def __init__(self, text, model_folder: str, params: Mapping[str, str], token_inputs: Sequence[str]):
        self.text = text
        self.name = params["text_input"]
        path = os.path.join(model_folder, params.get("tokenizer_file") or "tokenizer.json")
        self.tokenizer = text.load_tokenizer(path, int(params["max_length"]), params.get("pad_token") or None)
        self.max_chars = int(params.get("max_chars") or text.DEFAULT_MAX_CHARS)
        self.token_inputs = list(token_inputs)

    def decode(self, raw: np.ndarray) -> list[str]:
        try:
            return self.text.decode_texts(raw.reshape(-1), self.max_chars, self.name)
        except self.text.InvalidInput as exc:
            raise BadRequest(str(exc), exc.reason) from None

    def encode(self, requests: Sequence[list[str]], per_text: bool = False
               ) -> tuple[list[list[dict[str, np.ndarray]]], int]:
        """Per request, its token arrays: one set padded to its own longest text, or with
        ``per_text`` one set per text, each unpadded (then runs are planned per text, and a
        short sentence does not pad to a long one sent in the same request); and the rows cut
        at the maximum length."""
        encoded = self.text.encode(self.tokenizer, [t for texts in requests for t in texts])
        arrays, start = [], 0
        for texts in requests:
            spans = ([(r, r + 1) for r in range(start, start + len(texts))] if per_text
                     else [(start, start + len(texts))])
            start += len(texts)
            arrays.append([{name: getattr(part, name) for name in self.token_inputs}
                           for part in (self.text.trim(encoded, a, b) for a, b in spans)])
        return arrays, encoded.truncated


def shadow_candidate(model_folder: str, version: int) -> bool:
    """Whether ``python -m rollout shadow`` loads this version only to receive copies of the
    traffic (``rollout.json`` beside the versions: mode "shadow", this version the candidate)."""
    try:
        with open(os.path.join(model_folder, "rollout.json")) as f:
            split = json.load(f)
    except (OSError, ValueError):
        return False
    return split.get("mode") == "shadow" and split.get("candidate") == version


def lowest_cpu_priority() -> None:
    """SCHED_IDLE for every thread of this process (Linux schedules threads, not processes): a
    shadow candidate computes on CPU the served versions leave idle, and any of their threads
    that wakes preempts it at once (nice 19 alone still let a primary wait out the candidate's
    time slice: +37 % p99 on embed). Where SCHED_IDLE is refused, nice 19. It is never undone;
    serving the version loads it anew."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setscheduler(int(tid), os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.setpriority(os.PRIO_PROCESS, int(tid), 19)


class TritonPythonModel:
    """Thin adapter: config parsed once in ``initialize``; one ``session.run`` per batch."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = parse_parameters(config)
        folder = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(folder, params.get("onnx_file", "model.onnx"))
        device_id = int(args.get("model_instance_device_id", 0) or 0)
        if shadow_candidate(args["model_repository"], int(args["model_version"])):
            lowest_cpu_priority()  # before the session: ORT's threads inherit it
            pb_utils.Logger.log_info(f"{args['model_name']} v{args['model_version']}: shadow candidate, "
                                     "runs at the lowest CPU priority (SCHED_IDLE)")
        self.session, dropped = make_session(path, params, device_id, int8_config_entries())
        if dropped:
            pb_utils.Logger.log_warn(f"execution providers not available here, dropped: {dropped}")
        golden = golden_check(self.session, folder)
        if golden is not None and not golden.ok:
            raise pb_utils.TritonModelException(golden_failure_message(golden))
        if golden is not None:
            pb_utils.Logger.log_info(f"{args['model_name']} v{args['model_version']}: golden self-check "
                                     f"passed on {describe_cpu()}, int8 kernel {int8_kernel()}: "
                                     f"{golden.summary()}")
        onnx_inputs = {i.name: i.shape for i in self.session.get_inputs()}
        onnx_outputs = {o.name: o.shape for o in self.session.get_outputs()}
        self.inputs = [
            TensorInfo(c["name"], np.dtype(TRITON_TO_NUMPY[c["data_type"]]),
                       onnx_axes(onnx_inputs[c["name"]], [int(d) for d in c["dims"]]))
            for c in config["input"] if c["name"] in onnx_inputs
        ]
        self.text = None
        if params.get("text_input"):
            # Rust's thread pool for a batch of a few short texts costs more CPU than it saves
            # (AMD Zen 5, 3 texts of 16 tokens: 72 us a row with it, 30 without), and every
            # instance would start its own on the cores ORT computes on.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            text = load_sibling(folder, "text")
            if text is None:
                raise pb_utils.TritonModelException(
                    f"{args['model_name']}: config takes text ({params['text_input']}) but text.py is "
                    "missing beside model.py; export the version again")
            self.text = TextFront(text, args["model_repository"], params, [i.name for i in self.inputs])
        self.outputs = [
            TensorInfo(c["name"], np.dtype(TRITON_TO_NUMPY[c["data_type"]]),
                       onnx_axes(onnx_outputs[c["name"]], [int(d) for d in c["dims"]]))
            for c in config["output"]
        ]
        self.output_names = [o.name for o in self.outputs]
        # A text request's rows are planned one by one when every output row has a fixed shape
        # (a sentence embedding, logits): rows then reassemble by concatenation. An output with
        # a token axis keeps the request whole.
        self.per_text = not any(isinstance(a, str) for o in self.outputs for a in o.axes)
        self.max_padding = float(params.get("max_padding_fraction", "0.25") or 0.25)
        self.limits = Limits.from_parameters(params)
        self.drift = drift_metrics(folder, params, args["model_name"], args["model_version"])
        self.quality = RefusalCounter(args["model_name"])
        self.admit_rows = int(params.get("admit_rows", "0") or 0)
        self.shed = RefusalCounter(args["model_name"], "triton_stack_shed_total",
                                   "requests refused unserved because more rows were queued than "
                                   "one execution computes (admit_rows)")

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        arrived: list[tuple[int, dict[str, np.ndarray]]] = []  # request index, its token arrays
        texts: list[tuple[int, list[str]]] = []
        row_counts = [0] * len(requests)  # a refused request computes nothing
        for i, request in enumerate(requests):
            try:
                raw = (pb_utils.get_input_tensor_by_name(request, self.text.name)
                       if self.text is not None else None)
                if raw is not None:
                    texts.append((i, self.text.decode(raw.as_numpy())))
                    row_counts[i] = len(texts[-1][1])
                else:
                    arrived.append((i, self._arrays(request)))
                    row_counts[i] = len(next(iter(arrived[-1][1].values()), ()))
            except BadRequest as exc:
                responses[i] = self._refuse(exc)
        first = len(requests) - admitted(row_counts, self.admit_rows)
        if first:  # before tokenizing: a refusal costs no compute
            waiting = sum(row_counts)
            for i in range(first):
                if responses[i] is None:
                    responses[i] = self._shed(waiting)
            texts = [(i, t) for i, t in texts if i >= first]
            arrived = [(i, a) for i, a in arrived if i >= first]
        units: list[tuple[int, dict[str, np.ndarray]]] = list(arrived)  # (request, arrays)
        if texts:  # every text of the batch in one tokenizer call
            encoded, truncated = self.text.encode([rows for _, rows in texts], self.per_text)
            self.quality.count("truncated", truncated)
            units += [(i, part) for (i, _), parts in zip(texts, encoded, strict=True) for part in parts]
        owners: list[int] = []
        batches: list[dict[str, np.ndarray]] = []
        sizes: list[dict[str, int]] = []
        for i, arrays in units:
            if responses[i] is not None:  # one of its texts was refused: so is the request
                continue
            try:
                sizes.append(check_request(arrays, self.inputs, self.limits))
            except BadRequest as exc:
                responses[i] = self._refuse(exc)
                continue
            owners.append(i)
            batches.append(arrays)
        computed: list[dict[str, np.ndarray] | None] = [None] * len(owners)
        for run in plan_runs(sizes, self.max_padding) if owners else []:
            feed = concat_padded([batches[j] for j in run], self.inputs)
            try:
                values = self.session.run(self.output_names, feed)
            except Exception as exc:  # an ORT failure on valid-looking input fails this batch
                raise pb_utils.TritonModelException(f"onnxruntime failed: {exc}") from exc
            if self.drift is not None:
                self.drift.observe(feed, values[0])
            per_unit = split_outputs(dict(zip(self.output_names, values, strict=True)),
                                     [sizes[j] for j in run], self.outputs)
            for j, outputs in zip(run, per_unit, strict=True):
                computed[j] = outputs
        parts: dict[int, list[dict[str, np.ndarray]]] = {}
        for j, i in enumerate(owners):
            if responses[i] is None and computed[j] is not None:
                parts.setdefault(i, []).append(computed[j])
        for i, pieces in parts.items():  # a request's units in its row order
            tensors = [pb_utils.Tensor(name, pieces[0][name] if len(pieces) == 1 else
                                       np.concatenate([p[name] for p in pieces]))
                       for name in self.output_names]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
        for i, response in enumerate(responses):
            if response is None:  # it held no row (an empty TEXT)
                responses[i] = self._refuse(BadRequest("the request has no rows; send at least one",
                                                       "empty"))
        return responses

    def _arrays(self, request) -> dict[str, np.ndarray]:
        arrays = {}
        for info in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, info.name)
            if tensor is None:
                raise BadRequest(f"input '{info.name}' is missing", "missing")
            arrays[info.name] = tensor.as_numpy()
        return arrays

    def _refuse(self, exc: BadRequest):
        """INVALID_ARGUMENT for this request alone, counted under its reason."""
        self.quality.count(exc.reason)
        return pb_utils.InferenceResponse(
            error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))

    def _shed(self, waiting: int):
        """UNAVAILABLE, as Triton's own queue policy refuses (clients treat it as overload)."""
        self.shed.count("overloaded")
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(
            f"{SHED_MESSAGE} ({waiting} rows waited for one execution of at most {self.admit_rows}, "
            "admit_rows); retry after a back-off", pb_utils.TritonError.UNAVAILABLE))

    def finalize(self) -> None:
        if self.drift is not None and self.drift.timer is not None:
            self.drift.timer.cancel()
        self.session = None
