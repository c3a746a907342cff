"""``accuracy``: the INT8 gate. INT8 vs FP32 ONNX on held-out data, against stated thresholds.

* embeddings (``feature-extraction``): mean cosine >= ``min_mean_cosine`` (0.99), worst cosine
  >= ``min_min_cosine`` (0.90), recall@10 >= ``min_recall_at_10`` (0.95); Spearman reported;
* classification: accuracy drop <= ``max_accuracy_drop_points`` (0.5 points); agreement reported;
* scores (a single-logit head: a cross-encoder reranker): Spearman rank correlation of the scores
  >= ``min_score_spearman`` (0.98); absolute errors reported.

Crossing a threshold raises :class:`~converters.errors.AccuracyBelowThreshold`: the export fails
unless the user lowered that threshold explicitly (recorded in metadata.json).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tritonstack.converters.errors import AccuracyBelowThreshold
from tritonstack.converters.spec import Thresholds
from tritonstack.converters.steps.base import ExportContext, OnnxModel, Step, ort_session, run_batches

Feed = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class AccuracyInput:
    reference: OnnxModel  # FP32
    candidate: OnnxModel  # INT8
    kind: str  # "embedding" | "classification" | "score"
    data: Callable[[], tuple[Sequence[Feed], np.ndarray | None]]  # batches, labels (or None)
    thresholds: Thresholds


def run(inp: AccuracyInput) -> dict[str, object]:
    from tritonstack.converters.metrics import classification_agreement, embedding_agreement, score_agreement

    feeds, labels = inp.data()
    output = inp.reference.output_names[0]
    ref = run_batches(ort_session(inp.reference.path), feeds, output, "gate: FP32 on held-out batches")
    # exact integer arithmetic on every CPU: the figures do not depend on the CPU measuring them
    cand = run_batches(ort_session(inp.candidate.path, exact_int8=True), feeds, output,
                       "gate: INT8 on held-out batches")
    t = inp.thresholds
    failures: list[str] = []
    if inp.kind == "embedding":
        m = embedding_agreement(ref, cand)
        metrics = m.to_dict()
        checks = [("mean_cosine", m.mean_cosine, ">=", t.min_mean_cosine),
                  ("min_cosine", m.min_cosine, ">=", t.min_min_cosine),
                  ("recall_at_10", m.recall_at_10, ">=", t.min_recall_at_10)]
    elif inp.kind == "score":
        s = score_agreement(ref, cand)
        metrics = s.to_dict()
        checks = [("spearman", s.spearman, ">=", t.min_score_spearman)]
    else:
        if labels is None:  # no ground truth: FP32's own predictions are the labels
            labels = ref.argmax(axis=1)
        m = classification_agreement(ref, cand, labels)
        metrics = m.to_dict()
        checks = [("accuracy_drop_points", -m.delta_points + 0.0, "<=", t.max_accuracy_drop_points)]
        metrics["accuracy_drop_points"] = -m.delta_points + 0.0  # no "-0.0"
    for name, value, op, bound in checks:
        ok = value >= bound - 1e-9 if op == ">=" else value <= bound + 1e-9  # float noise at the bound
        if not ok:
            failures.append(f"{name} {value:.4f} (needs {op} {bound})")
    result = {"kind": inp.kind, "n": int(len(ref)), "metrics": metrics,
              "thresholds": {name: f"{op} {bound}" for name, _, op, bound in checks},
              "passed": not failures}
    if failures:
        raise AccuracyBelowThreshold(
            f"INT8 model {inp.candidate.path.name} fails the accuracy gate vs FP32 on {len(ref)} held-out "
            f"rows: {'; '.join(failures)}. Try --int8-mode static / more calibration data, or lower the "
            "bar explicitly (--min-mean-cosine, --min-recall-at-10, --max-accuracy-drop, "
            "--min-score-spearman)",
            metrics, failures)
    return result


class AccuracyStep(Step):
    """The INT8 gate, plus how the INT8 model was made (recorded in metadata.json)."""

    name = "accuracy"
    check = True

    def skipped_because(self, ctx: ExportContext) -> str | None:
        return None if "int8" in ctx.served else "no INT8 model to gate"

    def run(self, ctx: ExportContext) -> dict[str, object]:
        from tritonstack.converters.spec import Int8Mode

        spec, family = ctx.spec, ctx.family
        if family.evaluation is None:  # refused up front; kept as a guard
            raise ValueError("the source has no evaluation data for the INT8 gate")
        result = run(AccuracyInput(ctx.served["fp32"], ctx.served["int8"], family.kind,
                                   lambda: family.evaluation(spec.evaluation_size), spec.thresholds))
        mode = spec.effective_int8_mode
        per_token = ctx.smoothed is not None
        return dict(result, int8_mode=str(mode),
                    calibration=(spec.calibration or family.default_calibration) if mode is Int8Mode.STATIC
                    else "corpus (smoothing)" if per_token else "none (dynamic)",
                    activations="per-token" if per_token else "per-tensor")

    def keep(self, ctx: ExportContext, result: object) -> None:
        ctx.accuracy = result  # type: ignore[assignment]

    def describe(self, result: object) -> str:
        metrics = result["metrics"]  # type: ignore[index]
        keys = {"embedding": ("mean_cosine", "min_cosine", "recall_at_10", "spearman"),
                "score": ("spearman", "max_abs_error", "mean_abs_error")}.get(
            result["kind"],  # type: ignore[index]
            ("reference_accuracy", "candidate_accuracy", "accuracy_drop_points", "agreement"))
        return (", ".join(f"{k} {float(metrics[k]):.4f}" for k in keys if k in metrics)
                + f" (n={result['n']})")  # type: ignore[index]
