"""The client as a backend service installs it: a fresh virtualenv with only the ``client`` extra
(non-editable, from this checkout), whose console script answers the demo server's two pipelines.
No torch, transformers, Locust or onnxruntime: the exact set of distributions is asserted, so a
heavy dependency slipping into the extra fails here."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import start_server
from tritonstack.server import TritonServer

ROOT = Path(__file__).resolve().parents[2]
# What `pip install 'triton-serving-stack[client]'` brings, besides the venv's own pip/setuptools.
CLIENT_DISTRIBUTIONS = {"argcomplete", "grpcio", "numpy", "packaging", "protobuf", "python-rapidjson",
                        "triton-serving-stack", "tritonclient", "typing_extensions", "urllib3"}

pytestmark = [pytest.mark.triton, pytest.mark.slow]


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("client") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{ROOT}[client]"],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def demo_server(demo_repository: Path) -> Iterator[TritonServer]:
    srv = start_server(demo_repository)
    yield srv
    srv.close()


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def test_the_client_extra_installs_the_client_alone(client_venv: Path) -> None:
    listed = subprocess.run([str(client_venv / "bin" / "python"), "-m", "pip", "list", "--format", "freeze"],
                            capture_output=True, text=True, check=True, timeout=120).stdout
    installed = {line.split("==")[0].lower().replace("_", "-") for line in listed.split()}
    expected = {d.lower().replace("_", "-") for d in CLIENT_DISTRIBUTIONS}
    assert installed - {"pip", "setuptools"} == expected
    print(f"client venv: {_size_mb(client_venv):.0f} MB")  # README, "Install": what it weighs


def test_the_client_extra_completes_its_commands_in_the_shell(client_venv: Path, tmp_path: Path) -> None:
    """``eval "$(register-python-argcomplete tritonstack-client)"`` (README) works from the extra."""
    import os

    answer, line = tmp_path / "completion", "tritonstack-client em"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(answer)}
    subprocess.run([str(client_venv / "bin" / "tritonstack-client")], env=env, check=True, timeout=60,
                   stdin=subprocess.DEVNULL)
    assert answer.read_text().split() == ["embed"]
    assert (client_venv / "bin" / "register-python-argcomplete").exists()


def test_the_client_extra_answers_both_demo_pipelines(client_venv: Path, demo_server: TritonServer,
                                                      tmp_path: Path) -> None:
    cli = client_venv / "bin" / "tritonstack-client"
    embed = subprocess.run([str(cli), "--url", demo_server.grpc_url, "--json", "embed", "where is my parcel"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert embed.returncode == 0, embed.stderr
    vector = np.asarray(json.loads(embed.stdout)["embeddings"][0])
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-3
    image = tmp_path / "digit.npy"
    digits = np.zeros((8, 8), np.float32)
    digits[1:7, 3:5] = 16.0  # a one
    np.save(image, digits)
    classify = subprocess.run([str(cli), "--url", demo_server.grpc_url, "--json", "classify", str(image)],
                              capture_output=True, text=True, timeout=120, check=False)
    assert classify.returncode == 0, classify.stderr
    rows = json.loads(classify.stdout)
    assert rows[0]["label"] in range(10) and 0 < rows[0]["probability"] <= 1
    from PIL import Image  # in the test's environment, not the client's

    Image.fromarray((digits * 15).astype(np.uint8)).save(tmp_path / "digit.png")
    png = subprocess.run([str(cli), "--url", demo_server.grpc_url, "classify", str(tmp_path / "digit.png")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert png.returncode == 2 and "Pillow" in png.stderr  # one line naming the remedy, no traceback
    assert len(png.stderr.strip().splitlines()) == 1
