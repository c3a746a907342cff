"""``parity``: the ONNX model against its source on several input shapes.

Every output of every case must satisfy ``|onnx - source| <= atol + rtol * |source|``;
otherwise :class:`~converters.errors.ToleranceExceeded` carries a per-output table of the
worst absolute and relative differences. Never a warning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from tritonstack.converters.errors import ShapeMismatch, ToleranceExceeded
from tritonstack.converters.steps.base import ExportContext, Step, ort_session

Feed = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class ParityInput:
    onnx_path: Path
    reference: Callable[[Feed], Mapping[str, np.ndarray]]  # the source model, same feeds
    cases: Sequence[Feed]
    atol: float
    rtol: float
    label: str = "ONNX vs source"


def compare(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], atol: float,
            rtol: float) -> list[dict[str, object]]:
    """One row per output: shapes, worst absolute/relative difference, pass/fail."""
    rows = []
    for name, ref in reference.items():
        got = candidate[name]
        if got.shape != ref.shape:
            raise ShapeMismatch(f"output {name!r}: ONNX shape {list(got.shape)} != source {list(ref.shape)}")
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        scale = np.abs(ref.astype(np.float64))
        max_abs = float(diff.max()) if diff.size else 0.0
        max_rel = float((diff / np.maximum(scale, 1e-12)).max()) if diff.size else 0.0
        ok = bool(np.all(diff <= atol + rtol * scale))
        rows.append({"output": name, "shape": list(ref.shape), "max_abs": max_abs, "max_rel": max_rel,
                     "atol": atol, "rtol": rtol, "ok": ok})
    return rows


def format_table(rows: Sequence[Mapping[str, object]]) -> str:
    lines = [f"  {'output':<16} {'shape':<16} {'max_abs':>10} {'max_rel':>10}  {'atol':>8} {'rtol':>8}  ok"]
    for r in rows:
        lines.append(f"  {r['output']!s:<16} {str(r['shape']):<16} {r['max_abs']:>10.3g} "
                     f"{r['max_rel']:>10.3g}  {r['atol']:>8.1g} {r['rtol']:>8.1g}  "
                     f"{'yes' if r['ok'] else 'NO'}")
    return "\n".join(lines)


def run(inp: ParityInput) -> dict[str, object]:
    """Returns ``{"cases": [...shapes...], "table": worst row per output}``; raises on failure."""
    session = ort_session(inp.onnx_path)
    names = [o.name for o in session.get_outputs()]
    onnx_inputs = {i.name for i in session.get_inputs()}
    worst: dict[str, dict[str, object]] = {}
    shapes = []
    for feed in inp.cases:
        ref = inp.reference(feed)
        got = dict(zip(names, session.run(names, {k: v for k, v in feed.items() if k in onnx_inputs}),
                       strict=True))
        shapes.append({k: list(v.shape) for k, v in feed.items()})
        for row in compare({n: ref[n] for n in names}, got, inp.atol, inp.rtol):
            prev = worst.setdefault(str(row["output"]), row)
            if prev is not row:  # keep the worst of every case, per output
                prev["max_abs"] = max(prev["max_abs"], row["max_abs"])  # type: ignore[type-var]
                prev["max_rel"] = max(prev["max_rel"], row["max_rel"])  # type: ignore[type-var]
                prev["ok"] = bool(prev["ok"]) and bool(row["ok"])
                prev["shape"] = row["shape"] if not row["ok"] else prev["shape"]
    table = list(worst.values())
    if not all(r["ok"] for r in table):
        raise ToleranceExceeded(
            f"{inp.label}: outputs differ beyond tolerance on {len(inp.cases)} input shapes; "
            "fix the export, or loosen --parity-atol/--parity-rtol knowingly\n" + format_table(table),
            table)
    return {"cases": shapes, "table": table}


class ParityStep(Step):
    """The served FP32 graph against the source on several shapes."""

    name = "parity"
    check = True

    def run(self, ctx: ExportContext) -> dict[str, object]:
        t = ctx.spec.thresholds
        return run(ParityInput(ctx.served["fp32"].path, ctx.family.reference,
                               ctx.family.parity_cases, t.parity_atol, t.parity_rtol))

    def keep(self, ctx: ExportContext, result: object) -> None:
        ctx.parity = result

    def describe(self, result: object) -> str:
        return "max |diff| " + ", ".join(f"{row['output']} {row['max_abs']:.2g}"
                                          for row in result["table"])


class ParityFp16Step(Step):
    """The FP16 graph against the source, at FP16's tolerance."""

    name = "parity-fp16"
    check = True

    def skipped_because(self, ctx: ExportContext) -> str | None:
        return None if "fp16" in ctx.served else "no FP16 ONNX model"

    def run(self, ctx: ExportContext) -> dict[str, object]:
        return run(ParityInput(ctx.served["fp16"].path, ctx.family.reference,
                               ctx.family.parity_cases, 1e-2, 1e-2,
                               label="FP16 ONNX vs source"))
