"""What every step returns, and the small ONNX helpers the steps share."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: the steps' layer does not import the layers above it
    from tritonstack.converters.families import Family
    from tritonstack.converters.sources.hf import HFSource
    from tritonstack.converters.sources.resolve import TorchSource
    from tritonstack.converters.spec import ExportSpec

__all__ = ["ExportContext", "OnnxModel", "OnnxStep", "Status", "Step", "StepResult", "ort_session",
           "run_batches"]


class Status(str, enum.Enum):  # StrEnum is 3.11+
    __str__ = str.__str__  # the value, as StrEnum prints
    OK = "ok"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclasses.dataclass
class StepResult:
    """One step's outcome, as recorded in the run state and metadata.json."""

    step: str
    status: Status
    seconds: float = 0.0
    detail: str = ""
    output: dict[str, object] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"step": self.step, "status": str(self.status), "seconds": round(self.seconds, 3),
                "detail": self.detail, "output": self.output}


@dataclasses.dataclass(frozen=True)
class OnnxModel:
    """An ONNX file a step produced."""

    path: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> OnnxModel:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        inits = {i.name for i in model.graph.initializer}
        return cls(Path(path), tuple(i.name for i in model.graph.input if i.name not in inits),
                   tuple(o.name for o in model.graph.output))

    def to_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "input_names": list(self.input_names),
                "output_names": list(self.output_names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> OnnxModel:
        return cls(Path(str(data["path"])), tuple(data["input_names"]), tuple(data["output_names"]))  # type: ignore[arg-type]


def ort_session(path: Path, threads: int = 0, *, exact_int8: bool = False):
    """A CPU ONNX Runtime session (``threads`` intra-op; 0 = ORT default).

    ``exact_int8``: int8 weights run on ORT's exact u8 x u8 kernels on every x86 CPU, so INT8
    figures are the same whatever CPU measures them (what the python-ort runner serves).
    """
    import onnxruntime as ort

    from tritonstack.serving.cpu import EXACT_INT8_OPTION

    options = ort.SessionOptions()
    if exact_int8:
        for key, value in EXACT_INT8_OPTION.items():
            options.add_session_config_entry(key, value)
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_batches(session, feeds: Sequence[Mapping[str, np.ndarray]], output: str,
                label: str = "batches") -> np.ndarray:
    """Run ``session`` on each feed (only the inputs it has) and stack one output."""
    from tritonstack.converters.progress import bar

    names = {i.name for i in session.get_inputs()}
    parts = [session.run([output], {k: v for k, v in feed.items() if k in names})[0]
             for feed in bar(feeds, label)]
    return np.concatenate(parts, axis=0)


@dataclasses.dataclass
class ExportContext:
    """What one export's steps read and produce, typed: each step reads the fields it needs and
    keeps its result in its own field (never a bag of keyword arguments).

    The first block is fixed before any step runs (``converters.families``: what the source's
    family says about references, data and tasks); the second is filled in by the steps.
    """

    spec: ExportSpec
    source: HFSource | TorchSource
    family: Family
    work: Path
    raw: OnnxModel | None = None  # the source's FP32 graph as exported
    served: dict[str, OnnxModel] = dataclasses.field(default_factory=dict)  # precision -> file served
    smoothed: OnnxModel | None = None
    parity: dict[str, object] | None = None
    accuracy: dict[str, object] | None = None
    portability: dict[str, object] | None = None
    goldens: dict[str, dict[str, object]] = dataclasses.field(default_factory=dict)
    profiles: dict[str, str] = dataclasses.field(default_factory=dict)  # precision -> profile.json
    plans: dict[str, Path] = dataclasses.field(default_factory=dict)  # precision -> TensorRT plan


class Step:
    """One named step of the export pipeline: it says whether it applies, runs, keeps its result.

    ``check`` steps (parity, gates) always run again; other steps are reused from the run state
    of an earlier, interrupted run when their files still exist. ``to_dict``/``from_dict`` turn
    the result into the run state's JSON and back; ``describe`` is the one-line summary.
    """

    name = "step"
    check = False

    def skipped_because(self, ctx: ExportContext) -> str | None:
        """Why this step does not apply to this export (None: it runs)."""
        return None

    def run(self, ctx: ExportContext) -> object:
        raise NotImplementedError

    def keep(self, ctx: ExportContext, result: object) -> None:
        """Store ``result`` in the context for the steps after this one."""

    def to_dict(self, result: object) -> dict:
        return result  # type: ignore[return-value]

    def from_dict(self, data: dict) -> object:
        return data

    def describe(self, result: object) -> str:
        return ""


class OnnxStep(Step):
    """A step whose result is an ONNX file."""

    def to_dict(self, result: object) -> dict:
        return result.to_dict()  # type: ignore[attr-defined]

    def from_dict(self, data: dict) -> object:
        return OnnxModel.from_dict(data)

    def describe(self, result: object) -> str:
        assert isinstance(result, OnnxModel)
        return f"{result.path.name}: {', '.join(result.input_names)} -> {', '.join(result.output_names)}"
