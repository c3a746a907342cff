"""The Locust gRPC user for Triton: one long-lived channel per user, pre-serialized requests.

Imported only inside Locust processes, after ``grpc.experimental.gevent.init_gevent()`` (see
``locustfile.py``). Each request sends bytes serialized once by ``loadtest.payloads`` through a
gRPC method with identity serializers (the response is not parsed either: a failed inference is a
gRPC status), and fires ``events.request`` with the real response time, size and error.
"""

from __future__ import annotations

import random
import time
from typing import ClassVar

import grpc
from locust import User, task

from tritonstack.client import is_shed
from tritonstack.loadtest.runner.pacing import Pacer
from tritonstack.loadtest.runner.payloads import INFER_METHOD
from tritonstack.loadtest.runner.stats import shed_name

_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


class InferError(Exception):
    """A failed inference as Locust records it: the gRPC status code and Triton's message."""


class Pacing:
    """Requests per second each user should send (None: send as soon as the last one returns)."""

    per_user: float | None = None


class Counter:
    """Requests issued by this process (for the generator's CPU cost per request)."""

    requests = 0


class TritonGrpcUser(User):
    """Sends a weighted mix of pre-serialized ModelInfer requests to one Triton gRPC endpoint.

    Configure by subclassing (the locustfile does): ``target``, ``timeout_s``, ``names`` (stats
    name per traffic entry), ``pools`` (serialized requests per entry) and ``schedule`` (entry
    indices in proportion to the campaign's weights).

    All users of a process read each pool through one cursor, in order: the process sends the
    pool's rows as they were drawn, none twice before the pool wraps. (A cursor per user, each
    starting near the same place, replayed the same rows from every user, so a query mix drawn
    with Zipf frequencies reached a response cache at a 97.6 % hit rate instead of its ~73 %.)
    """

    abstract = True
    target: ClassVar[str] = "127.0.0.1:8001"
    timeout_s: ClassVar[float] = 10.0
    names: ClassVar[list[str]] = []
    pools: ClassVar[list[list[bytes]]] = []
    schedule: ClassVar[list[int]] = []
    cursors: ClassVar[list[int]] = []  # per pool: the next row this process sends
    channels: ClassVar[set[grpc.Channel]] = set()

    def on_start(self) -> None:
        self._channel = grpc.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
        self.channels.add(self._channel)
        self._infer = self._channel.unary_unary(INFER_METHOD)  # bytes in, bytes out
        self._turn = random.randrange(len(self.schedule))
        self._pacer = Pacer()

    def on_stop(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel (a gRPC channel left open can hang the process at exit)."""
        channel = getattr(self, "_channel", None)
        if channel is not None:
            self.channels.discard(channel)
            channel.close()
            self._channel = None

    def wait_time(self) -> float:
        """Pace to ``Pacing.per_user`` requests/s (see ``loadtest.pacing``)."""
        return self._pacer.wait(time.perf_counter(), Pacing.per_user)

    @task
    def infer(self) -> None:
        """One inference: pick the next entry of the mix and the next payload of its pool."""
        self._turn += 1
        entry = self.schedule[self._turn % len(self.schedule)]
        pool = self.pools[entry]
        cursor = self.cursors[entry]
        self.cursors[entry] = cursor + 1  # gevent: no other user runs between the read and the write
        payload = pool[cursor % len(pool)]
        Counter.requests += 1
        error: Exception | None = None
        name = self.names[entry]
        start = time.perf_counter()
        try:
            response = self._infer(payload, timeout=self.timeout_s)
            length = len(response)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            error = InferError(f"{code.name if code else 'UNKNOWN'}: {details}")
            length = 0
            if code == grpc.StatusCode.UNAVAILABLE and is_shed(details or ""):
                name = shed_name(name)  # overload refused by the server: timed apart
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=elapsed_ms,
            response_length=length, exception=error, context=None,
        )
