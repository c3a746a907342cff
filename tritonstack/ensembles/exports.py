"""The two demo exports, through ``converters.api`` (the same path as ``python -m tritonstack.converters``).

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

from tritonstack.converters import carry
from tritonstack.converters.api import apply_serving, export
from tritonstack.converters.repository import existing_versions
from tritonstack.converters.spec import ExportSpec, Precision
from tritonstack.demo import contract

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
                   # Overload: a served request spends at most 50 ms in MiniLM, its wait in the
                   # queue plus its execution, and one execution never computes more than 32 rows
                   # (serving.admission). The older requests of a bigger batch are refused
                   # before tokenizing, the newest served. A budget in ms, not only a count of
                   # rows, because the time of a row is the CPU's. 32 rows took about 40 ms under
                   # load on an Intel Xeon, which passed embed-goodput at p99 91-95 ms and reached
                   # find-max 994-1,055 rps. On an AMD EPYC Zen 4 they took about 75 ms, and
                   # embed-goodput FAILED at p99 140 ms. 50 ms passed it there at 84-89 ms; 60-70
                   # ms reached 93-100 ms (docs/benchmarks.md "Admission in milliseconds"). 16
                   # rows refused 37 % of 64 callers on the Intel Xeon that it could have served
                   # inside the p99 (845/s goodput and 497 refused/s at p99 81 ms, against
                   # 1,069/s, none refused with 32), and capped find-max at 854 rps by sheds.
                   # Not a queue policy: with any, Triton 2.51 stops prefetching batches and its
                   # batcher sleeps 500 ms whenever every caller is queued as an instance frees,
                   # which refused callers that were far from overload (perf_analyzer at 4
                   # callers). Measured on AMD Zen 5, README "Goodput under overload".
                   # No batcher delay: at light load a request waits for nothing, under load
                   # batches form from what queued during the previous execution (a 2 ms delay
                   # grew perf_analyzer's batches from 3.8 to 6.7 rows but cut find-max to 676
                   # rps by sheds). The preferred sizes stay the default 32 and 64: Triton cuts
                   # batches at the largest, and one of 32 or less would never reach 32 rows.
                   # Past 64 callers that do not back off (128), accepted p99 exceeds 100 ms
                   # (150 ms; 140 ms with 64 as the only preferred size, which also refused 15 %
                   # at 64 callers) on the Intel Xeon: one execution of 32 rows is too long there.
                   max_queue_delay_us=0, admit_rows=32, admit_ms=50,
                   repository=repository, keep=KEEP_VERSIONS),
        # Digits CNN: tiny compute, so one ORT thread; static INT8 calibrated on the calib split.
        # Its graph is the whole classify_digit pipeline (scaling and softmax folded in), so the
        # ensemble calls it once per request. No queue policy: with one, Triton 2.51's batcher
        # sleeps 500 ms between single requests (perf_analyzer, classify_digit, concurrency 16,
        # AMD Zen 5: 206 rps, p99 509 ms, against 4,677 rps, p99 26 ms unbounded), and at
        # ~300 us of server CPU a request a queue bound would shed only past p99 100 ms anyway.
        ExportSpec(source="tritonstack.converters.sources.digits:factory", name=CLASSIFIER,
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
        if not carry.is_current(version, "ort_runner"):
            return False  # it carries older serving code
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
