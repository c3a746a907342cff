"""``export(ExportSpec) -> ExportReport``: the one function the CLI (and ensembles.build) call.

``export`` validates the spec against its source, asks :func:`converters.plan.plan` for the
steps, runs each on one :class:`~converters.steps.base.ExportContext` (a step that does not
apply is recorded with its reason; the run state is written after each step under the work
folder, so a failed export resumes) and writes the versions. What a source's family contributes
(references, data, limits) comes from :mod:`converters.families`. The steps, in order:

1. ``hf2onnx`` or ``torch2onnx``: the source to FP32 ONNX (MiniLM: pooled, normalized embedding);
2. ``optimize``: ORT transformer fusions (BERT-like HF models, ONNX targets);
3. ``parity``: the served FP32 graph vs the source on several shapes (ToleranceExceeded);
4. ``onnx2fp16`` + ``parity-fp16`` when fp16 is asked for an ONNX target;
5. ``smooth`` (dynamic INT8 of HF transformers, ``per-token``: activation smoothing, an FP32
   identity), ``onnx2int8`` (dynamic or static QDQ) + ``accuracy`` (the INT8 gate) when int8 is asked;
6. ``portability``: which x86 integer kernels compute each INT8 graph exactly
   (:mod:`converters.int8_kernels`); refused where the target cannot make every CPU exact;
7. ``golden``: a few held-out inputs and outputs each version carries for its load-time
   self-check (:mod:`converters.steps.golden`);
8. ``onnx2trt-<precision>`` for the tensorrt target (skipped with the reason otherwise);
9. ``write-<name>``: one version per precision, written atomically (only once every check passed).
"""

from __future__ import annotations

import dataclasses
import os
import time
from importlib import metadata as importlib_metadata
from pathlib import Path

from tritonstack.converters import carry
from tritonstack.converters.errors import GpuUnavailable, InvalidSpec, UnsupportedModel
from tritonstack.converters.families import Family, family_for
from tritonstack.converters.pipeline import Progress, Runner, RunState
from tritonstack.converters.plan import plan
from tritonstack.converters.repository import ensure_writable, prune_versions, write_version
from tritonstack.converters.sources.hf import HFSource
from tritonstack.converters.sources.resolve import TorchSource, resolve_source, source_fingerprint
from tritonstack.converters.spec import ExportSpec, Int8Mode, Precision, Target, Thresholds
from tritonstack.converters.steps import onnx2trt
from tritonstack.converters.steps.base import ExportContext, StepResult
from tritonstack.converters.triton_config import config_for_target, io_from_onnx
from tritonstack.serving.cpu import cpu_description, int8_kernel

__all__ = ["ExportReport", "ExportSpec", "Thresholds", "WrittenModel", "apply_serving", "export"]

# Bump when a step changes what it writes: a run state of another version is not reused.
PIPELINE_VERSION = 5
TOOLS = (
    "torch",
    "transformers",
    "optimum",
    "optimum-onnx",
    "onnx",
    "onnxruntime",
    "tritonclient",
    "tensorrt",
)


@dataclasses.dataclass(frozen=True)
class WrittenModel:
    """One model version written to the repository."""

    name: str
    precision: str
    version: int
    path: Path
    inputs: list[dict[str, object]]
    outputs: list[dict[str, object]]


@dataclasses.dataclass
class ExportReport:
    """What :func:`export` did: models written, every step's result, the checks' numbers."""

    spec: ExportSpec
    models: list[WrittenModel]
    steps: list[StepResult]
    parity: dict[str, object]
    accuracy: dict[str, object] | None
    work_dir: Path
    seconds: float
    thresholds_lowered: list[str]

    def to_dict(self) -> dict[str, object]:
        return {
            "models": [dataclasses.asdict(m) | {"path": str(m.path)} for m in self.models],
            "steps": [s.to_dict() for s in self.steps],
            "parity": self.parity,
            "accuracy": self.accuracy,
            "work_dir": str(self.work_dir),
            "seconds": round(self.seconds, 2),
            "thresholds_lowered": self.thresholds_lowered,
        }


