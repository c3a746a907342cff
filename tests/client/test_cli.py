"""``python -m tritonstack.client`` against the stand-in models: every command, text and JSON, exit codes,
over ``--protocol grpc`` and ``--protocol http``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.client.conftest import TOKEN, address
from tests.client.standins import digit_image, expected_embedding
from tritonstack.client.cli import main
from tritonstack.server import TritonServer, free_port

pytestmark = pytest.mark.triton
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def url(client_server: TritonServer, monkeypatch: pytest.MonkeyPatch, protocol: str) -> str:
    monkeypatch.setenv("TRITON_ACCESS_TOKEN", TOKEN)
    return address(client_server, protocol)


@pytest.fixture()
def run(capsys: pytest.CaptureFixture[str], protocol: str) -> Run:
    """``main(["--protocol", protocol, *argv])`` -> (exit code, stdout, stderr)."""
    def call(*argv: str) -> tuple[int, str, str]:
        code = main(["--protocol", protocol, *argv])
        out, err = capsys.readouterr()
        return code, out, err
    return call


def test_health_models_and_model(url: str, run: Run) -> None:
    code, out, _ = run("--url", url, "health")
    assert code == 0 and f"{url}  live=yes  ready=yes" in out
    code, out, _ = run("--url", url, "--json", "models")
    assert code == 0 and {"name": "embed", "version": "1", "state": "READY", "reason": ""} in json.loads(out)
    code, out, _ = run("--url", url, "model", "classify_digit")
    assert code == 0 and "max_batch_size=256 ready=yes" in out and "input  IMAGE FP32 [8, 8]" in out


def test_health_fails_when_a_replica_is_down(url: str, run: Run) -> None:
    down = f"127.0.0.1:{free_port()}"
    code, out, _ = run("--url", url, "--url", down, "--json", "health")
    replicas = json.loads(out)
    assert code == 1 and [r["ready"] for r in replicas] == [True, False] and replicas[1]["error"]


def test_embed(url: str, run: Run) -> None:
    code, out, _ = run("--url", url, "--json", "embed", "hello", "world")
    data = json.loads(out)
    assert code == 0 and data["texts"] == ["hello", "world"]
    np.testing.assert_allclose(data["embeddings"][1], expected_embedding("world"), rtol=1e-5)
    code, out, _ = run("--url", url, "embed", "hello")
    assert code == 0 and out.startswith("'hello': [") and "(384 dims)" in out


def test_classify_png_and_npy(url: str, tmp_path: Path, run: Run) -> None:
    pixels = np.full((32, 32), 255, np.uint8)
    pixels[0:4, 20:24] = 0  # ink where the stand-in looks for a 5
    Image.fromarray(pixels).save(tmp_path / "five.png")
    np.save(tmp_path / "two.npy", np.stack([digit_image(2), digit_image(9)]))
    code, out, _ = run("--url", url, "classify", str(tmp_path / "five.png"),
                       str(tmp_path / "two.npy"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'five.png'}: 5 (p=")
    assert lines[1].startswith(f"{tmp_path / 'two.npy'}[0]: 2") and ": 9 " in lines[2]
    code, out, _ = run("--url", url, "--json", "classify", str(tmp_path / "two.npy"))
    assert [r["label"] for r in json.loads(out)] == [2, 9]


def test_infer_with_npy_inputs(url: str, tmp_path: Path, run: Run) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "x.npy", x)
    code, out, _ = run("--url", url, "--json", "infer", "add_one",
                       "--input", f"INPUT={tmp_path / 'x.npy'}", "--out", str(tmp_path / "out"))
    assert code == 0 and json.loads(out)["OUTPUT"] == {"datatype": "float32", "shape": [3, 4],
                                                        "data": (x + 1).tolist()}
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "OUTPUT.npy"), x + 1)
    np.save(tmp_path / "bad.npy", x.astype(np.float64))
    code, _, err = run("--url", url, "infer", "add_one", "--input", f"INPUT={tmp_path / 'bad.npy'}")
    assert code == 2 and "must be float32 (FP32), got float64" in err and "Traceback" not in err


def test_errors_are_one_line_with_meaningful_exit_codes(url: str, tmp_path: Path, run: Run) -> None:
    code, _, err = run("--url", url, "model", "add_onee")
    assert code == 2 and err.startswith("ClientError: [not_found]") and "did you mean 'add_one'?" in err
    code, _, err = run("--url", url, "--timeout", "0.3", "infer", "slow", "--input",
                       "INPUT=/nonexistent.npy")
    assert code == 2 and "does not exist" in err
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float32))
    code, _, err = run("--url", url, "--timeout", "0.3", "infer", "slow", "--input",
                       f"INPUT={tmp_path / 'x.npy'}")
    assert code == 3 and err.startswith("ClientError: [deadline_exceeded]")
    code, _, err = run("--url", f"127.0.0.1:{free_port()}", "--retries", "0", "models")
    assert code == 3 and err.startswith("ClientError: [unavailable]") and err.count("\n") == 1
    # issue #32, item 13: these were InternalError, exit 4
    np.save(tmp_path / "scalar.npy", np.float32(3))
    code, _, err = run("--url", url, "classify", str(tmp_path / "scalar.npy"))
    assert code == 2 and "holds an array of shape []" in err and err.count("\n") == 1
    (tmp_path / "a-file").write_text("")
    code, _, err = run("--url", url, "infer", "add_one", "--input", f"INPUT={tmp_path / 'x.npy'}",
                       "--out", str(tmp_path / "a-file"))
    assert code == 2 and err.startswith("ClientError: [invalid_argument] --out") and err.count("\n") == 1


def test_module_entry_point(url: str, protocol: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tritonstack.client", "--protocol", protocol, "--url", url,
                           "model", "add_one"],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert done.returncode == 0 and "add_one (python) max_batch_size=8" in done.stdout
