"""The front stops as an orchestrator asks: SIGTERM (compose, Kubernetes, podman stop) exits 0
once uvicorn has drained, not 143 as uvicorn's re-raised signal would make it; Ctrl-C exits 130,
the convention's "interrupted". Neither prints a traceback."""

from __future__ import annotations

import signal

import httpx
import pytest

from tritonstack.server.process import free_port


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_stop_signal_ends_the_front_with_the_conventions_code(start_front, sig, code) -> None:
    front = start_front(f"127.0.0.1:{free_port()}")
    # Served once: uvicorn has started and holds the signal handlers.
    assert httpx.get(f"{front.url}/health", timeout=30).status_code == 503
    front.proc.send_signal(sig)
    _, err = front.proc.communicate(timeout=30)
    assert front.proc.returncode == code, err
    assert "Traceback" not in err
