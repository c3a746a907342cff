"""Open-loop pacing of one Locust user: when to send its next request.

Each user sends at ``rate`` requests/s on its own phase; a population of users spread over one
interval offers a smooth aggregate rate. Two things break that spread, and both turn a steady
load into bursts that the server sheds while idle on average:

* a user that fell behind (slow or shed answers) and restarts at *now*: every late user restarts
  on the same instant;
* a rate change that keeps the old phases: after 1,200 rps from 200 users (phases spread over
  1/6 s) a drop to 200 rps (interval 1 s) fires the whole population within the first 1/6 s of
  every second, i.e. at 1,200 rps for 1/6 s and then nothing.

``Pacer`` re-spreads late users at random and, when the rate changes, moves each user to the same
fraction of the new interval that it held in the old one, so the phases stay spread.
"""

from __future__ import annotations

import math
import random


class Pacer:
    """The due time of one user's next request (seconds on the caller's clock)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._due: float | None = None
        self._interval: float | None = None

    def wait(self, now: float, rate: float | None) -> float:
        """Seconds to wait before the next request at ``rate`` per second (None: closed loop)."""
        if rate is None:
            self._due = self._interval = None
            return 0.0
        if rate <= 0:
            return 1.0
        interval = 1.0 / rate
        if self._due is None or self._interval is None:
            self._due = now + self._rng.uniform(0.0, interval)  # spread users over the first interval
        else:
            due = self._due + self._interval
            if due < now - self._interval:
                due = now + self._rng.uniform(0.0, interval)  # late: spread again, never all at `now`
            elif interval != self._interval:
                # Same phase on the new grid: users spread over the old interval stay spread.
                phase = (self._due / self._interval) % 1.0
                due = (math.floor(now / interval) + phase) * interval
                if due < now:
                    due += interval
            self._due = due
        self._interval = interval
        return max(0.0, self._due - now)
