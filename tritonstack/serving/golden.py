"""The load-time golden self-check: a version's held-out inputs run on this CPU, held to the bounds
its export wrote (``golden.npz`` and ``metadata.json["golden"]`` beside the model). A version
that misses a bound fails to load with the figures, this CPU and its kernel in Triton's reason,
and the version already serving keeps serving."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .cpu import describe_cpu, int8_kernel


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
            "twin (python -m tritonstack.converters verify REPOSITORY lists what passes here)")
