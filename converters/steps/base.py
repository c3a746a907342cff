"""What every step returns, and the small ONNX helpers the steps share."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["OnnxModel", "Status", "StepResult", "ort_session", "run_batches"]


class Status(enum.StrEnum):
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

    from converters.runtime.ort_runner import EXACT_INT8_OPTION

    options = ort.SessionOptions()
    if exact_int8:
        for key, value in EXACT_INT8_OPTION.items():
            options.add_session_config_entry(key, value)
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_batches(session, feeds: Sequence[Mapping[str, np.ndarray]], output: str) -> np.ndarray:
    """Run ``session`` on each feed (only the inputs it has) and stack one output."""
    names = {i.name for i in session.get_inputs()}
    parts = [session.run([output], {k: v for k, v in feed.items() if k in names})[0] for feed in feeds]
    return np.concatenate(parts, axis=0)
