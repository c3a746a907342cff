"""Windows of Locust statistics: the difference between two snapshots of its counters.

Locust keeps, per request name, counts and a histogram of rounded response times. A snapshot
copies them; the difference of two snapshots is what happened in between, from which a window's
RPS and percentiles follow exactly (to Locust's rounding: 1 ms under 100 ms, 10 ms under 1 s).
Pure functions, no Locust import (importing Locust monkey-patches the process with gevent).

Requests the server *shed* (a queue policy rejected them, or the python-ort runner's
``admit_rows``: ``client.is_shed``) are recorded under their own name, ``shed_name(name)``, so
that a window's latency percentiles are those of the requests it accepted, and how promptly the
rest were refused is measured apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tritonstack.loadtest.campaign.slo import TOTAL

Snapshot = dict[str, dict[str, Any]]  # name -> {"requests", "errors", "sum_ms", "hist": {ms: count}}
PERCENTILES = {"p50_ms": 0.50, "p90_ms": 0.90, "p95_ms": 0.95, "p99_ms": 0.99, "p999_ms": 0.999}
SHED_SUFFIX = " (shed)"


def shed_name(name: str) -> str:
    """The stats name under which ``name``'s shed requests are recorded."""
    return name + SHED_SUFFIX


def is_shed_name(name: str) -> bool:
    return name.endswith(SHED_SUFFIX)


def with_total(counters: Snapshot) -> Snapshot:
    """``counters`` plus the all-traffic rows: TOTAL (accepted) and ``shed_name(TOTAL)``."""
    out = dict(counters)
    for total, shed in ((TOTAL, False), (shed_name(TOTAL), True)):
        parts = [{total: e} for n, e in counters.items() if is_shed_name(n) == shed]
        out[total] = merge(parts).get(total, _empty())
    return out


def _empty() -> dict[str, Any]:
    return {"requests": 0, "errors": 0, "sum_ms": 0.0, "hist": {}}


def snapshot_entry(num_requests: int, num_failures: int, total_ms: float,
                   response_times: Mapping[int, int]) -> dict[str, Any]:
    """One name's counters, copied (Locust's ``StatsEntry`` fields)."""
    return {"requests": int(num_requests), "errors": int(num_failures), "sum_ms": float(total_ms),
            "hist": {int(k): int(v) for k, v in response_times.items()}}


def diff(new: Snapshot, old: Snapshot) -> Snapshot:
    """Counters of ``new`` minus ``old``, per name (names absent from ``old`` start at zero)."""
    out: Snapshot = {}
    for name, entry in new.items():
        before = old.get(name, _empty())
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
            acc = out.setdefault(name, _empty())
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
    """Per name: the metrics SLOs are written against (see ``loadtest.slo.METRICS``).

    A shed request counts in ``requests``, ``rps``, ``errors`` and ``error_rate`` (the caller got
    no answer) but not in the latency metrics, which describe the accepted requests (those that
    failed otherwise included: Locust times them under the same name). ``goodput_rps`` counts the
    answers only.
    """
    rows: dict[str, dict[str, float]] = {}
    for name, entry in window.items():
        if is_shed_name(name):
            continue
        shed = window.get(shed_name(name), _empty())
        accepted, n_shed, hist = entry["requests"], shed["requests"], entry["hist"]
        n, timed = accepted + n_shed, sum(hist.values())
        row = {
            "requests": float(n), "errors": float(entry["errors"] + n_shed),
            "rps": n / duration_s if duration_s > 0 else 0.0,
            "accepted_rps": accepted / duration_s if duration_s > 0 else 0.0,
            "goodput_rps": (accepted - entry["errors"]) / duration_s if duration_s > 0 else 0.0,
            "error_rate": (entry["errors"] + n_shed) / n if n else 0.0,
            "hard_error_rate": entry["errors"] / n if n else 0.0,
            "shed": float(n_shed), "shed_rate": n_shed / n if n else 0.0,
            "shed_p99_ms": percentile(shed["hist"], 0.99),
            "avg_ms": entry["sum_ms"] / timed if timed else 0.0,
            "max_ms": float(max(hist)) if hist else 0.0,
        }
        row.update({key: percentile(hist, q) for key, q in PERCENTILES.items()})
        rows[name] = row
    rows.setdefault(TOTAL, summarize_empty())
    return rows


def summarize_empty() -> dict[str, float]:
    """The metrics of a window with no requests."""
    return {key: 0.0 for key in ("requests", "errors", "rps", "accepted_rps", "goodput_rps", "error_rate",
                                 "hard_error_rate", "shed", "shed_rate", "shed_p99_ms", "avg_ms", "max_ms",
                                 *PERCENTILES)}
