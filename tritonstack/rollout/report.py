"""The A/B report: per arm requests, errors, latency percentiles and agreement over one window,
with the comparison as numbers and their uncertainty:

* p50 / p99 difference (candidate - primary) with a 95 % bootstrap interval, resampling each arm's
  latency histogram (multinomial over its buckets, 2,000 times);
* each arm's error rate with a 95 % Wilson interval, and their difference with Newcombe's hybrid
  score interval (built from the two Wilson intervals; a Wald interval collapses to [0, 0] at zero
  errors) and a two-proportion z-test;
* "not worse" when the intervals' upper ends stay under the margins (``Margins``).

Written as report.md and report.json under ``reports/rollout/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from tritonstack.rollout.metrics import Snapshot, bucket_quantile, resampled_quantile
from tritonstack.serving.split import Split


@dataclasses.dataclass(frozen=True)
class Margins:
    p99_ms: float = 5.0  # the candidate may be this much slower at p99 and still be "not worse"
    error_rate: float = 0.005


def bootstrap_diff(a: dict[float, float], b: dict[float, float], q: float,
                   rng: np.random.Generator) -> tuple[float, float, float] | None:
    """(b - a at quantile q, 2.5 %, 97.5 %) in seconds; None without data on either side."""
    ra, rb = resampled_quantile(a, q, rng), resampled_quantile(b, q, rng)
    pa, pb = bucket_quantile(a, q), bucket_quantile(b, q)
    if ra is None or rb is None or pa is None or pb is None:
        return None
    lo, hi = np.nanpercentile(rb - ra, [2.5, 97.5])
    return float(pb - pa), float(lo), float(hi)


Z95 = 1.959963984540054  # the normal quantile of a two-sided 95 % interval


def wilson(failed: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``failed`` / ``n`` (default 95 %).

    Unlike the Wald interval it does not collapse at 0 or n: 0 failures out of 100 give
    [0, 0.037], the honest "no error seen in 100 requests" rather than [0, 0]. ``n`` = 0: [0, 1].
    """
    if n <= 0:
        return 0.0, 1.0
    p = failed / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if failed <= 0 else max(0.0, centre - spread)  # exact ends, not 1e-18 of rounding
    high = 1.0 if failed >= n else min(1.0, centre + spread)
    return low, high


def newcombe(failed_a: int, n_a: int, failed_b: int, n_b: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10) of the difference b - a of two proportions,
    from each one's Wilson interval: it keeps its coverage at 0 errors and at small counts."""
    pa, pb = (failed_a / n_a if n_a else 0.0), (failed_b / n_b if n_b else 0.0)
    la, ua = wilson(failed_a, n_a, z)
    lb, ub = wilson(failed_b, n_b, z)
    d = pb - pa
    return (d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2),
            d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2))


def two_proportions(failed_a: int, n_a: int, failed_b: int, n_b: int) -> dict:
    """Difference of error rates (b - a) with a 95 % Newcombe hybrid score interval, each rate's
    95 % Wilson interval, and the pooled two-proportion z-test."""
    pa, pb = (failed_a / n_a if n_a else 0.0), (failed_b / n_b if n_b else 0.0)
    pooled = (failed_a + failed_b) / max(n_a + n_b, 1)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / max(n_a, 1) + 1 / max(n_b, 1)))
    z = (pb - pa) / se0 if se0 > 0 else 0.0
    low, high = newcombe(failed_a, n_a, failed_b, n_b)
    return {"difference": pb - pa, "low": low, "high": high, "method": "Newcombe hybrid score (Wilson)",
            "primary_interval": list(wilson(failed_a, n_a)), "candidate_interval": list(wilson(failed_b, n_b)),
            "z": z, "p_value": math.erfc(abs(z) / math.sqrt(2))}


