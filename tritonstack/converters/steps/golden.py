"""``golden``: a few held-out inputs with their outputs, carried by each version for self-checks.

Each ONNX version gets ``golden.npz`` (the inputs, the FP32 reference outputs, and this file's
own outputs on the build CPU) and a ``golden`` section in ``metadata.json`` with the bounds.
The python-ort runner checks them at load on the serving CPU, and ``python -m tritonstack.converters
verify`` on any machine (:mod:`tritonstack.serving.golden` holds the check itself):

* ``min_cosine_to_build`` >= 0.999 for every row: this CPU reproduces the build CPU's
  arithmetic (a saturating integer kernel does not: MiniLM rows fall to ~0.98);
* INT8 embeddings: mean / min cosine to FP32 >= the gate's ``min_mean_cosine`` / ``min_min_cosine``;
* INT8 classifiers: no more golden labels differ from FP32 than did on the build CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tritonstack.converters.spec import Thresholds
from tritonstack.converters.steps.base import ExportContext, OnnxModel, Step, ort_session
from tritonstack.serving.golden import golden_figures, judge_golden

Feed = Mapping[str, np.ndarray]
GOLDEN_ROWS = 32
MIN_COSINE_TO_BUILD = 0.999


@dataclasses.dataclass(frozen=True)
class GoldenInput:
    models: Mapping[str, OnnxModel]  # precision -> the file that will be served
    reference: OnnxModel  # FP32
    kind: str  # "embedding" | "classification" | "score"
    feed: Feed  # one held-out batch; the first GOLDEN_ROWS rows are kept
    thresholds: Thresholds
    out_dir: Path


def run(inp: GoldenInput) -> dict[str, dict[str, object]]:
    """``{precision: {"file": golden.npz path, "meta": metadata section}}``."""
    output = inp.reference.output_names[0]
    names = set(inp.reference.input_names)
    feed = {k: np.ascontiguousarray(v[:GOLDEN_ROWS]) for k, v in inp.feed.items() if k in names}
    reference = ort_session(inp.reference.path).run([output], feed)[0]
    inp.out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, dict[str, object]] = {}
    for precision, model in inp.models.items():
        built = ort_session(model.path, exact_int8=True).run([output], feed)[0]
        arrays = {f"input:{k}": v for k, v in feed.items()}
        arrays |= {f"fp32:{output}": reference, f"built:{output}": built}
        bounds: dict[str, float] = {"min_min_cosine_to_build": MIN_COSINE_TO_BUILD}
        figures = golden_figures(built, arrays, output, inp.kind)
        if precision == "int8" and inp.kind == "embedding":
            bounds["min_mean_cosine_to_fp32"] = inp.thresholds.min_mean_cosine
            bounds["min_min_cosine_to_fp32"] = inp.thresholds.min_min_cosine
        elif precision == "int8" and inp.kind == "classification":
            bounds["max_label_changes_vs_fp32"] = figures["label_changes_vs_fp32"]
        judged = judge_golden(figures, bounds, len(built))
        if not judged.ok:  # the gate passed on all held-out rows, so this would be a bug
            raise ValueError(f"golden rows of the {precision} model miss their own bounds: {judged.failures}")
        path = inp.out_dir / f"golden-{precision}.npz"
        np.savez_compressed(path, **arrays)
        result[str(precision)] = {"file": str(path), "meta": {
            "file": "golden.npz", "rows": int(len(built)), "output": output, "kind": inp.kind,
            "bounds": bounds, "build": judged.figures}}
    return result


class GoldenStep(Step):
    """Golden data for every ONNX version (the python-ort runner's load-time self-check)."""

    name = "golden"
    check = True

    def skipped_because(self, ctx: ExportContext) -> str | None:
        from tritonstack.converters.spec import Target

        if ctx.spec.target is Target.TENSORRT:
            return "TensorRT plans: Triton's model warmup checks them, not the python-ort runner"
        return None

    def run(self, ctx: ExportContext) -> dict[str, dict[str, object]]:
        spec = ctx.spec
        models = {str(p): ctx.served[str(p)] for p in spec.precisions}
        return run(GoldenInput(models, ctx.served["fp32"], ctx.family.kind,
                               ctx.family.golden_feed(spec.evaluation_size), spec.thresholds,
                               ctx.work / "golden"))

    def keep(self, ctx: ExportContext, result: object) -> None:
        ctx.goldens = result  # type: ignore[assignment]

    def describe(self, result: object) -> str:
        return "; ".join(f"{p}: {g['meta']['rows']} rows" for p, g in result.items())  # type: ignore[attr-defined]
