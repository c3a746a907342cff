"""An adaptive limit on the requests one client has in flight to each replica (AIMD).

Without it, a service with 64 callers sends 64 requests at once however loaded the server is;
those past the server's queue are refused (OVERLOADED), and callers that try again at once keep
the server busy refusing. With it, the client holds the excess itself: the limit grows by one
request per limit's worth of successes (additive increase) and halves on a refusal
(multiplicative decrease), the rule TCP uses for its congestion window, once per window: the
refusals of requests already in flight when it came down do not bring it down again (a server
that sheds a batch's worth of requests at once, as the python-ort runner's ``admit_rows`` does,
drove the limit to one: 790 answers/s against 833 with the rule; storm_bench, 64 callers, AMD
Zen 5). A gentler decrease (0.9) served more there (898/s) but came down too slowly for a
server that queues two requests (tests/client/test_limit.py). A caller over the limit waits
for a slot, within its own deadline.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time


class AimdLimit:
    """The arithmetic: ``limit`` requests may be in flight; pure, so it is tested alone."""

    def __init__(self, initial: float = 4.0, minimum: float = 1.0, maximum: float = 64.0,
                 decrease: float = 0.5) -> None:
        self.limit = float(initial)
        self.minimum = float(minimum)
        self.maximum = float(maximum)
        self.decrease = decrease
        self.in_flight = 0
        # Requests in flight when the limit last came down: their refusals are the same
        # congestion, already answered by that decrease (counted down as any request ends).
        self.unsettled = 0

    @property
    def has_room(self) -> bool:
        return self.in_flight < max(int(self.limit), 1)

    def succeeded(self) -> None:
        self.limit = min(self.maximum, self.limit + 1.0 / self.limit)

    def overloaded(self) -> None:
        self.limit = max(self.minimum, self.limit * self.decrease)

    def finished(self, overloaded: bool | None) -> None:
        """A request left: True refused, False answered, None another outcome (no change)."""
        self.in_flight -= 1
        same_window = self.unsettled > 0
        if same_window:
            self.unsettled -= 1
        if overloaded is True and not same_window:
            self.overloaded()
            self.unsettled = self.in_flight
        elif overloaded is False:
            self.succeeded()


class Gate:
    """An :class:`AimdLimit` shared by threads: ``enter`` waits for room until a deadline.

    Waiters are served first come, first served: a freed slot goes to the longest waiting caller
    (with a plain condition variable, whichever thread woke first took it, and the unlucky
    callers' p99 grew to 0.8 s in the storm benchmark).
    """

    def __init__(self, maximum: int) -> None:
        self.limit = AimdLimit(maximum=maximum)
        self._lock = threading.Lock()
        self._waiters: collections.deque[threading.Event] = collections.deque()

    def enter(self, deadline: float) -> bool:
        with self._lock:
            if self.limit.has_room and not self._waiters:
                self.limit.in_flight += 1
                return True
            ticket = threading.Event()
            self._waiters.append(ticket)
        granted = ticket.wait(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            if ticket.is_set():  # granted, possibly just as the wait timed out
                return True
            self._waiters.remove(ticket)
            return granted

    def leave(self, overloaded: bool | None) -> None:
        """``overloaded``: True refused, False answered, None another outcome (no change)."""
        with self._lock:
            self.limit.finished(overloaded)
            while self._waiters and self.limit.has_room:  # the slot passes to the next in line
                self.limit.in_flight += 1
                self._waiters.popleft().set()


class AsyncGate:
    """The same for coroutines on one event loop, first come, first served."""

    def __init__(self, maximum: int) -> None:
        self.limit = AimdLimit(maximum=maximum)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def enter(self, deadline: float) -> bool:
        if self.limit.has_room and not self._waiters:
            self.limit.in_flight += 1
            return True
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(ticket)
        try:
            await asyncio.wait_for(asyncio.shield(ticket), max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            if ticket.done():  # granted just as the wait timed out
                return True
            self._waiters.remove(ticket)
            ticket.cancel()
            return False
        return True

    async def leave(self, overloaded: bool | None) -> None:
        self.limit.finished(overloaded)
        while self._waiters and self.limit.has_room:
            self.limit.in_flight += 1
            self._waiters.popleft().set_result(None)
