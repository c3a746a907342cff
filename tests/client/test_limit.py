"""The client's adaptive concurrency limit (client/_limit.py): the AIMD arithmetic, the gate that
holds callers over the limit (released in order, or refused at their deadline), and a real
Triton whose queue refuses: the limit comes down to what the server takes."""

from __future__ import annotations

import threading
import time

import pytest

from tritonstack.client import Client, ClientConfig, ClientError, Status
from tritonstack.client._limit import AimdLimit, Gate


def test_additive_increase_and_multiplicative_decrease() -> None:
    limit = AimdLimit(initial=4, minimum=1, maximum=8)
    for _ in range(4):
        limit.succeeded()
    assert 4.9 < limit.limit < 5.0  # +1/limit per answer: about one more after `limit` answers
    for _ in range(100):
        limit.succeeded()
    assert limit.limit == 8  # capped
    limit.overloaded()
    assert limit.limit == 4
    for _ in range(10):
        limit.overloaded()
    assert limit.limit == 1 and limit.has_room  # never below one request in flight


def test_refusals_of_one_window_bring_the_limit_down_once() -> None:
    """Eight requests in flight, all refused together (a batch shed at once): one decrease; a
    refusal of a request sent after it is a new window."""
    limit = AimdLimit(initial=8, minimum=1, maximum=64)
    limit.in_flight = 8
    for _ in range(8):
        limit.finished(overloaded=True)
    assert limit.limit == 4 and limit.in_flight == 0
    limit.in_flight = 1
    limit.finished(overloaded=True)
    assert limit.limit == 2


def test_the_gate_holds_callers_over_the_limit_until_a_slot_frees_or_their_deadline() -> None:
    gate = Gate(maximum=64)
    gate.limit.limit = 1
    assert gate.enter(time.monotonic() + 1)
    assert not gate.enter(time.monotonic() + 0.05)  # full: refused at the deadline, not before
    entered = threading.Event()
    waiter = threading.Thread(target=lambda: gate.enter(time.monotonic() + 5) and entered.set())
    waiter.start()
    time.sleep(0.05)
    assert not entered.is_set()
    gate.leave(overloaded=False)  # an answer: the waiter gets the slot
    waiter.join(2)
    assert entered.is_set() and gate.limit.in_flight == 1


def test_the_config_validates_the_maximum() -> None:
    with pytest.raises(ClientError) as err:
        ClientConfig(adaptive_concurrency=True, adaptive_concurrency_max=0)
    assert err.value.status is Status.CONFIG


def _hammer(client: Client, callers: int = 16, calls: int = 15) -> tuple[int, int]:
    """(answered, refused) of ``callers`` threads each sending ``calls`` requests back to back."""
    import numpy as np

    counts = {"answered": 0, "refused": 0}
    lock = threading.Lock()

    def call() -> None:
        for _ in range(calls):
            try:
                client.infer("slow", {"INPUT": np.ones((1, 4), np.float32)})
                outcome = "answered"
            except ClientError as exc:
                assert exc.status is Status.OVERLOADED, exc
                outcome = "refused"
            with lock:
                counts[outcome] += 1

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts["answered"], counts["refused"]


@pytest.mark.triton
def test_against_a_queue_that_refuses_the_limit_comes_down(tmp_path, protocol: str) -> None:
    """slow takes 20 ms a request and queues at most 2: 16 callers without back-off are refused
    most of the time; with the adaptive limit the client holds them, and few are refused (over
    gRPC, and over HTTP where the refusal is a 503)."""
    from tests.client.conftest import address
    from tests.conftest import start_server
    from tests.helpers import repos

    repos.write_add_one(tmp_path, "slow", delay_s=0.02, max_batch_size=1, queue_delay_us=0,
                        queue_policy="max_queue_size: 2")
    server = start_server(tmp_path)
    try:
        url = address(server, protocol)
        with Client(urls=[url], protocol=protocol, retries=0, timeout_s=10) as bare_client:
            bare = _hammer(bare_client)
        with Client(urls=[url], protocol=protocol, retries=0, timeout_s=10,
                    adaptive_concurrency=True) as held_client:
            held = _hammer(held_client)
            limit = held_client._gates[0].limit.limit
    finally:
        server.close()
    assert bare[1] > 100  # most of the 240 calls refused
    assert held[1] < bare[1] / 4 and held[0] > bare[0]
    assert limit < 8  # the limit came down to what the queue takes


def test_the_async_gate_serves_waiters_in_order_and_refuses_at_the_deadline() -> None:
    import asyncio

    from tritonstack.client._limit import AsyncGate

    async def scenario() -> list[int]:
        gate = AsyncGate(maximum=64)
        gate.limit.limit = 1
        assert await gate.enter(time.monotonic() + 1)
        assert not await gate.enter(time.monotonic() + 0.02)
        order: list[int] = []

        async def waiter(i: int) -> None:
            assert await gate.enter(time.monotonic() + 5)
            order.append(i)
            await gate.leave(overloaded=False)

        tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
        await asyncio.sleep(0.02)
        await gate.leave(overloaded=False)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == [0, 1, 2]
