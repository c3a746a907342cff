"""``profile``: what the model's traffic and answers look like on its held-out data, written as
``profile.json`` beside each version (the reference the served model's drift is measured
against; features and the index in :mod:`tritonstack.serving.drift`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from tritonstack.converters.steps.base import ExportContext, OnnxModel, Step, ort_session
from tritonstack.serving.drift import reference_profile, row_features

Feed = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class ProfileInput:
    models: Mapping[str, OnnxModel]  # precision -> the file that will be served
    reference: OnnxModel  # FP32: its embeddings' centroid is the one every precision is held to
    kind: str  # "embedding" | "classification" | "score"
    feeds: Callable[[], Sequence[Feed]]
    unk_id: int | None
    out_dir: Path


def run(inp: ProfileInput) -> dict[str, str]:
    """``{precision: profile file}``."""
    feeds = list(inp.feeds())
    output = inp.reference.output_names[0]
    names = set(inp.reference.input_names)
    feeds = [{k: v for k, v in feed.items() if k in names} for feed in feeds]
    runs: dict[Path, list[np.ndarray]] = {}  # each file run once (the FP32 version is the reference)

    def outputs(path: Path) -> list[np.ndarray]:
        if path not in runs:
            session = ort_session(path, exact_int8=True)
            runs[path] = [session.run([output], feed)[0] for feed in feeds]
        return runs[path]

    centroid = None
    if inp.kind == "embedding":
        rows = np.concatenate(outputs(inp.reference.path))
        rows = rows.reshape(len(rows), -1).astype(np.float64)
        unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        centroid = unit.mean(axis=0)
    inp.out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    for precision, model in inp.models.items():
        parts: dict[str, list[np.ndarray]] = {}
        classes = 0
        for feed, out in zip(feeds, outputs(model.path), strict=True):
            classes = int(out.reshape(len(out), -1).shape[1])
            for name, values in row_features(feed, out, inp.kind, inp.unk_id, centroid).items():
                parts.setdefault(name, []).append(values)
        features = {name: np.concatenate(values) for name, values in parts.items()}
        profile = reference_profile(features, kind=inp.kind, classes=classes, unk_id=inp.unk_id,
                                    centroid=centroid)
        path = inp.out_dir / f"profile-{precision}.json"
        path.write_text(json.dumps(profile, indent=1))
        result[str(precision)] = str(path)
    return result


class ProfileStep(Step):
    """The reference profile of every ONNX version (drift monitoring in serving)."""

    name = "profile"
    check = True  # cheap, and always of the files that will be written

    def skipped_because(self, ctx: ExportContext) -> str | None:
        from tritonstack.converters.spec import Target

        if ctx.spec.target is Target.TENSORRT:
            return "TensorRT plans are served by the native backend, which does not measure drift"
        return None

    def run(self, ctx: ExportContext) -> dict[str, str]:
        spec, family = ctx.spec, ctx.family
        if family.evaluation is not None:
            feeds: Callable[[], Sequence[Feed]] = lambda: family.evaluation(spec.evaluation_size)[0]  # noqa: E731
        else:
            feeds = lambda: family.parity_cases  # noqa: E731
        unk_id = None
        tokenizer = getattr(ctx.source, "tokenizer", None)
        if tokenizer is not None and getattr(ctx.source, "has_tokenizer", False):
            unk_id = tokenizer().unk_token_id
        models = {str(p): ctx.served[str(p)] for p in spec.precisions}
        return run(ProfileInput(models, ctx.served["fp32"], family.kind, feeds, unk_id, ctx.work / "profile"))

    def keep(self, ctx: ExportContext, result: object) -> None:
        ctx.profiles = result  # type: ignore[assignment]

    def describe(self, result: object) -> str:
        profile = json.loads(Path(next(iter(result.values()))).read_text())  # type: ignore[attr-defined]
        return f"{profile['rows']} rows: {', '.join(profile['features'])}"
