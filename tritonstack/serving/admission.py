"""Which of a batch's requests one execution computes under overload, and what the rest are told.

Triton hands a Python-backend instance more rows than it was asked to compute at once only when
requests queued faster than the instances took them. The runner then serves the newest requests
that fit and refuses the oldest before any compute (:func:`admitted`). What fits is a cap in rows
(``admit_rows``), a budget in milliseconds (``admit_ms``), or both, the smaller winning.

A budget in milliseconds is the same promise on every CPU. It bounds a served request's time in
the model, its wait in the queue plus the execution that serves it, and becomes rows through this
instance's own cost per row, measured on its executions as they ran, contention included
(:class:`ExecutionTime`). A cap in rows is one CPU's figure: 32 rows of MiniLM take about 40 ms
on an Intel Xeon under load and twice that on an AMD EPYC Zen 4 (docs/benchmarks.md, "Admission
in milliseconds").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: What a refusal under overload says; clients match it (``client.is_shed``).
SHED_MESSAGE = "overloaded: more rows queued than the model computes at once"


def admitted(rows: Sequence[int], limit: int) -> int:
    """How many of a batch's requests (oldest first, as Triton hands them) one execution serves:
    the newest ones whose rows fit in ``limit``, and always the newest one (a request larger
    than ``limit`` is served alone rather than never). ``limit`` 0 serves all.

    The newest rather than the oldest: under overload the oldest have waited longest, so
    serving the newest keeps the latency of what is served lowest, and a refused caller that
    tries again joins the back of the queue instead of being refused forever.
    """
    if limit <= 0:
        return len(rows)
    total = served = 0
    for n in reversed(rows):
        if served and total + n > limit:
            break
        total += n
        served += 1
    return served


class ExecutionTime:
    """Seconds one execution of this instance takes for n rows, learnt from its own executions.

    Two figures, each over recent executions (each weighing ``decay`` times less than the next):

    * the CPU an execution costs, as ``fixed + per_row * n``: a least-squares line. The fixed
      part matters: four short sentences cost MiniLM about as much again as their rows (ONNX
      Runtime's run, Python, IPC), so a plain time per row measured at light load would admit
      too few rows when a burst comes. CPU time, not wall time, because a small execution's
      wall time is mostly whether another process took the core meanwhile: fitted on wall
      time, preempted small executions made a line of 8-9 ms a row, and the runner refused
      bursts it had time for. Where the recent executions all had about the same size (steady
      overload), the line is not determined, and their mean CPU per row at that size is used;
    * ``stretch``: wall time over CPU time (1 on an idle machine; 1.06-1.26 for MiniLM's two
      instances sharing an AMD EPYC Zen 4's two cores with tritonserver and Locust). Latency is
      wall time, so the CPU a budget allows is the budget over the stretch.
    """

    #: An instance's first executions (Triton's warmup, the first requests) pay for cold caches
    #: and lazy setup: one took 5 ms of CPU a row where later ones took 1.9, and the budget then
    #: refused perf_analyzer's 8 callers. They are not counted.
    COLD_EXECUTIONS = 3
    #: Below this many rows on average, the mean time per row carries the fixed part of an
    #: execution several times over, so it says nothing about a larger batch.
    MEAN_FROM_ROWS = 8

    def __init__(self, decay: float = 0.95, cold: int = COLD_EXECUTIONS):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.cold = cold
        self.w = self.n = self.t = self.nn = self.nt = self.wall = 0.0

    def observe(self, rows: int, seconds: float, cpu_seconds: float | None = None) -> None:
        """An execution of ``rows`` rows that took ``seconds`` of wall time and ``cpu_seconds``
        of this process's CPU (None: wall time alone, as on a core of its own)."""
        cpu = seconds if cpu_seconds is None else cpu_seconds
        if rows <= 0 or not all(math.isfinite(x) and x >= 0 for x in (seconds, cpu)) or cpu == 0:
            return  # an execution that computed nothing says nothing about the cost of a row
        if self.cold:
            self.cold -= 1
            return
        d = self.decay
        self.w = d * self.w + 1.0
        self.n = d * self.n + rows
        self.t = d * self.t + cpu
        self.nn = d * self.nn + rows * rows
        self.nt = d * self.nt + rows * cpu
        self.wall = d * self.wall + seconds

    @property
    def stretch(self) -> float:
        """Wall time per second of CPU (at least 1)."""
        return max(1.0, self.wall / self.t) if self.t else 1.0

    def line(self) -> tuple[float, float] | None:
        """``(fixed, per_row)`` seconds of CPU, or None while nothing measured tells what a
        larger execution costs (then the budget refuses nothing)."""
        if not self.n:
            return None
        spread = self.w * self.nn - self.n * self.n  # W^2 x the variance of the rows
        if spread >= self.w * self.w:  # rows vary by a row or more: the line is determined
            per_row = (self.w * self.nt - self.n * self.t) / spread
            fixed = (self.t - per_row * self.n) / self.w
            if per_row > 0 and fixed >= 0:
                return fixed, per_row
            if per_row > 0:  # a fixed part under 0 is noise around none: the line through 0
                return 0.0, self.nt / self.nn
        if self.n >= self.MEAN_FROM_ROWS * self.w:  # one size, a large one: its mean per row
            return 0.0, self.t / self.n
        return None

    def rows_within(self, seconds: float) -> int | None:
        """The most rows one execution computes in ``seconds`` of wall time (at least 1), or None."""
        line = self.line()
        if line is None:
            return None
        fixed, per_row = line
        return max(1, int((seconds / self.stretch - fixed) / per_row))


class Admission:
    """The row limit of the next execution: ``max_rows`` (0 = none), and what ``budget_ms``
    (0 = none) leaves for computing at the measured cost of a row.

    ``budget_ms`` bounds a served request's time in the model: its wait in the queue plus the
    execution that serves it. The wait is bounded by this instance's previous execution when
    the batch comes right after it (what queued meanwhile), and is about nothing when the
    instance sat idle first (the batcher hands an idle instance a request as it comes). So a
    burst onto an idle instance gets the whole budget, and under steady overload executions
    settle at about half of it. The budget refuses nothing until the executions measured tell
    what a larger one costs (:meth:`ExecutionTime.line`)."""

    def __init__(self, max_rows: int = 0, budget_ms: float = 0.0, decay: float = 0.95,
                 cold: int = ExecutionTime.COLD_EXECUTIONS):
        if max_rows < 0 or not (math.isfinite(budget_ms) and budget_ms >= 0):
            raise ValueError(f"admit_rows must be >= 0 and admit_ms a finite number >= 0, got "
                             f"{max_rows} and {budget_ms}")
        self.max_rows = max_rows
        self.budget_ms = budget_ms
        self.time = ExecutionTime(decay, cold)
        self.last_end: float | None = None  # when the previous execution ended (perf_counter s)
        self.last_wall = 0.0  # and how long it took
        self.waited = 0.0  # the longest wait of the current batch, as limit() bounded it
        self.by_budget = 0  # the rows the budget left for it (0: none learnt yet)

    def limit(self, now: float | None = None) -> int:
        """Rows the execution starting at ``now`` (perf_counter seconds) computes at most (0 = all)."""
        limits = [self.max_rows] if self.max_rows else []
        if self.budget_ms:
            gap = (now - self.last_end) if now is not None and self.last_end is not None else math.inf
            self.waited = max(0.0, self.last_wall - gap)
            self.by_budget = self.time.rows_within(self.budget_ms / 1000.0 - self.waited) or 0
            if self.by_budget:
                limits.append(self.by_budget)
        return min(limits, default=0)

    def observe(self, rows: int, seconds: float, cpu_seconds: float | None = None,
                end: float | None = None) -> None:
        """An execution that computed ``rows`` rows and ended at ``end`` (perf_counter seconds)."""
        if self.budget_ms:
            self.time.observe(rows, seconds, cpu_seconds)
            self.last_end, self.last_wall = end, seconds

    def why(self) -> str:
        """What set the last limit, for the refusal's message."""
        if self.by_budget and (not self.max_rows or self.by_budget < self.max_rows):
            fixed, per_row = self.time.line() or (0.0, 0.0)  # a limit by the budget had a line
            return (f"admit_ms {self.budget_ms:g} of which {self.waited * 1000:.1f} waited: "
                    f"{fixed * 1000:.2f} ms + {per_row * 1000:.2f} ms of CPU a row x "
                    f"{self.time.stretch:.2f} wall/CPU measured here")
        return "admit_rows"