def _tool_versions() -> dict[str, str]:
    out = {}
    for tool in TOOLS:
        try:
            out[tool] = importlib_metadata.version(tool)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def _default_work_dir(spec: ExportSpec, source_sha: str) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return (
        cache / "triton-serving-stack" / "converters" / f"{spec.name}-{spec.fingerprint()}-{source_sha[:8]}"
    )


def _validate(spec: ExportSpec, source: HFSource | TorchSource) -> None:
    """Refuse impossible combinations before any expensive work."""
    if spec.target is Target.TENSORRT:
        reason = onnx2trt.gpu_missing()
        if reason:
            raise GpuUnavailable(
                f"--target tensorrt needs a GPU with TensorRT: {reason}; "
                "use --target python-ort (CPU) or run on a GPU machine"
            )
    wants_int8 = Precision.INT8 in spec.precisions
    if isinstance(source, TorchSource):
        if wants_int8 and source.spec.evaluation_data is None:
            raise InvalidSpec(
                f"{source.origin} gives no evaluation_data, so the INT8 accuracy gate cannot "
                "run; add evaluation_data to its TorchInputSpec or drop --precision int8"
            )
        if spec.calibration == "corpus":
            raise InvalidSpec(
                "--calibration corpus is for text (HF) models; torch factories use 'source' or 'random'"
            )
        if (
            wants_int8
            and spec.effective_int8_mode is Int8Mode.STATIC
            and spec.calibration != "random"
            and source.spec.calibration_data is None
        ):
            raise InvalidSpec(
                f"{source.origin} gives no calibration_data for static INT8; add it, or pass "
                "--calibration random (weak) or --int8-mode dynamic"
            )
    elif wants_int8 and not source.has_tokenizer:
        raise UnsupportedModel(f"{source.folder} has no tokenizer; the INT8 gate tokenizes held-out text")


def export(spec: ExportSpec, progress: Progress | None = print) -> ExportReport:
    """Export, check and write one source into the model repository: validate, plan, run, write.

    Raises:
        UsageError: bad source/options (exit 2). EnvironmentProblem: no GPU for TensorRT,
        repository not writable (exit 3). CheckFailed: parity or the INT8 gate failed; nothing
        was written (exit 1). StepFailed: a step crashed (exit 1).
    """
    start = time.monotonic()
    source = resolve_source(spec.source, spec.task)
    _validate(spec, source)
    repo = ensure_writable(spec.repository)
    fingerprint = source_fingerprint(source)
    work = spec.work_dir or _default_work_dir(spec, fingerprint["sha256"])
    run_id = f"{PIPELINE_VERSION}-{spec.fingerprint()}-{fingerprint['sha256']}"
    runner = Runner(RunState(work, run_id, fresh=spec.fresh), progress)
    runner.progress(f"export {spec.source} -> {repo}/{spec.name} ({', '.join(spec.precisions)}, target "
                    f"{spec.target}); work folder {work}")
    ctx = ExportContext(spec, source, family_for(source), work)
    for step in plan(spec):
        runner.execute(step, ctx)
    written = _write_versions(ctx, runner, repo, fingerprint)
    lowered = spec.thresholds.lowered()
    if lowered:
        runner.progress("note: thresholds lowered by request: " + "; ".join(lowered))
    return ExportReport(spec, written, runner.results, ctx.parity or {}, ctx.accuracy, work,
                        time.monotonic() - start, lowered)


