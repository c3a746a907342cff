"""The GPU image's Python side, as it ships: NVIDIA's image cannot be pulled here, so this builds
what docker/Dockerfile.gpu adds to it, exactly, under Python 3.10 (the image's Python):

* a Python 3.10 environment with ``docker/requirements-gpu.txt`` and nothing else of the project;
* on ``PYTHONPATH``, only the folders the Dockerfile copies (``tritonstack/__init__.py`` and
  ``tritonstack/server/``);
* the image's command: ``python3 -m tritonstack.server serve``.

The pip wheel's ``tritonserver`` (2.51, as NGC 24.10) stands in for NGC's, with its Python 3.10
backend stub. The repository is built for ``--target onnxruntime`` (the GPU targets): Triton here
has no onnxruntime backend, so the launcher loads every Python-backend model in it (tokenizer
and labels steps, a rollout router), and each must import from what its version carries and
answer its own warmup at load, or the launcher exits 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import python310
from tests.converters import tiny
from tritonstack.converters.api import ExportSpec, export
from tritonstack.ensembles.cli import main as ensembles_main

ROOT = Path(__file__).resolve().parents[2]
PYTRITON = "nvidia-pytriton==0.7.0"  # the binary only, as docker/install.sh installs it

pytestmark = [pytest.mark.py310, pytest.mark.triton, pytest.mark.slow]


def _copies_of_the_dockerfile(dest: Path) -> Path:
    """The project files Dockerfile.gpu COPYs, at the same place under ``dest`` (its /opt/stack)."""
    text = (ROOT / "docker" / "Dockerfile.gpu").read_text()
    copies = re.findall(r"^COPY (tritonstack/\S*) /opt/stack/(\S+)$", text, re.M)
    assert copies, "Dockerfile.gpu copies no project code: the launcher is its entrypoint"
    for source, target in copies:
        src, out = ROOT / source, dest / target
        if src.is_dir():
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
    return dest


@pytest.fixture(scope="module")
def venv310() -> Path:
    """Python 3.10 with requirements-gpu.txt (+ the Triton wheel's binary), cached by content."""
    requirements = ROOT / "docker" / "requirements-gpu.txt"
    key = hashlib.sha256(requirements.read_bytes() + PYTRITON.encode()).hexdigest()[:12]
    venv = Path.home() / ".cache" / "triton-serving-stack" / f"py310-gpu-{key}"
    python = venv / "bin" / "python3"
    if not (venv / ".complete").is_file():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([str(python310()), "-m", "venv", str(venv)], check=True, timeout=300)
        for args in (["-r", str(requirements)], ["--no-deps", PYTRITON]):
            done = subprocess.run([str(python), "-m", "pip", "install", "-q", *args], capture_output=True,
                                  text=True, timeout=1200, check=False)
            assert done.returncode == 0, done.stderr[-3000:]
        (venv / ".complete").touch()
    return venv


@pytest.fixture(scope="module")
def gpu_repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Text models exported for the native onnxruntime backend, with `ensembles add` pipelines
    and a rollout router; returns the repository and its Python-backend models."""
    from tritonstack.rollout.repository import write_router
    from tritonstack.rollout.state import write_split
    from tritonstack.serving.split import Split

    tmp = tmp_path_factory.mktemp("gpu")
    repo = tmp / "repo"
    for name, folder, pipeline in (
            ("encoder", tiny.write_tiny_family(tmp / "bert", "bert"), "embed"),
            ("sentiment", tiny.write_tiny_family(tmp / "cls", "distilbert", classifier=True), "classify")):
        export(ExportSpec(str(folder), name, target="onnxruntime", repository=repo,
                          work_dir=tmp / "work" / name), progress=None)
        assert ensembles_main(["add", pipeline, "--model", name, "--model-repository", str(repo)]) == 0
    write_split(repo / "encoder", Split("encoder", primary=1))
    write_router(repo, "encoder", "embedding")
    python_models = sorted(p.parent.name for p in repo.glob("*/config.pbtxt")
                           if 'backend: "python"' in p.read_text())
    return repo, python_models


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except OSError as exc:
        return getattr(exc, "code", 0) or 0


def test_every_python_backend_model_loads_and_warms_up_under_python_3_10(
        venv310: Path, gpu_repository: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, python_models = gpu_repository
    assert {"encoder_tokenizer", "sentiment_tokenizer", "sentiment_labels", "encoder_router"} <= set(python_models)
    for model in python_models:  # each carries its serving code; none imports the project
        version = repo / model / "1"
        assert (version / "serving" / "__init__.py").is_file()
        assert json.loads((version / "metadata.json").read_text())["serving"]["code"] == "carried"
    stack = _copies_of_the_dockerfile(tmp_path / "opt-stack")
    http, grpc, metrics, health = _free_ports(4)
    env = {"PATH": f"{venv310 / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(stack),
           "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    args = [str(venv310 / "bin" / "python3"), "-m", "tritonstack.server", "serve", "--model-repository",
            str(repo), "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
            "--health-port", str(health)]
    for model in python_models:
        args += ["--load-model", model]
    log = tmp_path / "launcher.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while _get(f"http://127.0.0.1:{health}/v2/health/ready") != 200:
            assert proc.poll() is None, f"the launcher exited {proc.returncode}: {log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"not ready after 240 s: {log.read_text()[-4000:]}"
            time.sleep(0.5)
        for model in python_models:
            assert _get(f"http://127.0.0.1:{http}/v2/models/{model}/ready") == 200, model
        text = log.read_text()
        assert "Traceback" not in text and "ModuleNotFoundError" not in text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-4000:]
