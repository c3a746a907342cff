"""``export(ExportSpec) -> ExportReport``: the one function the CLI (and ensembles.build) call.

The pipeline, in order (each a named step in :mod:`converters.steps`; the run state is written
after each one under the work folder, so a failed export resumes):

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
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from converters import feeds as feeds_mod
from converters import int8_kernels
from converters.errors import CheckFailed, GpuUnavailable, InvalidSpec, UnsupportedModel
from converters.pipeline import Progress, Runner, RunState
from converters.repository import ensure_writable, prune_versions, write_version
from converters.runtime.ort_runner import cpu_description, int8_kernel
from converters.sources.hf import HFSource
from converters.sources.resolve import TorchSource, resolve_source, source_fingerprint
from converters.spec import ExportSpec, Int8Mode, Precision, Target, Thresholds
from converters.steps import (
    accuracy,
    golden,
    hf2onnx,
    onnx2fp16,
    onnx2int8,
    onnx2trt,
    optimize,
    parity,
    smooth,
    torch2onnx,
)
from converters.steps.base import OnnxModel, StepResult
from converters.triton_config import config_for_target, io_from_onnx

__all__ = ["ExportReport", "ExportSpec", "Thresholds", "WrittenModel", "apply_serving", "export"]

# Bump when a step changes what it writes: a run state of another version is not reused.
PIPELINE_VERSION = 4
RUNNER_FILE = Path(__file__).parent / "runtime" / "ort_runner.py"
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
    """Export, check and write one source into the model repository.

    Raises:
        UsageError: bad source/options (exit 2). EnvironmentProblem: no GPU for TensorRT,
        repository not writable (exit 3). CheckFailed: parity or the INT8 gate failed; nothing
        was written (exit 1). StepFailed: a step crashed (exit 1).
    """
    start = time.monotonic()
    say = progress or (lambda line: None)
    source = resolve_source(spec.source, spec.task)
    _validate(spec, source)
    repo = ensure_writable(spec.repository)
    fingerprint = source_fingerprint(source)
    work = spec.work_dir or _default_work_dir(spec, fingerprint["sha256"])
    run_id = f"{PIPELINE_VERSION}-{spec.fingerprint()}-{fingerprint['sha256']}"
    state = RunState(work, run_id, fresh=spec.fresh)
    runner = Runner(state, progress)
    say(
        f"export {spec.source} -> {repo}/{spec.name} ({', '.join(spec.precisions)}, target {spec.target}); "
        f"work folder {work}"
    )
    onnx_io = dict(
        to_dict=OnnxModel.to_dict,
        from_dict=OnnxModel.from_dict,
        describe=lambda m: f"{m.path.name}: {', '.join(m.input_names)} -> {', '.join(m.output_names)}",
    )
    plain = dict(to_dict=lambda d: d, from_dict=lambda d: d, check=True)

    # 1. source -> FP32 ONNX
    if isinstance(source, HFSource):
        task = source.task
        raw = runner.run(
            "hf2onnx",
            lambda: hf2onnx.run(
                hf2onnx.Hf2OnnxInput(source.folder, task, spec.opset, work / "fp32" / "model.onnx")
            ),
            **onnx_io,
        )
        runner.skip("torch2onnx", "source is a Hugging Face folder (hf2onnx ran)")
        reference = _hf_reference(source)
        vocab = int(_hf_config(source).get("vocab_size", 1000))
        parity_cases = feeds_mod.hf_parity_cases(vocab)
        kind = "embedding" if task == "feature-extraction" else "classification"
    else:
        task = source.spec.task
        runner.skip("hf2onnx", "source is a torch factory (torch2onnx runs)")
        raw = runner.run(
            "torch2onnx",
            lambda: torch2onnx.run(
                torch2onnx.Torch2OnnxInput(
                    source.module, source.spec, spec.opset, work / "fp32" / "model.onnx"
                )
            ),
            **onnx_io,
        )
        reference = _torch_reference(source)
        parity_cases = feeds_mod.torch_parity_cases(source.spec)
        kind = "classification" if task.endswith("classification") else "embedding"

    # 2. fusions for the ONNX Runtime targets
    served_fp32 = raw
    fusable = isinstance(source, HFSource) and source.fusable_as
    if spec.target is Target.TENSORRT:
        runner.skip("optimize", "TensorRT fuses itself and does not know ORT contrib ops")
    elif not spec.optimize:
        runner.skip("optimize", "not asked (--optimize); ORT fuses at load")
    elif not fusable:
        runner.skip("optimize", "no ORT transformer fusions for this architecture")
    else:
        opt = runner.run(
            "optimize",
            lambda: optimize.run(optimize.OptimizeInput(raw, str(fusable), work / "fp32" / "model.opt.onnx")),
            to_dict=lambda r: {"model": r.model.to_dict(), "fused": r.fused},
            from_dict=lambda d: optimize.OptimizeResult(OnnxModel.from_dict(d["model"]), d["fused"]),
            describe=lambda r: "fused " + ", ".join(f"{k} x{v}" for k, v in r.fused.items()),
        )
        served_fp32 = opt.model

    # 3. parity of the served FP32 graph
    t = spec.thresholds
    parity_result = runner.run(
        "parity",
        lambda: parity.run(
            parity.ParityInput(served_fp32.path, reference, parity_cases, t.parity_atol, t.parity_rtol)
        ),
        **plain,
        describe=lambda r: (
            "max |diff| " + ", ".join(f"{row['output']} {row['max_abs']:.2g}" for row in r["table"])
        ),
    )
    served: dict[Precision, OnnxModel] = {Precision.FP32: served_fp32}

    # 4. FP16 (ONNX targets)
    if Precision.FP16 in spec.precisions and spec.target is not Target.TENSORRT:
        fp16 = runner.run(
            "onnx2fp16",
            lambda: onnx2fp16.run(onnx2fp16.Fp16Input(served_fp32, work / "fp16" / "model.onnx")),
            **onnx_io,
        )
        runner.run(
            "parity-fp16",
            lambda: parity.run(
                parity.ParityInput(
                    fp16.path, reference, parity_cases, 1e-2, 1e-2, label="FP16 ONNX vs source"
                )
            ),
            **plain,
        )
        served[Precision.FP16] = fp16
    else:
        runner.skip(
            "onnx2fp16",
            "fp16 not asked"
            if Precision.FP16 not in spec.precisions
            else "the TensorRT plan is built FP16 from the FP32 graph",
        )

    # 5. INT8 + the gate
    accuracy_result = None
    if Precision.INT8 in spec.precisions:
        mode = spec.effective_int8_mode
        calibration_mode = spec.calibration or ("corpus" if isinstance(source, HFSource) else "source")
        per_token = (
            mode is Int8Mode.DYNAMIC and isinstance(source, HFSource) and spec.int8_activations == "per-token"
        )
        if mode is Int8Mode.STATIC:
            if isinstance(source, HFSource):
                calib: Callable = lambda: feeds_mod.text_calibration(source, spec.calibration_size)  # noqa: E731
            else:
                calib = lambda: feeds_mod.torch_calibration(  # noqa: E731
                    source.spec, calibration_mode, spec.calibration_size
                )
            runner.skip("smooth", "static INT8 calibrates its own activation ranges")
            int8_in = onnx2int8.Int8Input(raw, "static", work / "int8-static" / "model.onnx", calib,
                                          weights=spec.effective_int8_weights)
        else:
            # From the UNFUSED graph: measured faster (ORT fuses the integer graph itself at load,
            # 1211 vs 955 rows/s, MiniLM b32) and as accurate as quantizing the fused graph.
            # HF transformers (per-token, default): smoothing + per-token FFN activation scales
            # (MiniLM recall@10 0.96 vs 0.90 per tensor; see converters/steps/per_token.py).
            to_quantize = raw
            if per_token:
                smoothed = runner.run(
                    "smooth",
                    lambda: smooth.run(
                        smooth.SmoothInput(
                            raw,
                            work / "int8-dynamic" / "smoothed.onnx",
                            lambda: feeds_mod.text_calibration(source, spec.calibration_size),
                        )
                    ),
                    to_dict=smooth.SmoothResult.to_dict,
                    from_dict=smooth.SmoothResult.from_dict,
                    describe=lambda r: f"{r.smoothed} activations, {r.matmuls} MatMuls",
                )
                to_quantize = smoothed.model
            else:
                runner.skip("smooth", "--int8-activations per-tensor" if isinstance(source, HFSource)
                            else "not a HF transformer")
            int8_in = onnx2int8.Int8Input(
                to_quantize, "dynamic", work / "int8-dynamic" / "model.onnx", per_token=per_token,
                weights=spec.effective_int8_weights,
            )
        int8 = runner.run("onnx2int8", lambda: onnx2int8.run(int8_in), **onnx_io)
        if isinstance(source, HFSource):
            data = lambda: feeds_mod.text_evaluation(source, spec.evaluation_size)  # noqa: E731
        else:
            data = lambda: feeds_mod.torch_evaluation(source.spec, spec.evaluation_size)  # noqa: E731
        accuracy_result = runner.run(
            "accuracy",
            lambda: accuracy.run(accuracy.AccuracyInput(served_fp32, int8, kind, data, t)),
            **plain,
            describe=_describe_accuracy,
        )
        accuracy_result = dict(
            accuracy_result,
            int8_mode=str(mode),
            calibration=(
                calibration_mode if mode is Int8Mode.STATIC
                else "corpus (smoothing)" if per_token else "none (dynamic)"
            ),
            activations="per-token" if per_token else "per-tensor",
        )
        served[Precision.INT8] = int8
    else:
        runner.skip("smooth", "int8 not asked")
        runner.skip("onnx2int8", "int8 not asked")
        runner.skip("accuracy", "no INT8 model to gate")

    # 6. portability of the INT8 graph across x86 integer kernels
    portability: dict[str, object] | None = None
    if Precision.INT8 in spec.precisions:
        portability = runner.run(
            "portability",
            lambda: _portability(served[Precision.INT8].path, spec.target),
            **plain,
            describe=lambda r: r["kernels"]["u8s8-int16 (AVX2 only, AVX-512 without VNNI)"],
        )
    else:
        runner.skip("portability", "no INT8 model")

    # 7. golden inputs and outputs for the load-time self-check
    goldens: dict[str, dict[str, object]] = {}
    if spec.target is Target.TENSORRT:
        runner.skip("golden", "TensorRT plans: Triton's model warmup checks them, not the python-ort runner")
    else:
        if isinstance(source, HFSource):
            golden_feed = lambda: feeds_mod.text_evaluation(source, spec.evaluation_size)[0][0]  # noqa: E731
        elif source.spec.evaluation_data is not None:
            golden_feed = lambda: feeds_mod.torch_evaluation(source.spec, spec.evaluation_size)[0][0]  # noqa: E731
        else:
            golden_feed = lambda: parity_cases[-1]  # noqa: E731
        goldens = runner.run(
            "golden",
            lambda: golden.run(golden.GoldenInput(
                {str(p): served[p] for p in spec.precisions}, served_fp32, kind, golden_feed(), t,
                work / "golden")),
            **plain,
            describe=lambda r: "; ".join(f"{p}: {g['meta']['rows']} rows" for p, g in r.items()),
        )

    # 8. TensorRT plans
    plans: dict[Precision, Path] = {}
    for precision in spec.precisions:
        key = f"onnx2trt-{precision}"
        if spec.target is not Target.TENSORRT:
            runner.skip(key, f"target {spec.target} serves ONNX")
            continue
        onnx_in = served[Precision.INT8] if precision is Precision.INT8 else raw
        shapes = _profile_shapes(onnx_in.path, spec.max_batch_size)
        trt = runner.run(
            key,
            lambda p=precision, o=onnx_in, s=shapes: onnx2trt.run(
                onnx2trt.TrtInput(o.path, str(p), work / f"trt-{p}" / "model.plan", s)
            ),
            to_dict=lambda d: {"plan_path": d["plan"], "reproducer_path": d["reproducer"]},
            from_dict=lambda d: {"plan": d["plan_path"], "reproducer": d["reproducer_path"]},
        )
        plans[precision] = Path(str(trt["plan"]))

    # 9. write one version per precision (every check has passed)
    build_cpu = dict(cpu_description(), int8_kernel=int8_kernel())
    lowered = t.lowered()
    written = []
    for precision in spec.precisions:
        name = spec.model_name(precision)
        onnx_file = served[Precision.INT8] if precision is Precision.INT8 else served.get(precision, raw)
        if spec.target is Target.TENSORRT:
            onnx_file = served[Precision.INT8] if precision is Precision.INT8 else raw
        config = _serving_config(spec, name, onnx_file.path, source)
        if spec.target is Target.TENSORRT:
            plan = plans[precision]
            files: dict[str, Path | str | bytes] = {
                "model.plan": plan,
                "model.plan.trtexec.sh": plan.with_name(plan.name + ".trtexec.sh"),
            }
        else:
            files = {"model.onnx": onnx_file.path}
            if spec.target is Target.PYTHON_ORT:
                files["model.py"] = RUNNER_FILE
            if str(precision) in goldens:
                files["golden.npz"] = Path(str(goldens[str(precision)]["file"]))
        meta = {
            "name": name,
            "precision": str(precision),
            "target": str(spec.target),
            "task": task,
            "source": fingerprint,
            "spec": spec.to_dict(),
            "spec_fingerprint": spec.fingerprint(),
            "tools": _tool_versions(),
            "parity": parity_result,
            "accuracy": accuracy_result if precision is Precision.INT8 else None,
            "portability": portability if precision is Precision.INT8 else None,
            "golden": goldens[str(precision)]["meta"] if str(precision) in goldens else None,
            "build_cpu": build_cpu,
            "thresholds": dataclasses.asdict(t),
            "thresholds_lowered": lowered,
            "steps": [r.to_dict() for r in runner.results],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        step_start = time.monotonic()
        path = write_version(repo, config, files, meta, version=spec.version)
        if spec.keep is not None:
            pruned = prune_versions(path.parent, spec.keep)
            if pruned:
                say(f"  removed old versions of {name}: {', '.join(map(str, pruned))} (--keep {spec.keep})")
        written.append(
            WrittenModel(
                name,
                str(precision),
                int(path.name),
                path,
                [config.to_dict()["input"]][0],
                [config.to_dict()["output"]][0],
            )
        )
        runner.progress(f"  {'write ' + name:<24} {'ok':<8} {time.monotonic() - step_start:6.1f}s  {path}")
    if lowered:
        say("note: thresholds lowered by request: " + "; ".join(lowered))
    return ExportReport(
        spec, written, runner.results, parity_result, accuracy_result, work, time.monotonic() - start, lowered
    )


def _serving_config(spec: ExportSpec, name: str, onnx_path: Path, source: HFSource | TorchSource):
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
        max_queue_size=spec.max_queue_size,
        queue_timeout_us=round(spec.queue_timeout_ms * 1000),
        preferred_batch_sizes=spec.preferred_batch_sizes,
        **(_text_limits(source, onnx_path) if isinstance(source, HFSource) else {}),
    )


def apply_serving(spec: ExportSpec) -> dict[str, str]:
    """Bring the served settings of already exported models to ``spec``: no re-export, no version.

    The serving settings (batching, instances, threads, queue policy) live in ``config.pbtxt``
    only; the artifact (``spec.fingerprint()``) is the version's. A changed setting rewrites
    ``config.pbtxt`` atomically through the same validated config as an export; a server in
    explicit model-control mode picks it up on its next load of the model (``poll`` mode at once).
    Returns ``{model: "unchanged" | "config.pbtxt rewritten"}``.
    """
    from converters.repository import existing_versions, write_config

    if spec.target is Target.TENSORRT:
        raise InvalidSpec("serving changes of TensorRT models are not supported; re-export them")
    source = resolve_source(spec.source, spec.task)
    done = {}
    for precision in spec.precisions:
        name = spec.model_name(precision)
        folder = Path(spec.repository) / name
        versions = existing_versions(folder)
        if not versions:
            raise InvalidSpec(f"model {name!r} has no version in {spec.repository}; export it first")
        config = _serving_config(spec, name, folder / str(versions[-1]) / "model.onnx", source)
        if (folder / "config.pbtxt").read_text() == config.to_pbtxt():
            done[name] = "unchanged"
            continue
        write_config(Path(spec.repository), config)
        done[name] = "config.pbtxt rewritten"
    return done


def _portability(path: Path, target: Target) -> dict[str, object]:
    verdict = int8_kernels.check(path)
    if not verdict.exact_everywhere and target is Target.ONNXRUNTIME:
        raise CheckFailed(
            f"the INT8 graph can saturate on CPUs without VNNI ({len(verdict.saturating)} integer products "
            "take int8 weights beyond +-64) and Triton's native onnxruntime backend cannot set "
            "session.x64quantprecision; export with --int8-weights u8 (or s7)")
    return verdict.to_dict()


def _describe_accuracy(result: dict[str, object]) -> str:
    metrics = result["metrics"]
    assert isinstance(metrics, dict)
    keys = (
        ("mean_cosine", "min_cosine", "recall_at_10", "spearman")
        if result["kind"] == "embedding"
        else ("reference_accuracy", "candidate_accuracy", "accuracy_drop_points", "agreement")
    )
    return ", ".join(f"{k} {float(metrics[k]):.4f}" for k in keys if k in metrics) + f" (n={result['n']})"


def _hf_config(source: HFSource) -> dict:
    import json

    return json.loads((source.folder / "config.json").read_text())


def _text_limits(source: HFSource, path: Path) -> dict[str, dict]:
    """Token id ranges and the longest sequence, from the model's config.json (for the runner)."""
    import onnx

    config = _hf_config(source)
    ranges = {"attention_mask": (0, 2)}
    if config.get("vocab_size"):
        ranges["input_ids"] = (0, int(config["vocab_size"]))
    if config.get("type_vocab_size"):
        ranges["token_type_ids"] = (0, int(config["type_vocab_size"]))
    graph = onnx.load(str(path), load_external_data=False).graph
    inputs = {i.name: i for i in graph.input}
    ranges = {k: v for k, v in ranges.items() if k in inputs}
    limits = {}
    longest = config.get("max_position_embeddings")
    ids = inputs.get("input_ids")
    if longest and ids is not None and len(ids.type.tensor_type.shape.dim) > 1:
        axis = ids.type.tensor_type.shape.dim[1].dim_param
        if axis:
            # RoBERTa-style models offset positions by the padding index: fewer usable positions
            offset = int(config.get("pad_token_id") or 0) + 1 if config.get("model_type") in (
                "roberta", "xlm-roberta", "camembert") else 0
            limits[axis] = int(longest) - offset
    return {"value_ranges": ranges, "axis_limits": limits}


