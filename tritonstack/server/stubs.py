"""The Python-backend stub processes of one tritonserver, and which of them have died.

Each model instance of the Python backend runs in a ``triton_python_backend_stub`` child of
tritonserver, started as ``stub MODEL_DIR/VERSION/model.py SHM ... INSTANCE_NAME RUNTIME``.
When a stub dies (SIGKILL, the OOM killer, a segfault in native code) Triton 2.51 neither reaps
it nor notices: the stub stays a zombie, every request to that instance fails with
``Stub process 'NAME' is not healthy``, and the server and the model still report ready. A
zombie child is therefore the signature of a stub that died under Triton's feet (a stub that
exits because its model was unloaded is reaped by Triton at once).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psutil

STUB_NAME = "triton_python_backend_stub"


@dataclasses.dataclass(frozen=True)
class Stub:
    """One backend stub: ``model`` and ``instance`` are known once it was seen alive; ``stopped``:
    alive but stopped (SIGSTOP, a debugger), answering nothing."""

    pid: int
    dead: bool
    model: str | None = None
    instance: str | None = None
    stopped: bool = False


def parse_cmdline(cmdline: list[str]) -> tuple[str, str] | None:
    """(model, instance) from a stub's command line; None when it is not a stub's."""
    if len(cmdline) < 3 or Path(cmdline[0]).name != STUB_NAME:
        return None
    model = Path(cmdline[1]).parent.parent.name  # REPO/MODEL/VERSION/model.py
    return model, cmdline[-2]


def process_label(proc: psutil.Process) -> str:
    """``tritonserver``, or a stub by its model instance (``minilm_0_1``): how memory and CPU
    figures name the processes of one server."""
    parsed = parse_cmdline(proc.cmdline())
    return parsed[1] if parsed else proc.name()


def backend_stubs(triton_pid: int) -> list[Stub]:
    """The stub processes under ``triton_pid`` (empty when Triton is gone)."""
    try:
        children = psutil.Process(triton_pid).children(recursive=True)
    except psutil.Error:
        return []
    stubs = []
    for child in children:
        try:
            status = child.status()
            if status == psutil.STATUS_ZOMBIE:
                stubs.append(Stub(child.pid, dead=True))
                continue
            parsed = parse_cmdline(child.cmdline())
        except psutil.ZombieProcess:
            stubs.append(Stub(child.pid, dead=True))
            continue
        except psutil.Error:  # exited between the listing and the look
            continue
        if parsed is not None:
            stopped = status in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
            stubs.append(Stub(child.pid, dead=False, model=parsed[0], instance=parsed[1], stopped=stopped))
    return stubs
