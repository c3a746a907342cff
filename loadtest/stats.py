"""Windows of Locust statistics: the difference between two snapshots of its counters.

Locust keeps, per request name, counts and a histogram of rounded response times. A snapshot
copies them; the difference of two snapshots is what happened in between, from which a window's
RPS and percentiles follow exactly (to Locust's rounding: 1 ms under 100 ms, 10 ms under 1 s).
Pure functions, no Locust import (importing Locust monkey-patches the process with gevent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadtest.slo import TOTAL

Snapshot = dict[str, dict[str, Any]]  # name -> {"requests", "errors", "sum_ms", "hist": {ms: count}}
PERCENTILES = {"p50_ms": 0.50, "p90_ms": 0.90, "p95_ms": 0.95, "p99_ms": 0.99, "p999_ms": 0.999}


def snapshot_entry(num_requests: int, num_failures: int, total_ms: float,
                   response_times: Mapping[int, int]) -> dict[str, Any]:
    """One name's counters, copied (Locust's ``StatsEntry`` fields)."""
    return {"requests": int(num_requests), "errors": int(num_failures), "sum_ms": float(total_ms),
            "hist": {int(k): int(v) for k, v in response_times.items()}}


def diff(new: Snapshot, old: Snapshot) -> Snapshot:
    """Counters of ``new`` minus ``old``, per name (names absent from ``old`` start at zero)."""
    out: Snapshot = {}
    for name, entry in new.items():
        before = old.get(name, {"requests": 0, "errors": 0, "sum_ms": 0.0, "hist": {}})
        old_hist = {int(k): v for k, v in before["hist"].items()}
        hist = {}
        for k, v in entry["hist"].items():
            if delta := v - old_hist.get(int(k), 0):
                hist[int(k)] = delta
        out[name] = {"requests": entry["requests"] - before["requests"],
                     "errors": entry["errors"] - before["errors"],
                     "sum_ms": entry["sum_ms"] - before["sum_ms"], "hist": hist}
    return out


def merge(parts: list[Snapshot]) -> Snapshot:
    """Sum several windows' counters (the SLO window is the union of the measured stages)."""
    out: Snapshot = {}
    for part in parts:
        for name, entry in part.items():
            acc = out.setdefault(name, {"requests": 0, "errors": 0, "sum_ms": 0.0, "hist": {}})
            acc["requests"] += entry["requests"]
            acc["errors"] += entry["errors"]
            acc["sum_ms"] += entry["sum_ms"]
            for k, v in entry["hist"].items():
                acc["hist"][int(k)] = acc["hist"].get(int(k), 0) + v
    return out


def percentile(hist: Mapping[int, int], fraction: float) -> float:
    """The response time that ``fraction`` of the requests finished within (Locust's definition)."""
    total = sum(hist.values())
    if not total:
        return 0.0
    wanted, seen = int(total * fraction), 0
    for ms in sorted(hist, reverse=True):
        seen += hist[ms]
        if total - seen <= wanted:
            return float(ms)
    return 0.0


def summarize(window: Snapshot, duration_s: float) -> dict[str, dict[str, float]]:
    """Per name: the metrics SLOs are written against (see ``loadtest.slo.METRICS``)."""
    rows: dict[str, dict[str, float]] = {}
    for name, entry in window.items():
        n, hist = entry["requests"], entry["hist"]
        timed = sum(hist.values())
        row = {
            "requests": float(n), "errors": float(entry["errors"]),
            "rps": n / duration_s if duration_s > 0 else 0.0,
            "error_rate": entry["errors"] / n if n else 0.0,
            "avg_ms": entry["sum_ms"] / timed if timed else 0.0,
            "max_ms": float(max(hist)) if hist else 0.0,
        }
        row.update({key: percentile(hist, q) for key, q in PERCENTILES.items()})
        rows[name] = row
    rows.setdefault(TOTAL, summarize_empty())
    return rows


def summarize_empty() -> dict[str, float]:
    """The metrics of a window with no requests."""
    return {"requests": 0.0, "errors": 0.0, "rps": 0.0, "error_rate": 0.0, "avg_ms": 0.0, "max_ms": 0.0,
            **{key: 0.0 for key in PERCENTILES}}
