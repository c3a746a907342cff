"""What the router step counts between two publications on Triton's /metrics, from any thread.

Metrics (Python-backend custom metrics, on the same endpoint as Triton's own):

* ``triton_stack_rollout_requests_total{model, version, role, outcome}``: requests answered by
  each version (``ok``, ``error``) and those a failing candidate passed back to the primary
  (``fallback``: the caller got the primary's answer);
* ``triton_stack_rollout_latency_seconds_bucket{model, version, le}`` (and ``_sum``, ``_count``):
  each arm's latency as the router sees it (the model's queue and compute), as the cumulative
  buckets Prometheus' ``histogram_quantile`` reads;
* ``triton_stack_rollout_compared_total{model, version}``, ``..._agreement_sum`` (and
  ``..._agreement_sq_sum``, for its variance) and ``..._distance_sum``: rows answered by both arms
  and how far apart they were (``serving.agreement``), labelled with the candidate's version;
* ``triton_stack_rollout_compare_skipped_total{model, version}``: copies not sent because the
  comparisons already in flight were at their bound (they never queue behind each other).
"""

from __future__ import annotations

import bisect
import collections
import threading

import numpy as np

LATENCY_BUCKETS_S = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
                     0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, float("inf"))


def bucket_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:g}"


class Tally:
    """Counts since the last ``drain``, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.requests: collections.Counter = collections.Counter()  # (version, role, outcome)
        self.buckets: collections.Counter = collections.Counter()   # (version, bucket index)
        self.latency_sum: collections.Counter = collections.Counter()  # version -> seconds
        self.compared: collections.Counter = collections.Counter()  # version -> rows
        self.agreement_sum: collections.Counter = collections.Counter()
        self.agreement_sq_sum: collections.Counter = collections.Counter()
        self.distance_sum: collections.Counter = collections.Counter()
        self.skipped: collections.Counter = collections.Counter()

    def served(self, version: int, role: str, outcome: str, n: int, seconds: float) -> None:
        with self._lock:
            self.requests[(version, role, outcome)] += n
            if outcome != "fallback":
                self.buckets[(version, bisect.bisect_left(LATENCY_BUCKETS_S, seconds))] += n
                self.latency_sum[version] += seconds * n

    def agreement(self, candidate: int, agree: np.ndarray, distance: np.ndarray) -> None:
        with self._lock:
            self.compared[candidate] += int(agree.size)
            self.agreement_sum[candidate] += float(agree.sum())
            self.agreement_sq_sum[candidate] += float(np.square(agree).sum())
            self.distance_sum[candidate] += float(distance.sum())

    def skip(self, candidate: int, n: int) -> None:
        with self._lock:
            self.skipped[candidate] += n

    def drain(self) -> Tally:
        """A copy of the counts so far; the tally starts again from zero."""
        with self._lock:
            out = Tally.__new__(Tally)
            out.__dict__.update({k: v for k, v in self.__dict__.items() if k != "_lock"})
            self._reset()
        return out

    def cumulative_buckets(self) -> dict[int, list[int]]:
        """version -> count at or under each bound of ``LATENCY_BUCKETS_S``."""
        per_version: dict[int, list[int]] = {}
        for (version, index), n in self.buckets.items():
            per_version.setdefault(version, [0] * len(LATENCY_BUCKETS_S))[index] += n
        return {v: list(np.cumsum(counts)) for v, counts in per_version.items()}

    def empty(self) -> bool:
        return not (self.requests or self.compared or self.skipped)
