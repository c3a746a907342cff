"""The launcher's health endpoint, without Triton: a probe that gives up before its answer (a
HEALTHCHECK's or kubelet's timeout) leaves no traceback in the container's log. Found running the
CPU image: podman's health checks reset connections the endpoint was still answering."""

from __future__ import annotations

import socket
import struct
import time
import urllib.request

import pytest

from tritonstack.server.health import HealthEndpoint, HealthMetrics


def test_a_probe_that_hangs_up_leaves_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    endpoint = HealthEndpoint("127.0.0.1", 0, lambda: time.sleep(0.2) or True, HealthMetrics()).start()
    try:
        for _ in range(3):
            probe = socket.create_connection(("127.0.0.1", endpoint.port))
            probe.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: probe\r\n\r\n")
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            probe.close()  # a reset, before the answer
        time.sleep(0.8)
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/v2/health/ready", timeout=5) as resp:
            assert resp.status == 200  # and the endpoint still answers
    finally:
        endpoint.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err
