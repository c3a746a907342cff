"""Markers are skipped here, in one place, each with the reason.

* ``triton``: needs the tritonserver binary (installed by `make venv`).
* ``gpu``: needs an NVIDIA GPU with TensorRT; CI and this machine have none.
* ``slow``: exports/trains real models; runs by default, deselect with ``-m "not slow"``.
* ``emulated``: runs ONNX Runtime under ``qemu-x86_64 -cpu Haswell`` (the AVX2-only integer
  kernels); needs Debian's qemu-user (installed by `make venv` as root).
* ``image``: builds and runs the container images with Debian's podman (docker/podman/ installs
  and sets it up); needs root and apt-get.
* ``py310``: runs what NVIDIA's image runs under Python 3.10; needs a Python 3.10 interpreter
  (pyenv's, or ``$PYTHON310``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import repos
from tritonstack.server import BinaryNotFound, ServerConfig, TritonServer, find_tritonserver


def _triton_missing() -> str | None:
    try:
        find_tritonserver()
    except BinaryNotFound as exc:
        return str(exc)
    return None


def _gpu_missing() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "no NVIDIA GPU on this machine (nvidia-smi not found); TensorRT steps need one"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (pip install '.[gpu]')"
    return None


def _qemu_missing() -> str | None:
    if shutil.which("qemu-x86_64") is None:
        return ("qemu-x86_64 not found (Debian qemu-user; `make venv` installs it as root): cannot "
                "emulate an AVX2-only CPU")
    return None


def _prometheus_missing() -> str | None:
    missing = [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]
    if missing:
        return (f"{' and '.join(missing)} not found (Debian prometheus; `make venv` installs it as "
                "root): cannot check the alert rules or run a real Prometheus")
    return None


def _image_tools_missing() -> str | None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return ("building images needs root and apt-get (docker/podman/setup.sh installs rootful "
                "podman from Debian); run `sudo make image` to build them by hand")
    return None


def python310() -> Path | None:
    """A Python 3.10 interpreter, as in NVIDIA's tritonserver image: $PYTHON310, else pyenv's."""
    if os.environ.get("PYTHON310"):
        return Path(os.environ["PYTHON310"])
    roots = [Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")), Path("/root/.pyenv")]
    found = sorted(p for root in roots for p in root.glob("versions/3.10.*/bin/python3.10"))
    return found[-1] if found else None


def _python310_missing() -> str | None:
    if python310() is None:
        return ("no Python 3.10 interpreter (set $PYTHON310, or `pyenv install 3.10`): cannot run "
                "what NVIDIA's image runs under its Python")
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = {"triton": _triton_missing(), "gpu": _gpu_missing(), "emulated": _qemu_missing(),
               "prometheus": _prometheus_missing(), "image": _image_tools_missing(),
               "py310": _python310_missing()}
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


_SESSION_START = time.time()
_SERVER_PROCESSES = ("tritonserver", "triton_python_backend_stub")
# Every process the tests start inherits this, stubs orphaned by a killed Triton too: the leak
# check then ends only this session's servers, never a benchmark's running beside the suite.
_SESSION_MARK = "TRITON_STACK_TEST_SESSION"
os.environ[_SESSION_MARK] = str(os.getpid())


def _left_running() -> list[tuple[int, str]]:
    """tritonserver and backend-stub processes this session started that still run."""
    import psutil

    left = []
    for proc in psutil.process_iter(["pid", "name", "create_time", "status"]):
        info = proc.info
        name = info["name"] or ""
        ours = name == _SERVER_PROCESSES[0] or name.startswith(_SERVER_PROCESSES[1][:15])  # comm: 15 chars
        if ours and info["create_time"] >= _SESSION_START - 1 and info["status"] != psutil.STATUS_ZOMBIE:
            try:
                mine = proc.environ().get(_SESSION_MARK) == str(os.getpid())
            except psutil.Error:  # ended meanwhile, or not ours to read
                continue
            if mine:
                left.append((info["pid"], name))
    return left


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite fails if a Triton or a backend stub it started outlives it (then ends them)."""
    import contextlib
    import os
    import signal

    deadline = time.time() + 15  # servers stopped by the last tests may still be draining
    left = _left_running()
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = _left_running()
    if left:
        for pid, _ in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        print(f"\nFAILED: processes started by the tests outlived them (now killed): {left}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def start_server(repo: Path, **overrides: object) -> TritonServer:
    """A started Triton on free ports (the caller stops it)."""
    config = ServerConfig(model_repository=repo, http_port=0, grpc_port=0, metrics_port=0,
                          **overrides)  # type: ignore[arg-type]
    return TritonServer(config).start()


@pytest.fixture(scope="session")
def demo_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo repository, built once per session by the project's own command (ensembles'
    tests and the shipped artifacts' tests share it)."""
    from tritonstack.ensembles.build import build

    repo = tmp_path_factory.mktemp("demo") / "model_repository"
    build(repo, progress=lambda _: None)
    return repo


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """add_one (Python backend, dynamic batching) and add_two (2-step ensemble over it)."""
    repo = tmp_path_factory.mktemp("tiny_repo")
    repos.write_add_one(repo, delay_s=0.02)
    repos.write_add_two_ensemble(repo)
    return repo


@pytest.fixture(scope="session")
def tiny_server(tiny_repo: Path) -> Iterator[TritonServer]:
    """One Triton for the session, serving ``tiny_repo``."""
    server = start_server(tiny_repo)
    yield server
    server.close()
