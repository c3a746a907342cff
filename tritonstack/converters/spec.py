"""What to export: :class:`ExportSpec` (validated at the edge) and the gate :class:`Thresholds`."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
from pathlib import Path

from tritonstack.converters.errors import InvalidSpec

__all__ = ["ExportSpec", "Int8Mode", "Precision", "Target", "Thresholds", "TASKS"]

#: Tasks the exporters understand (HF folders: the first two; torch factories: any).
TASKS = ("feature-extraction", "text-classification", "image-classification")
#: Activation scales of dynamic INT8 for HF transformer encoders (see ExportSpec).
INT8_ACTIVATIONS = ("per-token", "per-tensor")
#: The output of an exported feature-extraction model: the pooled, L2-normalized sentence embedding.
EMBEDDING_OUTPUT = "embedding"
#: Model names every Triton backend loads (the Python backend's stub fails on non-ASCII names).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
#: ExportSpec fields that only go into config.pbtxt (the serving spec), never into the artifact.
SERVING_FIELDS = ("max_batch_size", "instances", "intra_op_threads", "preferred_batch_sizes",
                  "max_queue_delay_us", "max_queue_size", "queue_timeout_ms", "admit_rows",
                  "admit_ms")
#: How INT8 weights are stored (see ExportSpec and converters.int8_kernels).
INT8_WEIGHTS = ("u8", "s7", "s8")


#: The largest version Triton parses (``std::stoll``: a larger folder name aborts tritonserver).
MAX_VERSION = 2**63 - 1

class Precision(str, enum.Enum):  # StrEnum is 3.11+
    """Numeric precision of one exported model."""

    __str__ = str.__str__  # the value, as StrEnum prints

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class Int8Mode(str, enum.Enum):  # StrEnum is 3.11+
    """``dynamic``: weights INT8, activations quantized at run time (fast CPU form).
    ``static``: calibrated QDQ graph (the TensorRT form; slow on CPU ORT)."""

    __str__ = str.__str__  # the value, as StrEnum prints

    DYNAMIC = "dynamic"
    STATIC = "static"


class Target(str, enum.Enum):  # StrEnum is 3.11+
    """How Triton serves the model."""

    __str__ = str.__str__  # the value, as StrEnum prints

    PYTHON_ORT = "python-ort"  # Python backend + ONNX Runtime (the pip-installed Triton)
    ONNXRUNTIME = "onnxruntime"  # native ONNX Runtime backend (NGC image)
    TENSORRT = "tensorrt"  # native TensorRT backend, model.plan (GPU)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Stated bounds every export is held to; loosening any is an explicit user choice.

    Args:
        parity_atol: ONNX FP32 vs source, absolute part of ``|a-b| <= atol + rtol*|b|``.
        parity_rtol: ...and the relative part.
        min_mean_cosine: INT8 vs FP32 embeddings, mean cosine similarity.
        min_min_cosine: ...worst single sentence.
        min_recall_at_10: ...overlap of the 10 nearest neighbours.
        max_accuracy_drop_points: INT8 vs FP32 classification accuracy drop, percentage points.
        min_score_spearman: INT8 vs FP32 scores of a single-logit head (a cross-encoder reranker),
            Spearman rank correlation: what a reranker is used for is the order it gives.
    """

    parity_atol: float = 1e-4
    parity_rtol: float = 1e-3
    min_mean_cosine: float = 0.99
    min_min_cosine: float = 0.90
    min_recall_at_10: float = 0.95
    max_accuracy_drop_points: float = 0.5
    min_score_spearman: float = 0.98

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or value < 0:
                raise InvalidSpec(f"threshold {f.name} must be a number >= 0, got {value!r}")
        for name in ("min_mean_cosine", "min_min_cosine", "min_recall_at_10", "min_score_spearman"):
            if getattr(self, name) > 1:
                raise InvalidSpec(f"threshold {name} must be <= 1, got {getattr(self, name)}")

    def lowered(self) -> list[str]:
        """The thresholds looser than the defaults, as ``name: default -> value`` lines."""
        default = Thresholds()
        looser = []
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(default, f.name)
            worse = mine < theirs if f.name.startswith("min_") else mine > theirs
            if worse:
                looser.append(f"{f.name}: {theirs} -> {mine}")
        return looser


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """One export request; everything the pipeline needs, checked before any work starts.

    Args:
        source: HF folder, ``minilm``, or ``package.module:factory``.
        name: Triton model name. With several precisions the FIRST gets ``name``, the others
            ``name_<precision>`` (e.g. ``("int8", "fp32")`` -> ``minilm``, ``minilm_fp32``).
        task: ``feature-extraction`` (HF default: pooled, L2-normalized ``embedding``),
            ``text-classification``, ``image-classification``; ``None`` = the source's own.
        precisions: Precisions to write, in order (see ``name``).
        int8_mode: ``dynamic`` or ``static`` (``tensorrt`` target: always static QDQ).
        int8_activations: Dynamic INT8 of HF transformer encoders: ``per-token`` (default)
            smooths the LayerNorm-fed MatMuls on the calibration sentences and gives the
            feed-forward MatMuls one activation scale per token; ``per-tensor`` is plain ORT
            ``quantize_dynamic`` (faster, less accurate: MiniLM recall@10 0.90 vs 0.96).
        int8_weights: How INT8 weights are stored (:mod:`converters.int8_kernels`). ``s8``: full
            int8, the fastest form on VNNI/AMX CPUs; the u8 x s8 kernels of CPUs without VNNI
            saturate on it, so it is served exactly only where ``session.x64quantprecision`` can
            be set: the python-ort runner sets it where its probe finds such a kernel, and
            TensorRT runs on GPUs. ``u8`` (dynamic only): uint8 weights, ORT's u8 x u8 kernels,
            exact on every x86 CPU by construction. ``s7``: int8 weights within [-64, 64],
            which no kernel can saturate (costs accuracy: MiniLM recall@10 0.945). ``None`` =
            ``s8`` for python-ort and tensorrt; for the native onnxruntime backend (which cannot
            set the option) ``u8`` when dynamic, ``s7`` when static.
        calibration: Calibration data: ``corpus`` (text sentences), ``source`` (the torch
            factory's ``calibration_data``), ``random`` (random examples; weak, for tests).
            ``None`` = ``corpus`` for HF sources, ``source`` for factories.
        max_batch_size: Triton ``max_batch_size``.
        instances: Triton ``instance_group`` count.
        preferred_batch_sizes: Batch sizes Triton's dynamic batcher aims for (largest first when
            requests queue up); empty = ``max_batch_size // 2`` and ``max_batch_size``. Under
            overload batches grow to the largest, so it bounds the time of one execution.
        max_queue_delay_us: How long Triton's batcher may hold a request to fill a preferred
            batch (default 1000). 0 sends what has queued as soon as an instance can take it:
            at light load nothing waits, under load batches still grow from what queued during
            the previous execution. Forced to 0 with a queue policy.
        max_queue_size: Triton sheds requests beyond this many queued (0 = unbounded).
        queue_timeout_ms: Triton sheds requests queued longer than this (0 = no limit); set it
            to the latency budget left after compute so that accepted requests meet the SLO.
            Either policy turns off Triton 2.51's batch prefetching (see ``admit_rows``).
        admit_rows: python-ort only: the most rows one execution computes (0 = all). Under
            overload the batch's oldest requests past it are refused unserved (UNAVAILABLE,
            like a queue policy's refusal) and the newest are served. Sheds load without a
            queue policy, so Triton keeps prefetching batches and never stalls (docs/benchmarks.md,
            "Goodput under overload").
        admit_ms: python-ort only: a bound on a served request's time in the model, its queue
            wait plus its execution (0 = none). Each instance turns it into rows by its own
            measured cost of a row (``serving.admission``), so it holds on every CPU. With
            ``admit_rows``, the smaller limit wins.
        repository: Model repository root.
        version: Version number to write; ``None`` = next free.
        keep: After writing, delete all but the ``keep`` newest versions of each model written
            (``None`` = keep every version).
        target: ``python-ort``, ``onnxruntime`` or ``tensorrt``.
        opset: ONNX opset.
        thresholds: Parity and accuracy bounds.
        optimize: Serve the graph with ONNX Runtime's offline transformer fusions (BERT-like HF
            models). Off by default: measured slower at batch 32 on CPU ORT 1.31 (MiniLM 625 vs
            683 rows/s; ORT's own load-time fusions do better), faster only at batch 1 (412 vs 389).
        intra_op_threads: ORT intra-op threads in the served config (0 = ORT default).
        work_dir: Where intermediate files and the run state live (resumable); ``None`` =
            ``$XDG_CACHE_HOME/triton-serving-stack/converters/NAME-FINGERPRINT`` (outside the
            repository: Triton treats every top-level folder there, hidden or not, as a model).
        fresh: Ignore a previous run state in ``work_dir``.
        calibration_size: Calibration rows (``None``: source default, text 256).
        evaluation_size: Held-out rows for the gate (``None``: all).
    """

    source: str
    name: str
    task: str | None = None
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    int8_mode: Int8Mode = Int8Mode.DYNAMIC
    int8_activations: str = "per-token"
    int8_weights: str | None = None
    calibration: str | None = None
    max_batch_size: int = 32
    instances: int = 1
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 1000
    max_queue_size: int = 0
    queue_timeout_ms: float = 0.0
    admit_rows: int = 0
    admit_ms: float = 0.0
    repository: Path = Path("model_repository")
    version: int | None = None
    keep: int | None = None
    target: Target = Target.PYTHON_ORT
    opset: int = 17
    thresholds: Thresholds = dataclasses.field(default_factory=Thresholds)
    optimize: bool = False
    intra_op_threads: int = 0
    work_dir: Path | None = None
    fresh: bool = False
    calibration_size: int | None = None
    evaluation_size: int | None = None

    def __post_init__(self) -> None:
        try:
            precisions = tuple(Precision(p) for p in (self.precisions or ()))
            object.__setattr__(self, "int8_mode", Int8Mode(self.int8_mode))
            object.__setattr__(self, "target", Target(self.target))
        except ValueError as exc:
            raise InvalidSpec(f"{exc}; see --help for the choices") from exc
        if not precisions:
            raise InvalidSpec("give at least one --precision (fp32, fp16, int8)")
        if len(set(precisions)) != len(precisions):
            raise InvalidSpec(f"--precision repeated: {[str(p) for p in precisions]}")
        object.__setattr__(self, "precisions", precisions)
        object.__setattr__(self, "repository", Path(self.repository))
        if self.work_dir is not None:
            object.__setattr__(self, "work_dir", Path(self.work_dir))
        if not MODEL_NAME.fullmatch(self.name or ""):
            raise InvalidSpec(f"--name {self.name!r}: a Triton model name is 1-100 ASCII letters, digits, "
                              "'_' or '-', starting with a letter or digit (e.g. minilm); the Python "
                              "backend cannot load other names")
        if self.task is not None and self.task not in TASKS:
            raise InvalidSpec(f"--task {self.task!r} is not supported; choose one of {', '.join(TASKS)}")
        if self.int8_activations not in INT8_ACTIVATIONS:
            raise InvalidSpec(f"--int8-activations {self.int8_activations!r}: "
                              f"choose {' or '.join(INT8_ACTIVATIONS)}")
        if self.int8_weights not in (None, *INT8_WEIGHTS):
            raise InvalidSpec(f"--int8-weights {self.int8_weights!r}: choose {', '.join(INT8_WEIGHTS)}")
        if self.effective_int8_weights == "u8" and self.effective_int8_mode is Int8Mode.STATIC:
            raise InvalidSpec("--int8-weights u8 is for dynamic INT8; static QDQ (and TensorRT) needs "
                              "signed weights: use s7 (portable, the default) or s8")
        if self.effective_int8_weights == "s8" and self.target is Target.ONNXRUNTIME:
            raise InvalidSpec("--int8-weights s8 saturates on CPUs without VNNI and Triton's native "
                              "onnxruntime backend cannot set the session option that prevents it; "
                              "use u8 or s7 with --target onnxruntime")
        if self.calibration not in (None, "corpus", "source", "random"):
            raise InvalidSpec(f"--calibration {self.calibration!r}: choose corpus, source or random")
        if not 1 <= self.max_batch_size <= 4096:
            raise InvalidSpec(f"--max-batch-size must be 1..4096, got {self.max_batch_size}")
        if not 1 <= self.instances <= 64:
            raise InvalidSpec(f"--instances must be 1..64, got {self.instances}")
        object.__setattr__(self, "preferred_batch_sizes", tuple(int(b) for b in self.preferred_batch_sizes))
        if any(not 1 <= b <= self.max_batch_size for b in self.preferred_batch_sizes):
            raise InvalidSpec(f"--preferred-batch-size must be 1..--max-batch-size ({self.max_batch_size}), "
                              f"got {list(self.preferred_batch_sizes)}")
        if not 0 <= self.max_queue_delay_us <= 10_000_000:
            raise InvalidSpec(f"--max-queue-delay-us must be 0..10000000, got {self.max_queue_delay_us}")
        if not 0 <= self.max_queue_size <= 1_000_000:
            raise InvalidSpec(f"--max-queue-size must be 0..1000000 (0 = unbounded), "
                              f"got {self.max_queue_size}")
        if not 0 <= self.queue_timeout_ms <= 3_600_000:
            raise InvalidSpec(f"--queue-timeout-ms must be 0..3600000 (0 = no limit), "
                              f"got {self.queue_timeout_ms}")
        if not 0 <= self.admit_rows <= self.max_batch_size:
            raise InvalidSpec(f"--admit-rows must be 0..--max-batch-size ({self.max_batch_size}; "
                              f"0 = all), got {self.admit_rows}")
        largest = max(self.preferred_batch_sizes, default=self.max_batch_size)
        if self.admit_rows and largest <= self.admit_rows:
            raise InvalidSpec(f"--admit-rows {self.admit_rows} would never shed: Triton's batches stop at "
                              f"the largest --preferred-batch-size or --max-batch-size ({largest}); "
                              "set a larger one, or leave the preferred sizes at their default")
        if not (isinstance(self.admit_ms, int | float) and 0 <= self.admit_ms <= 60_000):
            raise InvalidSpec(f"--admit-ms must be 0..60000 milliseconds (0 = no budget), got {self.admit_ms}")
        for flag, value in (("--admit-ms", self.admit_ms), ("--admit-rows", self.admit_rows)):
            if value and self.target is not Target.PYTHON_ORT:
                raise InvalidSpec(f"{flag} is read by the python-ort runner; --target {self.target} "
                                  "would ignore it: use --max-queue-size / --queue-timeout-ms there")
        if self.keep is not None and not 1 <= self.keep <= 1000:
            raise InvalidSpec(f"--keep must be 1..1000 versions, got {self.keep}")
        if self.version is not None and not 1 <= self.version <= MAX_VERSION:
            raise InvalidSpec(f"--model-version must be 1..{MAX_VERSION:,} (Triton reads versions as int64), "
                              f"got {self.version}")
        if not 11 <= self.opset <= 21:
            raise InvalidSpec(f"--opset must be 11..21, got {self.opset}")
        if self.intra_op_threads < 0:
            raise InvalidSpec("--intra-op-threads must be >= 0")
        for size_name in ("calibration_size", "evaluation_size"):
            size = getattr(self, size_name)
            if size is not None and size < 10:
                raise InvalidSpec(f"{size_name} must be >= 10 rows, got {size}")
        if self.target is Target.TENSORRT and Precision.FP32 in precisions and len(precisions) == 1:
            pass  # an FP32 plan is legitimate, just rarely what one wants

    def model_name(self, precision: Precision) -> str:
        """The Triton model name for one precision (first precision = ``name``)."""
        return self.name if precision == self.precisions[0] else f"{self.name}_{precision}"

    @property
    def effective_int8_mode(self) -> Int8Mode:
        """TensorRT consumes calibrated QDQ graphs only."""
        return Int8Mode.STATIC if self.target is Target.TENSORRT else self.int8_mode

    @property
    def effective_int8_weights(self) -> str:
        """The weight form unless chosen: exact on every CPU the target can be served on."""
        if self.int8_weights is not None:
            return self.int8_weights
        if self.target is not Target.ONNXRUNTIME:
            return "s8"
        return "s7" if self.effective_int8_mode is Int8Mode.STATIC else "u8"

    def to_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out["precisions"] = [str(p) for p in self.precisions]
        for key in ("int8_mode", "target", "repository", "work_dir"):
            out[key] = None if out[key] is None else str(out[key])
        out["int8_weights"] = self.effective_int8_weights
        return out

    def fingerprint(self) -> str:
        """Hash of everything that changes the exported files (not where they go, nor the bars
        they are checked against: checks always rerun)."""
        relevant = {k: v for k, v in self.to_dict().items()
                    if k not in ("repository", "version", "keep", "work_dir", "fresh", *SERVING_FIELDS,
                                 "thresholds", "evaluation_size")}
        return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]
