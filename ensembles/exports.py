"""The two demo exports, through ``converters.api`` (the same path as ``python -m converters``).

Each writes an INT8 model (the one the ensembles serve) and its FP32 twin (``<name>_fp32``, for
comparison and fall-back), both gated: parity of FP32 against the source, INT8 against FP32.
An export is skipped when the repository's latest version of it is the same artifact (same
``ExportSpec.fingerprint()``, same runner); a change of serving settings alone (batching, queue,
instances, threads) then rewrites ``config.pbtxt`` without a new version (``apply_serving``).
The demo keeps the two newest versions of each model (the one served and one to roll back to).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from converters.api import DRIFT_FILE, RUNNER_FILE, TEXT_FILE, apply_serving, export
from converters.repository import existing_versions
from converters.spec import ExportSpec, Precision
from demo import contract

ENCODER = contract.ENCODER
CLASSIFIER = contract.CLASSIFIER
KEEP_VERSIONS = 2


def demo_specs(repository: Path) -> list[ExportSpec]:
    both = (Precision.INT8, Precision.FP32)
    return [
        # MiniLM: dynamic INT8 is the fast CPU form (2.2x FP32 at batch 32). Two instances of one
        # ORT thread each serve 32% more than one instance of two threads (512 vs 388 rps, embed
        # ensemble, perf_analyzer concurrency 32): batches overlap instead of syncing threads.
        # Smoothing + per-token FFN activation scales (the default) pass the default INT8 gate:
        # recall@10 0.96, mean cosine 0.999 on the held-out corpus (docs/converters.md).
        ExportSpec(source="minilm", name=ENCODER, task="feature-extraction", precisions=both,
                   int8_mode="dynamic", max_batch_size=64, instances=2, intra_op_threads=1,
                   # Overload: a request queued 30 ms is refused, and past 64 queued at once.
                   # A deadline rather than a short queue (measured on AMD Zen 5, README
                   # "Goodput under overload"): callers that do not back off wait instead of
                   # spinning on refusals (64 callers: goodput 80 % of the peak against 43 % with
                   # a queue of 8), bursts of cache misses wait instead of being shed (uncached
                   # find-max 802 rps against 424), and any arrival wakes Triton 2.51's batcher
                   # from its lost-wakeup 500 ms sleep, which a full queue cannot. 30 ms keeps
                   # the spike's accepted p99 under 100 ms (73 ms; a 50 ms deadline gave 130).
                   preferred_batch_sizes=(4,), max_queue_size=64, queue_timeout_ms=30,
                   repository=repository, keep=KEEP_VERSIONS),
        # Digits CNN: tiny compute, so one ORT thread; static INT8 calibrated on the calib split.
        # Its graph is the whole classify_digit pipeline (scaling and softmax folded in), so the
        # ensemble calls it once per request. No queue policy: with one, Triton 2.51's batcher
        # sleeps 500 ms between single requests (perf_analyzer, classify_digit, concurrency 16,
        # AMD Zen 5: 206 rps, p99 509 ms, against 4,677 rps, p99 26 ms unbounded), and at
        # ~300 us of server CPU a request a queue bound would shed only past p99 100 ms anyway.
        ExportSpec(source="converters.sources.digits:factory", name=CLASSIFIER,
                   task="image-classification", precisions=both, int8_mode="static",
                   max_batch_size=256, instances=1, intra_op_threads=1,
                   repository=repository, keep=KEEP_VERSIONS),
    ]


def _up_to_date(spec: ExportSpec) -> bool:
    for precision in spec.precisions:
        folder = spec.repository / spec.model_name(precision)
        versions = existing_versions(folder)
        if not versions:
            return False
        meta_file = folder / str(versions[-1]) / "metadata.json"
        if not meta_file.is_file():
            return False
        version = folder / str(versions[-1])
        for served, current in ((version / "model.py", RUNNER_FILE), (version / "drift.py", DRIFT_FILE),
                                (version / "text.py", TEXT_FILE)):
            if not served.is_file() or served.read_bytes() != current.read_bytes():
                return False  # an older python-ort runner, or without drift monitoring or text.py
        meta = json.loads(meta_file.read_text())
        if meta.get("spec_fingerprint") != spec.fingerprint():
            return False
    return True


def export_demo_models(repository: Path, *, force: bool = False,
                       progress: Callable[[str], None] = print) -> dict[str, str]:
    """Export what is missing or stale; returns ``{model name: what happened}``."""
    done: dict[str, str] = {}
    for spec in demo_specs(repository):
        if not force and _up_to_date(spec):
            for name, what in apply_serving(spec).items():
                done[name] = ("up to date (kept)" if what == "unchanged"
                              else "same artifact, serving settings changed: config.pbtxt rewritten, "
                                   "no new version")
            continue
        report = export(spec, progress=progress)
        for model in report.models:
            done[model.name] = f"exported {model.precision} as version {model.version}"
    return done
