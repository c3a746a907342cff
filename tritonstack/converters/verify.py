"""``python -m tritonstack.converters verify REPOSITORY``: re-check every ONNX version on this machine.

Each version exported with golden data (``golden.npz`` + ``metadata.json["golden"]``) is run
here the way the python-ort runner serves it (same thread settings, and exact INT8 kernels where
this CPU's probe finds saturating ones) and held to its bounds, so a deploy pipeline can run it
on the target hardware before it rolls a repository out. Versions without an ONNX file (Python
steps, TensorRT plans) are not listed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tritonstack.converters.errors import EnvironmentProblem, InvalidSpec
from tritonstack.converters.repository import existing_versions, read_config

__all__ = ["VersionCheck", "run_emulated", "verify_repository"]

#: QEMU CPU models are case-sensitive words like Haswell, Skylake-Client, EPYC-Rome.
_QEMU_CPU_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclasses.dataclass(frozen=True)
class VersionCheck:
    """One version's verdict: ``ok``, ``failed`` or ``unchecked`` (no golden data)."""

    model: str
    version: int
    precision: str
    status: str
    detail: str

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def _parameters(model_dir: Path) -> dict[str, str]:
    try:
        config = read_config(model_dir)
    except Exception as exc:  # a config Triton would refuse too
        raise InvalidSpec(f"{model_dir / 'config.pbtxt'} cannot be parsed: {exc}") from exc
    if config is None:
        return {}
    return {k: v.string_value for k, v in config.parameters.items()}


def verify_repository(repository: Path, models: tuple[str, ...] = (), *,
                      native_ort: bool = False) -> list[VersionCheck]:
    """Golden self-check of every ONNX version in ``repository`` (or of ``models`` only).

    ``native_ort``: run as Triton's native onnxruntime backend would, without the session
    option the python-ort runner sets where this CPU's INT8 kernel saturates.

    Raises:
        InvalidSpec: the repository does not exist, a named model is not in it, or it holds
            no ONNX version at all.
    """
    import json

    from tritonstack.serving.cpu import int8_config_entries
    from tritonstack.serving.golden import golden_check
    from tritonstack.serving.session import make_session

    repository = Path(repository)
    if not repository.is_dir():
        raise InvalidSpec(f"model repository {repository} does not exist; pass the folder that "
                          "holds the model folders (e.g. model_repository)")
    names = sorted(p.name for p in repository.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = [m for m in models if m not in names]
    if missing:
        raise InvalidSpec(f"no model {', '.join(missing)} in {repository}; it has: {', '.join(names)}")
    checks = []
    for name in models or tuple(names):
        model_dir = repository / name
        params: dict[str, str] | None = None
        for version in existing_versions(model_dir):
            folder = model_dir / str(version)
            onnx_file = folder / "model.onnx"
            if not onnx_file.is_file():
                continue
            if params is None:
                params = _parameters(model_dir)
            try:
                meta = json.loads((folder / "metadata.json").read_text())
            except (OSError, ValueError):
                meta = {}
            precision = str(meta.get("precision", "?"))
            try:  # a damaged version is reported as failed; the others are still checked
                # the config's own thread settings; GPU providers are not this check's business
                session, _ = make_session(str(onnx_file), {k: v for k, v in params.items()
                                                           if k != "execution_providers"},
                                          config_entries={} if native_ort else int8_config_entries())
                result = golden_check(session, str(folder))
            except Exception as exc:  # noqa: BLE001 - ORT, numpy and zip errors of damaged files
                detail = " ".join(str(exc).split())[:300]
                checks.append(VersionCheck(name, version, precision, "failed",
                                           f"cannot be checked ({type(exc).__name__}: {detail}); "
                                           "export this version again"))
                continue
            if result is None:
                checks.append(VersionCheck(name, version, precision, "unchecked",
                                           "no golden data (exported before golden checks); re-export it"))
            elif result.ok:
                checks.append(VersionCheck(name, version, precision, "ok", result.summary()))
            else:
                checks.append(VersionCheck(name, version, precision, "failed",
                                           "; ".join(result.failures) + f" ({result.rows} rows)"))
    if not checks:
        raise InvalidSpec(f"{repository} holds no ONNX model version to verify")
    return checks


def run_emulated(cpu: str, argv: list[str]) -> int:
    """Run ``python -m tritonstack.converters ARGV`` under ``qemu-x86_64 -cpu CPU``; returns its exit code.

    QEMU's user mode hides the host's CPUID, so ONNX Runtime picks the kernels of the emulated
    CPU: ``Haswell`` (AVX2, no VNNI) gets the int16-saturating u8 x s8 kernel that AMD Zen 2/3
    and Intel before Cascade Lake run, on any x86 host. Slow (about 20x), but exact.
    """
    import os
    import shutil
    import subprocess
    import sys

    from tritonstack.serving.cpu import EMULATED_CPU_ENV

    if not cpu or not set(cpu) <= _QEMU_CPU_CHARS:
        raise InvalidSpec(f"--emulate-cpu {cpu!r}: give a QEMU x86 CPU model such as Haswell")
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        raise EnvironmentProblem("qemu-x86_64 not found; install Debian's qemu-user (make venv "
                                 "installs it when run as root) or drop --emulate-cpu")
    env = dict(os.environ, **{EMULATED_CPU_ENV: cpu})
    child = subprocess.run([qemu, "-cpu", cpu, sys.executable, "-m", "tritonstack.converters", *argv], env=env,
                           stderr=subprocess.PIPE, text=True, check=False)
    if child.returncode != 0 and "unable to find CPU model" in child.stderr:
        raise InvalidSpec(f"--emulate-cpu {cpu!r} is not a CPU model QEMU knows "
                          "(qemu-x86_64 -cpu help lists them)")
    for line in child.stderr.splitlines():  # QEMU lists every host feature its TCG lacks
        if "TCG doesn't support requested feature" not in line:
            print(line, file=sys.stderr)
    return child.returncode
