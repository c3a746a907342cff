"""The machine a run measured: CPU model, its int8 instructions, cores, GPU, and the server's commit.

Recorded in summary.json (``machine``) so that a figure is never read without where it came from:
``cost`` names it instead of "an unnamed device", ``compare`` warns when two runs ran on different
CPUs, and both reports print it. No hostname, user or address is recorded.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

INT8_FLAGS = ("avx512_vnni", "amx_int8", "avx2")  # what ONNX Runtime's int8 kernels can use, best first
UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Machine:
    """Where a run's numbers were measured (the load generator's machine, which also ran the server
    when the run started it with ``--model-repository``)."""

    cpu: str
    cores: int
    int8: tuple[str, ...]  # the INT8_FLAGS /proc/cpuinfo lists, in INT8_FLAGS order
    gpu: str | None  # nvidia-smi's names, "; "-joined; None without a GPU
    server_commit: str  # git commit of the project the server ran, or "unknown"

    @property
    def label(self) -> str:
        """One line: ``Intel(R) Xeon(R) Processor, 2 cores (avx512_vnni, amx_int8, avx2), no GPU``."""
        flags = ", ".join(self.int8) or "no int8 extensions"
        return f"{self.cpu}, {self.cores} cores ({flags}), {self.gpu or 'no GPU'}"

    @property
    def device(self) -> str:
        """What served the requests, for pricing: the GPU if there is one, else the CPU."""
        return self.gpu or f"CPU {self.cpu} ({self.cores} cores)"

    def to_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "cores": self.cores, "int8": list(self.int8), "gpu": self.gpu,
                "server_commit": self.server_commit}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Machine:
        """Inverse of :meth:`to_dict`; raises KeyError/TypeError/ValueError on a malformed record."""
        int8 = data["int8"]
        if not isinstance(int8, list) or not all(isinstance(f, str) for f in int8):
            raise ValueError("machine.int8 must be a list of flag names")
        gpu = data["gpu"]
        if gpu is not None and not isinstance(gpu, str):
            raise ValueError("machine.gpu must be a string or null")
        return cls(cpu=str(data["cpu"]), cores=int(data["cores"]), int8=tuple(int8), gpu=gpu,
                   server_commit=str(data["server_commit"]))


def cpu_from_cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    """(model name, the INT8_FLAGS present) from /proc/cpuinfo's text."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model or UNKNOWN, tuple(f for f in INT8_FLAGS if f in flags)


def gpu_names(timeout_s: float = 10.0) -> str | None:
    """``nvidia-smi --query-gpu=name``, "; "-joined; None without nvidia-smi or a GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return "; ".join(names) if done.returncode == 0 and names else None


def git_commit(folder: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the project (this package's checkout), or "unknown" (a wheel)."""
    folder = folder or Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else UNKNOWN


def detect(model_repository: Path | None = None) -> Machine:
    """This machine. The server's commit: the model repository's checkout when the run started
    one on it, else this package's (the server runs the same project's serving code)."""
    try:
        model, flags = cpu_from_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        model, flags = platform.processor() or UNKNOWN, ()
    commit = git_commit(model_repository) if model_repository is not None else UNKNOWN
    if commit == UNKNOWN:
        commit = git_commit()
    return Machine(cpu=model, cores=os.cpu_count() or 1, int8=flags, gpu=gpu_names(), server_commit=commit)
