"""Replica choice, retry decisions and backoff, shared by the sync and asyncio clients.

The policy: every call has one deadline (``timeout_s``) that covers all its attempts. An
attempt that fails with a retryable status is retried on the next replica in round-robin
order; a replica that was unreachable is skipped for ``failover_cooldown_s``. When no untried
healthy replica is left, the client waits an exponential backoff with full jitter before the
next attempt. Inference is treated as idempotent (a model call has no side effects), so a
request lost with a dropped connection is safe to send again.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from tritonstack.client._config import ClientConfig
from tritonstack.client._errors import SHED_STATUSES, AttemptFailed, ClientError, Status, failure


def backoff_s(retry: int, config: ClientConfig, draw: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): full jitter under the cap."""
    cap = min(config.backoff_max_s, config.backoff_initial_s * config.backoff_multiplier ** (retry - 1))
    return cap * draw()


def retryable(status: Status, config: ClientConfig) -> bool:
    """Whether a failed attempt with ``status`` may be sent again."""
    if status is Status.UNAVAILABLE:
        return True
    return config.retry_overloaded and status in SHED_STATUSES


class Endpoints:
    """Round-robin over replicas, skipping those that recently failed to connect."""

    def __init__(self, urls: tuple[str, ...], cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.urls = urls
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._down_until = [0.0] * len(urls)
        self._next = 0
        self._lock = threading.Lock()

    def pick(self, tried: set[int]) -> int:
        """The next replica: healthy and untried first, then untried, then any."""
        n = len(self.urls)
        if n == 1:
            return 0
        now = self._clock()
        with self._lock:
            start = self._next
            order = [(start + k) % n for k in range(n)]
            choice = next((i for i in order if i not in tried and self._down_until[i] <= now), None)
            if choice is None:
                choice = next((i for i in order if i not in tried), None)
            if choice is None:
                choice = min(order, key=lambda i: self._down_until[i])
            self._next = (choice + 1) % n
            return choice

    def healthy_untried(self, tried: set[int]) -> bool:
        now = self._clock()
        return any(i not in tried and self._down_until[i] <= now for i in range(len(self.urls)))

    def mark_down(self, index: int) -> None:
        self._down_until[index] = self._clock() + self._cooldown_s

    def mark_up(self, index: int) -> None:
        if self._down_until[index]:
            self._down_until[index] = 0.0


class Attempts:
    """The retry loop's state for one call: which replica next, how long it may take, and
    whether a failure ends the call (raises ClientError) or is retried after a delay."""

    __slots__ = ("_config", "_endpoints", "deadline", "_what", "_model", "_timeout_s",
                 "count", "_tried")

    def __init__(self, config: ClientConfig, endpoints: Endpoints, deadline: float,
                 timeout_s: float, what: str, model: str | None) -> None:
        self._config = config
        self._endpoints = endpoints
        self.deadline = deadline
        self._timeout_s = timeout_s
        self._what = what
        self._model = model
        self.count = 0
        self._tried: set[int] = set()

    def next(self) -> tuple[int, float]:
        """(replica index, seconds left) for the next attempt."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ClientError(Status.DEADLINE_EXCEEDED,
                              f"{self._what}: no answer within the {self._timeout_s:g} s deadline"
                              + (f" (after {self.count} attempts)" if self.count > 1 else ""),
                              model=self._model, attempts=self.count)
        self.count += 1
        index = self._endpoints.pick(self._tried)
        return index, remaining

    def succeeded(self, index: int) -> None:
        self._endpoints.mark_up(index)

    def failed(self, index: int, exc: AttemptFailed) -> float:
        """Seconds to wait before the next attempt; raises the mapped ClientError if none."""
        error = failure(exc.status, exc.details, what=self._what, url=self._endpoints.urls[index],
                        model=self._model, attempts=self.count, timeout_s=self._timeout_s)
        if error.status is Status.UNAVAILABLE:
            self._endpoints.mark_down(index)
        if not retryable(error.status, self._config) or self.count > self._config.retries:
            raise error from None
        self._tried.add(index)
        if self._endpoints.healthy_untried(self._tried):
            return 0.0
        self._tried.clear()
        delay = backoff_s(self.count, self._config)
        if time.monotonic() + delay >= self.deadline:
            raise error from None
        return delay