def summarize(window: Snapshot, split: Split, kind: str, seconds: float, margins: Margins = Margins(),
              seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arms = {}
    for arm, version in (("primary", split.primary), ("candidate", split.candidate)):
        if version is None:
            continue
        ok, failed = window.answered(version), window.failed(version)
        latency = {f"p{int(q * 100)}_ms": (None if (v := window.quantile(version, q)) is None else v * 1000)
                   for q in (0.5, 0.9, 0.99)}
        arms[arm] = {"version": version, "requests": ok + failed, "answered": ok, "failed": failed,
                     "error_rate": failed / (ok + failed) if ok + failed else None,
                     "mean_ms": window.latency_sum[version] / ok * 1000 if ok else None,
                     **latency, "triton_batches": int(window.triton_success.get(version, 0)),
                     "triton_failures": int(window.triton_failure.get(version, 0))}
    result: dict = {"model": split.model, "mode": split.mode, "weight": split.weight,
                    "compare": split.compare, "kind": kind, "seconds": round(seconds, 1), "arms": arms,
                    "margins": dataclasses.asdict(margins)}
    if split.candidate is not None:
        c = split.candidate
        result["agreement"] = {"compared": int(window.compared.get(c, 0)),
                               "mean": window.mean_agreement(c), "mean_distance": window.mean_distance(c),
                               "skipped": int(window.skipped.get(c, 0))}
        a, b = window.buckets.get(split.primary, {}), window.buckets.get(c, {})
        comparison: dict = {}
        for q in (0.5, 0.99):
            diff = bootstrap_diff(a, b, q, rng)
            comparison[f"p{int(q * 100)}_diff_ms"] = (None if diff is None else
                                                      {"difference": diff[0] * 1000, "low": diff[1] * 1000,
                                                       "high": diff[2] * 1000})
        pa, pc = arms["primary"], arms["candidate"]
        comparison["error_rate"] = two_proportions(pa["failed"], pa["requests"], pc["failed"], pc["requests"])
        p99 = comparison["p99_diff_ms"]
        comparison["not_worse"] = bool(
            p99 is not None and p99["high"] <= margins.p99_ms
            and comparison["error_rate"]["high"] <= margins.error_rate)
        result["comparison"] = comparison
    return result


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(summary: dict, steps: list[dict] | None = None, verdict: str = "") -> str:
    lines = [f"# Rollout report: {summary['model']} ({summary['mode']})", ""]
    if verdict:
        lines += [f"**{verdict}**", ""]
    lines += [f"Window: {summary['seconds']:.0f} s; candidate share {summary['weight']:g} %, compared "
              f"{summary['compare']:g} % of requests; output kind: {summary['kind']}.", "",
              "| arm | version | requests | failed | error rate (95 % Wilson) | mean ms | p50 ms | p90 ms | p99 ms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arm, a in summary["arms"].items():
        rate = "–" if a["error_rate"] is None else f"{a['error_rate']:.2%}"
        if a["error_rate"] is not None:
            low, high = wilson(a["failed"], a["requests"])
            rate += f" ({low:.2%} … {high:.2%})"
        lines.append(f"| {arm} | {a['version']} | {a['requests']} | {a['failed']} | {rate} | "
                     f"{_ms(a['mean_ms'])} | {_ms(a['p50_ms'])} | {_ms(a['p90_ms'])} | {_ms(a['p99_ms'])} |")
    lines.append("")
    lines.append("Latency is each arm's as the router sees it (the model's queue and compute), from "
                 "`triton_stack_rollout_latency_seconds_bucket`; requests and failures from "
                 "`triton_stack_rollout_requests_total` (a candidate failure the primary answered "
                 "counts as the candidate's).")
    if "agreement" in summary:
        ag = summary["agreement"]
        mean = "–" if ag["mean"] is None else f"{ag['mean']:.4f}"
        dist = "–" if ag["mean_distance"] is None else f"{ag['mean_distance']:.4f}"
        lines += ["", "## Agreement with the primary", "",
                  f"{ag['compared']} rows answered by both arms: mean agreement **{mean}**, mean "
                  f"distance {dist} ({ag['skipped']} copies skipped at the bound on comparisons in "
                  "flight)."]
    if "comparison" in summary:
        comp, m = summary["comparison"], summary["margins"]
        lines += ["", "## Candidate against primary", "", "| measure | candidate - primary | 95 % interval |",
                  "|---|---:|---:|"]
        for q in ("p50", "p99"):
            d = comp[f"{q}_diff_ms"]
            if d is not None:
                lines.append(f"| {q} latency (bootstrap) | {d['difference']:+.2f} ms | "
                             f"{d['low']:+.2f} … {d['high']:+.2f} ms |")
        e = comp["error_rate"]
        lines.append(f"| error rate (Newcombe interval; z-test p = {e['p_value']:.3g}) | "
                     f"{e['difference']:+.2%} | {e['low']:+.2%} … {e['high']:+.2%} |")
        lines += ["", ("**Not worse** than the primary" if comp["not_worse"] else
                       "**Not shown to be no worse** than the primary")
                  + f": margins {m['p99_ms']:g} ms at p99 and {m['error_rate']:.1%} errors, judged "
                  "on the intervals' upper ends."]
    if steps:
        lines += ["", "## Steps", "", "| time | event | detail |", "|---|---|---|"]
        for ev in steps:
            detail = ", ".join(f"{k}={v}" for k, v in ev.items() if k not in ("time", "event"))
            when = time.strftime("%H:%M:%S", time.localtime(ev["time"]))
            lines.append(f"| {when} | {ev['event']} | {detail} |")
    return "\n".join(lines) + "\n"


def write(out_root: Path, summary: dict, steps: list[dict] | None = None, verdict: str = "") -> Path:
    folder = Path(out_root) / f"{summary['model']}-{summary['mode']}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(markdown(summary, steps, verdict))
    (folder / "report.json").write_text(json.dumps({**summary, "steps": steps or [], "verdict": verdict},
                                                   indent=2, default=str) + "\n")
    return folder / "report.md"
