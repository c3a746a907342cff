"""The HTTP front's image as compose and Kubernetes run it: built by `make image`'s script with
podman (docker/Dockerfile.cpu, target ``http``), run with its own entrypoint and the command of
docker/compose.yaml's ``http`` service, its root filesystem read-only and every capability
dropped as the Kubernetes Deployment sets them, both tokens from the environment as the Secrets
give them. Against a real Triton on the host, restricted by its access token as the launcher
restricts it beyond loopback, its HEALTHCHECK (the front's /health) turns healthy, and
``POST /v1/embeddings`` through it returns the demo ``embed`` pipeline's vectors.

The container shares the host's network (podman here has no bridge): port 8080, the image's
HEALTHCHECK's, must be free while it runs. Two words of compose's command change: ``--host``
is 127.0.0.1 here (compose's 0.0.0.0 is reached through a published port), and ``--url`` is the
host's Triton instead of the compose network's ``triton:8001``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.conftest import start_server
from tritonstack.client import Client
from tritonstack.server import TritonServer

ROOT = Path(__file__).resolve().parents[2]
PORT = 8080
FRONT_TOKEN = "front-test-token"
TRITON_TOKEN = "triton-test-token"

pytestmark = [pytest.mark.image, pytest.mark.triton, pytest.mark.slow]


def _podman(*args: str, timeout: float = 120, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done


@pytest.fixture(scope="module")
def image() -> str:
    done = subprocess.run([str(ROOT / "docker" / "podman" / "build.sh"), "http"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    print(done.stdout.strip())  # the image and its size, in the test log
    return done.stdout.split()[0]


@pytest.fixture(scope="module")
def triton(demo_repository: Path) -> Iterator[TritonServer]:
    server = start_server(demo_repository, restricted_apis=("model-repository",), restricted_value=TRITON_TOKEN)
    yield server
    server.close()


def compose_command(triton_url: str) -> list[str]:
    """docker/compose.yaml's command for the front, with this host's two addresses."""
    service = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]["http"]
    command = [str(word) for word in service["command"]]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == str(PORT)
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--url") + 1] = triton_url
    return command


def _busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def container(image: str, triton: TritonServer, demo_repository: Path) -> Iterator[str]:
    assert not _busy(PORT), f"port {PORT} is in use; the image's HEALTHCHECK and compose's command use it"
    name = f"stack-http-test-{int(time.time())}"
    # The tokens reach the container as the Secrets do: by name from the environment, not on a command line.
    env = {**os.environ, "TRITONSTACK_HTTP_TOKEN": FRONT_TOKEN, "TRITON_ACCESS_TOKEN": TRITON_TOKEN}
    _podman("run", "-d", "--name", name, "--network", "host", "--init",
            "--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-e", "TRITONSTACK_HTTP_TOKEN", "-e", "TRITON_ACCESS_TOKEN",
            "-v", f"{demo_repository}:/models:ro", image, *compose_command(triton.grpc_url), env=env)
    try:
        yield name
    finally:
        _podman("rm", "-f", "-t", "5", name, check=False)


def test_the_image_is_the_front_alone(image: str) -> None:
    inspected = json.loads(_podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["Entrypoint"] == ["python", "-m", "tritonstack.http"]
    assert config["Cmd"] == ["serve", "--host", "0.0.0.0", "--port", str(PORT)]
    assert config["User"] == "1000:1000"
    assert f"127.0.0.1:{PORT}/health" in " ".join(inspected["Healthcheck"]["Test"])
    probe = ("import importlib.util as u, shutil, sys; "
             "missing = [m for m in ('starlette', 'uvicorn', 'httptools', 'tokenizers', 'grpc', 'tritonclient') "
             "if not u.find_spec(m)]; "
             "extra = [m for m in ('torch', 'onnxruntime', 'transformers', 'locust') if u.find_spec(m)]; "
             "extra += ['tritonserver'] if shutil.which('tritonserver') or u.find_spec('pytriton') else []; "
             "sys.exit(f'missing {missing}, should not be here {extra}' if missing or extra else 0)")
    done = _podman("run", "--rm", "--network", "host", "--entrypoint", "python", image, "-c", probe, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _healthy(name: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:  # podman runs a HEALTHCHECK only when asked (no systemd timers here)
        _podman("healthcheck", "run", name, check=False)
        status = _podman("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
        if status == "healthy":
            return
        running = _podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        logs = _podman("logs", name, check=False)
        assert running == "true", f"the container exited: {logs.stdout[-2000:]}{logs.stderr[-3000:]}"
        assert time.monotonic() < deadline, f"not healthy after {timeout_s:.0f} s ({status}): {logs.stderr[-3000:]}"
        time.sleep(1)


def test_the_container_turns_healthy_serves_embeddings_and_stops_cleanly(
        container: str, triton: TritonServer) -> None:
    _healthy(container)
    url = f"http://127.0.0.1:{PORT}"
    texts = ["How do I reset my password?", "hello world"]
    refused = httpx.post(f"{url}/v1/embeddings", json={"model": "embed", "input": texts}, timeout=30)
    assert refused.status_code == 401  # the bearer token came through from the environment

    auth = {"Authorization": f"Bearer {FRONT_TOKEN}"}
    # /v1/ lists the served pipelines through Triton's restricted repository API: TRITON_ACCESS_TOKEN came through.
    models = httpx.get(f"{url}/v1/models", headers=auth, timeout=30)
    assert models.status_code == 200, models.text
    assert "embed" in [m["id"] for m in models.json()["data"]]
    answer = httpx.post(f"{url}/v1/embeddings", json={"model": "embed", "input": texts}, headers=auth, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    vectors = np.array([d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])], dtype=np.float32)
    assert vectors.shape == (2, 384)
    with Client(urls=triton.grpc_url) as client:
        direct = client.embed(texts)
    np.testing.assert_allclose(vectors, direct, rtol=0, atol=1e-6)
    # The tokenizer came from the mounted repository: "hello world" is 4 tokens for MiniLM.
    one = httpx.post(f"{url}/v1/embeddings", json={"model": "embed", "input": "hello world"}, headers=auth, timeout=30)
    assert one.json()["usage"] == {"prompt_tokens": 4, "total_tokens": 4}

    _podman("stop", "-t", "20", container, timeout=60)
    exit_code = _podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
    logs = _podman("logs", container, check=False)
    assert exit_code == "0", logs.stdout[-2000:] + logs.stderr[-3000:]
    assert f"listening on http://127.0.0.1:{PORT}" in logs.stdout + logs.stderr
    assert "Traceback" not in logs.stdout + logs.stderr