def _write_versions(ctx: ExportContext, runner: Runner, repo: Path,
                    fingerprint: dict[str, object]) -> list[WrittenModel]:
    """One version per precision, written atomically, only once every check has passed."""
    spec = ctx.spec
    build_cpu = dict(cpu_description(), int8_kernel=int8_kernel())
    written = []
    for precision in spec.precisions:
        name = spec.model_name(precision)
        assert ctx.raw is not None
        onnx_file = ctx.served.get(str(precision), ctx.raw)
        if spec.target is Target.TENSORRT and precision is not Precision.INT8:
            onnx_file = ctx.raw  # the plan is built from the as-exported FP32 graph
        config = _serving_config(spec, name, onnx_file.path, ctx.family)
        files: dict[str, Path | str | bytes]
        if spec.target is Target.TENSORRT:
            plan_file = ctx.plans[str(precision)]
            files = {"model.plan": plan_file,
                     "model.plan.trtexec.sh": plan_file.with_name(plan_file.name + ".trtexec.sh")}
        else:
            files = {"model.onnx": onnx_file.path}
            if spec.target is Target.PYTHON_ORT:
                files.update(carry.version_files("ort_runner"))
        if str(precision) in ctx.profiles:
            files["profile.json"] = Path(ctx.profiles[str(precision)])
        golden_files = ctx.goldens.get(str(precision))
        if golden_files:
            files["golden.npz"] = Path(str(golden_files["file"]))
        int8 = precision is Precision.INT8
        meta = {
            "name": name, "precision": str(precision), "target": str(spec.target), "task": ctx.family.task,
            "source": fingerprint, "spec": spec.to_dict(), "spec_fingerprint": spec.fingerprint(),
            "tools": _tool_versions(), "parity": ctx.parity,
            "accuracy": ctx.accuracy if int8 else None,
            "portability": ctx.portability if int8 else None,
            "golden": golden_files["meta"] if golden_files else None,
            "build_cpu": build_cpu,
            "serving": carry.record("ort_runner") if spec.target is Target.PYTHON_ORT else None,
            "thresholds": dataclasses.asdict(spec.thresholds),
            "thresholds_lowered": spec.thresholds.lowered(),
            "steps": [r.to_dict() for r in runner.results],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        step_start = time.monotonic()
        path = write_version(repo, config, files, meta, version=spec.version)
        if spec.keep is not None:
            pruned = prune_versions(path.parent, spec.keep)
            if pruned:
                runner.progress(f"  removed old versions of {name}: {', '.join(map(str, pruned))} "
                                f"(--keep {spec.keep})")
        as_dict = config.to_dict()
        written.append(WrittenModel(name, str(precision), int(path.name), path, as_dict["input"],
                                    as_dict["output"]))
        runner.progress(f"  {'write ' + name:<24} {'ok':<8} {time.monotonic() - step_start:6.1f}s  {path}")
    return written


def _serving_config(spec: ExportSpec, name: str, onnx_path: Path, family: Family):
    """``config.pbtxt`` of one model: IO from the ONNX file, serving settings from ``spec``."""
    inputs, outputs = io_from_onnx(onnx_path)
    return config_for_target(
        str(spec.target),
        name,
        inputs,
        outputs,
        max_batch_size=spec.max_batch_size,
        instances=spec.instances,
        intra_op_threads=spec.intra_op_threads,
        max_queue_delay_us=spec.max_queue_delay_us,
        max_queue_size=spec.max_queue_size,
        queue_timeout_us=round(spec.queue_timeout_ms * 1000),
        preferred_batch_sizes=spec.preferred_batch_sizes,
        admit_rows=spec.admit_rows,
        admit_ms=spec.admit_ms,
        **family.limits(onnx_path),
    )


def apply_serving(spec: ExportSpec) -> dict[str, str]:
    """Bring the served settings of already exported models to ``spec``: no re-export, no version.

    The serving settings (batching, instances, threads, queue policy) live in ``config.pbtxt``
    only; the artifact (``spec.fingerprint()``) is the version's. A changed setting rewrites
    ``config.pbtxt`` atomically through the same validated config as an export; a server in
    explicit model-control mode picks it up on its next load of the model (``poll`` mode at once).
    Returns ``{model: "unchanged" | "config.pbtxt rewritten"}``.
    """
    from tritonstack.converters.repository import existing_versions, write_config

    if spec.target is Target.TENSORRT:
        raise InvalidSpec("serving changes of TensorRT models are not supported; re-export them")
    family = family_for(resolve_source(spec.source, spec.task))
    done = {}
    for precision in spec.precisions:
        name = spec.model_name(precision)
        folder = Path(spec.repository) / name
        versions = existing_versions(folder)
        if not versions:
            raise InvalidSpec(f"model {name!r} has no version in {spec.repository}; export it first")
        config = _serving_config(spec, name, folder / str(versions[-1]) / "model.onnx", family)
        if (folder / "config.pbtxt").read_text() == config.to_pbtxt():
            done[name] = "unchanged"
            continue
        write_config(Path(spec.repository), config)
        done[name] = "config.pbtxt rewritten"
    return done


