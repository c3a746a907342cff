"""The launcher against the real tritonserver: serving, batching, metrics, errors, shutdown."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.conftest import start_server
from tests.helpers import repos
from tritonstack.loadtest.runner.metrics import scrape
from tritonstack.server import (
    BinaryNotFound,
    ModelLoadFailed,
    PortInUse,
    RepositoryNotFound,
    ServerConfig,
    ServerExited,
    TritonServer,
)

pytestmark = pytest.mark.triton


def _infer(url: str, model: str, x: np.ndarray) -> np.ndarray:
    with grpcclient.InferenceServerClient(url) as client:
        inp = grpcclient.InferInput("INPUT", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return client.infer(model, [inp]).as_numpy("OUTPUT")


def test_grpc_inference_on_model_and_ensemble(tiny_server: TritonServer) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(_infer(tiny_server.grpc_url, "add_one", x), x + 1)
    np.testing.assert_array_equal(_infer(tiny_server.grpc_url, "add_two", x), x + 2)


def test_http_inference_health_and_metrics(tiny_server: TritonServer) -> None:
    base = tiny_server.http_url
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/add_two/ready"):
        with urllib.request.urlopen(base + path, timeout=5) as resp:
            assert resp.status == 200, path
    body = json.dumps({"inputs": [{"name": "INPUT", "shape": [1, 4], "datatype": "FP32",
                                   "data": [1, 2, 3, 4]}]}).encode()
    req = urllib.request.Request(f"{base}/v2/models/add_one/infer", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        out = json.load(resp)["outputs"][0]
    assert out["name"] == "OUTPUT" and out["data"] == [2, 3, 4, 5]
    counters = scrape(tiny_server.metrics_url, timeout_s=5)
    assert counters is not None and counters["add_one"]["nv_inference_request_success"] >= 1


def test_dynamic_batching_batches_concurrent_requests(tiny_server: TritonServer) -> None:
    def stats() -> tuple[int, int]:
        with grpcclient.InferenceServerClient(tiny_server.grpc_url) as c:
            s = c.get_inference_statistics("add_one", as_json=True)["model_stats"][0]
        return int(s["inference_count"]), int(s["execution_count"])

    before = stats()
    x = np.ones((1, 4), dtype=np.float32)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: _infer(tiny_server.grpc_url, "add_one", x), range(64)))
    assert all((r == 2).all() for r in results)
    inferences, executions = (a - b for a, b in zip(stats(), before, strict=True))
    assert inferences == 64
    assert executions < inferences, f"no batching: {executions} executions for {inferences} requests"


def test_missing_binary_says_how_to_install(tmp_path: Path, tiny_repo: Path) -> None:
    with pytest.raises(BinaryNotFound, match="make venv"):
        TritonServer(ServerConfig(model_repository=tiny_repo, tritonserver=tmp_path / "nope"))


def test_missing_repository(tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFound, match="does not exist"):
        ServerConfig(model_repository=tmp_path / "absent")
    with pytest.raises(RepositoryNotFound, match="no model folder"):
        ServerConfig(model_repository=tmp_path)


def test_port_in_use(tiny_repo: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = ServerConfig(model_repository=tiny_repo, grpc_port=port, http_port=0, metrics_port=0)
        with pytest.raises(PortInUse, match=f"GRPC port 127.0.0.1:{port} is already in use"):
            TritonServer(config).start()


def test_model_load_failure_reports_tritons_reason(tmp_path: Path) -> None:
    repos.write_add_one(tmp_path, "good")
    repos.write_broken(tmp_path, "broken", "weights are corrupt")
    with pytest.raises(ModelLoadFailed) as err:
        start_server(tmp_path)
    assert set(err.value.failures) == {"broken"}
    assert "weights are corrupt" in str(err.value)
    assert "\n" not in str(err.value)


def test_what_a_killed_export_left_does_not_stop_the_next_start(tmp_path: Path) -> None:
    """Issue #32, item 8: a SIGKILLed export leaves its staging folder (``.staging-NAME-*``, or a
    folder writer's ``.NAME.*``) at the repository root. With ``--load-model '*'`` Triton loaded
    it as a model, failed, and the server did not start; hidden folders are not models."""
    from tritonstack.server import ModelControl

    repos.write_add_one(tmp_path)
    leftovers = tmp_path / "leftovers"
    for name in ("x", "y"):
        repos.write_broken(leftovers, name, "a half-written version")
    (leftovers / "x").rename(tmp_path / ".staging-x-k2j4h1")
    (leftovers / "y").rename(tmp_path / ".y.q8a0z3")
    leftovers.rmdir()
    server = start_server(tmp_path, model_control=ModelControl.EXPLICIT, load_models=("*",))
    try:
        states = server.model_states()
        assert states["add_one"] == "READY"
        assert {name: state for name, state in states.items() if name.startswith(".")} == {
            ".staging-x-k2j4h1": "", ".y.q8a0z3": ""}  # listed by Triton, never loaded
    finally:
        server.stop()


def test_an_inconsistent_ensemble_is_named_with_tritons_reason(tmp_path: Path) -> None:
    repos.write_add_one(tmp_path, "add_one", max_batch_size=1)
    repos.write_add_two_ensemble(tmp_path)  # batches up to 8 through a step that takes 1
    with pytest.raises(ServerExited) as err:
        start_server(tmp_path)
    message = str(err.value)
    assert "ensemble add_two allows maximum batch size 8" in message and "NVML" not in message


def test_server_exiting_early_shows_its_last_log_lines(tiny_repo: Path) -> None:
    config = ServerConfig(model_repository=tiny_repo, http_port=0, grpc_port=0, metrics_port=0,
                          extra_args=("--no-such-option",))
    with pytest.raises(ServerExited, match="no-such-option"):
        TritonServer(config).start()


def test_nice_lowers_the_priority_of_triton_and_its_backend_stubs(tiny_repo: Path) -> None:
    import psutil

    server = start_server(tiny_repo, nice=7)
    try:
        x = np.zeros((1, 4), dtype=np.float32)
        np.testing.assert_array_equal(_infer(server.grpc_url, "add_one", x), x + 1)
        triton = psutil.Process(server.pid)
        stubs = triton.children(recursive=True)
        assert stubs, "the Python backend runs add_one in a stub process"
        # Main threads; Triton resets its own batcher threads to the model's nice where allowed.
        assert {p.nice() for p in (triton, *stubs)} == {7}
    finally:
        server.close()


def test_stop_drains_in_flight_requests(tmp_path: Path) -> None:
    repos.write_add_one(tmp_path, "slow", delay_s=1.5)
    server = start_server(tmp_path)
    try:
        result: dict[str, np.ndarray] = {}
        x = np.zeros((1, 4), dtype=np.float32)
        worker = threading.Thread(target=lambda: result.update(y=_infer(server.grpc_url, "slow", x)))
        worker.start()
        threading.Event().wait(0.5)  # the request is executing now
        assert server.stop() == 0
        worker.join(10)
        np.testing.assert_array_equal(result["y"], x + 1)
    finally:
        server.close()


def _serve_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tritonstack.server", "serve", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_cli_serves_until_ctrl_c(tiny_repo: Path) -> None:
    from tritonstack.server import free_port
    grpc_port = free_port()
    proc = _serve_cli("--model-repository", str(tiny_repo), "--grpc-port", str(grpc_port),
                      "--http-port", str(free_port()), "--metrics-port", str(free_port()))
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Triton ready"):
                break
        assert f"gRPC 127.0.0.1:{grpc_port}" in line
        x = np.ones((1, 4), dtype=np.float32)
        np.testing.assert_array_equal(_infer(f"127.0.0.1:{grpc_port}", "add_two", x), x + 2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert "Triton stopped (exit code 0)" in out
    finally:
        proc.kill()


def test_cli_errors_are_one_line_with_exit_codes(tmp_path: Path, tiny_repo: Path) -> None:
    proc = _serve_cli("--model-repository", str(tmp_path / "absent"))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert out.strip().splitlines()[-1].startswith("RepositoryNotFound: model repository")
    assert "Traceback" not in out
    proc = _serve_cli("--model-repository", str(tiny_repo), "--tritonserver", str(tmp_path / "x"))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3 and "BinaryNotFound" in out
