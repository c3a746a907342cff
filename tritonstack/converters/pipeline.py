"""Run named steps, time them, and write the run state after each one (resumable).

The state lives in ``WORK_DIR/state.json``: the spec fingerprint and, per step, its
:class:`~converters.steps.base.StepResult`. A later run with the same fingerprint skips the
steps recorded ``ok`` whose output files still exist ("done in a previous run"), so a failed
export resumes where it stopped; ``fresh=True`` starts over.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from tritonstack.converters.errors import (
    ConverterError,
    EnvironmentProblem,
    InvalidSpec,
    NoSpace,
    StepFailed,
    is_no_space,
    no_space_error,
)
from tritonstack.converters.steps.base import ExportContext, Status, Step, StepResult

T = TypeVar("T")
Progress = Callable[[str], None]


class RunState:
    """``state.json`` of one export's work folder."""

    def __init__(self, work_dir: Path, fingerprint: str, fresh: bool = False):
        self.work_dir = work_dir
        self.path = work_dir / "state.json"
        self.fingerprint = fingerprint
        if work_dir.exists() and not work_dir.is_dir():
            raise InvalidSpec(f"--work-dir {work_dir} is a file; pass a folder (it is created if missing)")
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot create the work folder {work_dir} ({exc.strerror or exc}); "
                                     "pass --work-dir DIR somewhere writable") from None
        previous: dict = {}
        if self.path.exists() and not fresh:
            try:
                previous = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                previous = {}
        self.steps: dict[str, dict] = (previous.get("steps", {})
                                       if previous.get("fingerprint") == fingerprint else {})

    def record(self, key: str, result: StepResult) -> None:
        self.steps[key] = result.to_dict()
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "steps": self.steps}, indent=2,
                                      default=str))
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if is_no_space(exc):
                raise no_space_in_work(exc, f"saving the run state after step {key}", self.work_dir) from exc
            raise

    def reusable(self, key: str) -> dict | None:
        """The recorded output of an ``ok`` step whose files all still exist."""
        entry = self.steps.get(key)
        if not entry or entry.get("status") != Status.OK:
            return None
        output = entry.get("output") or {}
        paths = [v for k, v in _flatten(output) if k == "path" or k.endswith("_path")]
        return output if all(Path(p).exists() for p in paths) else None


def _flatten(data: object, key: str = "") -> list[tuple[str, object]]:
    if isinstance(data, Mapping):
        return [kv for k, v in data.items() for kv in _flatten(v, str(k))]
    return [(key, data)]


def no_space_in_work(exc: BaseException, doing: str, work_dir: Path) -> NoSpace:
    """A step that ran out of room (its files go to the work folder, or a library's to a temp folder)."""
    cause = no_space_error(exc)
    what = cause.strerror if cause is not None and cause.strerror else "no space left"
    where = f" writing {cause.filename}" if cause is not None and cause.filename else ""
    return NoSpace(f"{what} while {doing}{where}; free space on that disk, or move the work folder "
                   f"({work_dir}) with --work-dir DIR to a disk with room, then rerun (the steps done are reused)")


class Runner:
    """Runs steps: skip / reuse / run, times each one, records it, prints one line per step."""

    def __init__(self, state: RunState, progress: Progress | None = None):
        self.state = state
        self.progress = progress or (lambda line: None)
        self.results: list[StepResult] = []

    def _emit(self, key: str, result: StepResult) -> None:
        self.state.record(key, result)
        self.results.append(result)
        detail = f"  {result.detail}" if result.detail else ""
        self.progress(f"  {key:<24} {result.status:<8} {result.seconds:6.1f}s{detail}")

    def skip(self, key: str, reason: str) -> None:
        """Record a step that does not apply here, with the reason."""
        self._emit(key, StepResult(key, Status.SKIPPED, 0.0, reason))

    def execute(self, step: Step, ctx: ExportContext) -> None:
        """Run one pipeline step on ``ctx`` (or record why it does not apply)."""
        reason = step.skipped_because(ctx)
        if reason is not None:
            self.skip(step.name, reason)
            return
        value = self.run(step.name, lambda: step.run(ctx), to_dict=step.to_dict, from_dict=step.from_dict,
                         describe=step.describe, check=step.check)
        step.keep(ctx, value)

    def run(self, key: str, fn: Callable[[], T], *, to_dict: Callable[[T], dict],
            from_dict: Callable[[dict], T], describe: Callable[[T], str] = lambda v: "",
            check: bool = False) -> T:
        """Run ``fn`` as step ``key`` (or reuse its recorded result; checks always run)."""
        reused = None if check else self.state.reusable(key)
        if reused is not None:
            value = from_dict(reused)
            self._emit(key, StepResult(key, Status.SKIPPED, 0.0, "done in a previous run", reused))
            return value
        start = time.monotonic()
        try:
            value = fn()
        except ConverterError as exc:
            self._emit(key, StepResult(key, Status.FAILED, time.monotonic() - start,
                                       str(exc).splitlines()[0]))
            raise
        except Exception as exc:
            if is_no_space(exc):
                error = no_space_in_work(exc, f"running step {key}", self.state.work_dir)
                with contextlib.suppress(NoSpace):
                    self._emit(key, StepResult(key, Status.FAILED, time.monotonic() - start, str(error)))
                raise error from exc
            message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            self._emit(key, StepResult(key, Status.FAILED, time.monotonic() - start, message))
            raise StepFailed(f"step {key} failed: {message} (rerun with --verbose for the traceback; "
                             f"run state in {self.state.path})") from exc
        self._emit(key, StepResult(key, Status.OK, time.monotonic() - start, describe(value),
                                   to_dict(value)))
        return value