def _hf_reference(source: HFSource) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The HF model in torch, computing what the ONNX graph computes."""
    import torch

    state: dict[str, object] = {}

    def reference(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "model" not in state:
            from transformers import AutoModel, AutoModelForSequenceClassification

            cls = AutoModel if source.task == "feature-extraction" else AutoModelForSequenceClassification
            state["model"] = cls.from_pretrained(str(source.folder)).eval()
        model = state["model"]
        tensors = {k: torch.from_numpy(v) for k, v in feed.items()}
        with torch.no_grad():
            out = model(**tensors)  # type: ignore[operator]
        if source.task != "feature-extraction":
            return {"logits": out.logits.numpy()}
        mask = tensors["attention_mask"].unsqueeze(-1).float()
        pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return {hf2onnx.EMBEDDING: torch.nn.functional.normalize(pooled, dim=-1).numpy()}

    return reference


def _torch_reference(source: TorchSource) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    import torch

    def reference(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(a)) for a in source.spec.order(feed)]
        with torch.no_grad():
            out = source.module(*args)
        outs = out if isinstance(out, tuple | list) else (out,)
        return {name: o.detach().numpy() for name, o in zip(source.spec.output_names, outs, strict=True)}

    return reference


def _profile_shapes(path: Path, max_batch: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """TensorRT optimization profile: batch 1/max/2, variable axes 1/128/512 (opt 128)."""
    inputs, _ = io_from_onnx(path)
    shapes = {}
    for t in inputs:
        lo = (1, *(d if d > 0 else 1 for d in t.dims))
        opt = (max(1, max_batch // 2), *(d if d > 0 else 128 for d in t.dims))
        hi = (max_batch, *(d if d > 0 else 512 for d in t.dims))
        shapes[t.name] = (lo, opt, hi)
    return shapes
