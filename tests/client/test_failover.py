"""Replicas going away: a retry that outlives a restart, and a killed replica under load (over
gRPC and over HTTP)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.client.conftest import address
from tests.conftest import start_server
from tests.helpers import repos
from tritonstack.client import AsyncClient, Client, ClientError, Status
from tritonstack.loadtest.runner.metrics import scrape
from tritonstack.server import ServerConfig, TritonServer, free_port

pytestmark = pytest.mark.triton


def _requests_served(srv: TritonServer) -> float:
    counters = scrape(srv.metrics_url, timeout_s=5)
    assert counters is not None, f"no metrics from {srv.metrics_url}"
    return counters.get("add_one", {}).get("nv_inference_request_success", 0.0)


def test_retry_succeeds_after_the_server_restarts(tmp_path: Path, protocol: str) -> None:
    repos.write_add_one(tmp_path)
    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    first = TritonServer(ServerConfig(model_repository=tmp_path, **ports)).start()
    url = address(first, protocol)
    x = np.ones((2, 4), np.float32)
    second = TritonServer(ServerConfig(model_repository=tmp_path, **ports))
    try:
        with Client(urls=url, protocol=protocol, retries=40, backoff_initial_s=0.05, backoff_max_s=0.5,
                    timeout_s=60) as patient, Client(urls=url, protocol=protocol, retries=0) as impatient:
            np.testing.assert_array_equal(patient.infer("add_one", {"INPUT": x})["OUTPUT"], x + 1)
            first.kill()
            with pytest.raises(ClientError) as info:
                impatient.infer("add_one", {"INPUT": x})
            assert info.value.status is Status.UNAVAILABLE and info.value.attempts == 1
            restarter = threading.Timer(0.5, second.start)
            restarter.start()
            try:
                out = patient.infer("add_one", {"INPUT": x})  # retried until the restart is up
            finally:
                restarter.join()
            np.testing.assert_array_equal(out["OUTPUT"], x + 1)

            async def after_restart() -> np.ndarray:
                async with AsyncClient(urls=url, protocol=protocol) as triton:
                    return (await triton.infer("add_one", {"INPUT": x}))["OUTPUT"]
            np.testing.assert_array_equal(asyncio.run(after_restart()), x + 1)
    finally:
        second.close()
        first.close()


def test_killing_one_of_two_replicas_under_load_loses_no_request(tmp_path: Path, protocol: str) -> None:
    repos.write_add_one(tmp_path, delay_s=0.005)
    a, b = start_server(tmp_path), start_server(tmp_path)
    total, per_thread, done = [0], 60, threading.Event()
    lock = threading.Lock()
    failures: list[str] = []
    try:
        with Client(urls=[address(a, protocol), address(b, protocol)], protocol=protocol, retries=5,
                    timeout_s=30, failover_cooldown_s=5.0) as triton:

            def work(seed: int) -> None:
                for i in range(per_thread):
                    x = np.full((2, 4), seed * 1000 + i, np.float32)
                    try:
                        out = triton.infer("add_one", {"INPUT": x})["OUTPUT"]
                        if not np.array_equal(out, x + 1):
                            failures.append(f"wrong result for {seed}/{i}")
                    except ClientError as exc:
                        failures.append(str(exc))
                    with lock:
                        total[0] += 1
                        if total[0] == 60:
                            done.set()

            threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
            for t in threads:
                t.start()
            assert done.wait(60)
            served_by_a, b_before = _requests_served(a), _requests_served(b)
            with lock:
                a.kill()
                completed_before_kill = total[0]
            for t in threads:
                t.join()
            served_by_b_after_kill = _requests_served(b) - b_before
    finally:
        a.close()
        b.close()
    assert failures == []
    assert total[0] == 4 * per_thread
    assert served_by_a > 0, "round-robin should have sent work to both replicas before the kill"
    # Everything completed after the kill was served by b (the 4 threads' in-flight calls may
    # have been answered by a just before it died).
    assert served_by_b_after_kill >= 4 * per_thread - completed_before_kill - 4
