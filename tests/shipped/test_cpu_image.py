"""The CPU image as a user ships it: built by `make image`'s script with podman from
docker/Dockerfile.cpu, run with its own entrypoint on the demo repository until its HEALTHCHECK
(the launcher's readiness) is healthy, driven by the smoke campaign from the host, then stopped.

The container shares the host's network (podman here has no bridge): the image's fixed ports
8000-8003 must be free while it runs. It binds 127.0.0.1 (the image's CMD with ``--host``
changed); everything else is the image's own.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTS = (8000, 8001, 8002, 8003)

pytestmark = [pytest.mark.image, pytest.mark.slow]


def _podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done


@pytest.fixture(scope="module")
def image() -> str:
    done = subprocess.run([str(ROOT / "docker" / "podman" / "build.sh"), "mounted"], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    print(done.stdout.strip())  # the image and its size, in the test log
    return done.stdout.split()[0]


def _busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def container(image: str, demo_repository: Path) -> Iterator[str]:
    busy = [p for p in PORTS if _busy(p)]
    assert not busy, f"ports {busy} are in use; the image's HEALTHCHECK and CMD use 8000-8003"
    name = f"stack-cpu-test-{int(time.time())}"
    _podman("run", "-d", "--name", name, "--network", "host", "--init", "--shm-size=1g",
            "-v", f"{demo_repository}:/models:ro", image,
            "serve", "--host", "127.0.0.1", "--model-repository", "/models")
    try:
        yield name
    finally:
        _podman("rm", "-f", "-t", "5", name, check=False)


def _health(name: str) -> str:
    return _podman("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()


def test_the_image_carries_no_torch_and_the_launcher_is_its_entrypoint(image: str) -> None:
    inspected = json.loads(_podman("image", "inspect", image).stdout)[0]
    assert inspected["Config"]["Entrypoint"] == ["python", "-m", "tritonstack.server"]
    assert "8003/v2/health/ready" in " ".join(inspected["Healthcheck"]["Test"])
    probe = ("import importlib.util as u, sys; missing = [m for m in ('torch', 'transformers', 'optimum', "
             "'locust') if u.find_spec(m)]; sys.exit(f'should not be here: {missing}' if missing else 0)")
    _podman("run", "--rm", "--network", "host", "--entrypoint", "python", image, "-c", probe)


def test_the_container_turns_healthy_serves_the_smoke_campaign_and_stops_cleanly(
        container: str, tmp_path: Path) -> None:
    deadline = time.monotonic() + 300
    while True:  # podman runs a HEALTHCHECK only when asked (no systemd timers here)
        _podman("healthcheck", "run", container, check=False)
        status = _health(container)
        if status == "healthy":
            break
        running = _podman("inspect", "--format", "{{.State.Running}}", container).stdout.strip()
        logs = _podman("logs", container, check=False)
        assert running == "true", f"the container exited: {logs.stdout[-2000:]}{logs.stderr[-3000:]}"
        assert time.monotonic() < deadline, f"not healthy after 300 s ({status}): {logs.stderr[-3000:]}"
        time.sleep(2)

    report = tmp_path / "smoke"
    done = subprocess.run([sys.executable, "-m", "tritonstack.loadtest", "run", "smoke", "--url",
                           "127.0.0.1:8001", "--metrics-url", "http://127.0.0.1:8002/metrics",
                           "--out", str(report), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(next(report.rglob("summary.json")).read_text())
    assert summary["passed"] is True, summary["verdicts"]
    assert summary["verdicts"] and all(v["passed"] for v in summary["verdicts"])

    _podman("stop", "-t", "30", container, timeout=60)
    exit_code = _podman("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
    logs = _podman("logs", container, check=False)
    assert exit_code == "0", logs.stderr[-3000:]  # the launcher drained and stopped Triton
    assert "Traceback" not in logs.stdout + logs.stderr
