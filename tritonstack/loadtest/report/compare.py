"""``python -m tritonstack.loadtest compare RUN_A RUN_B``: did B get slower? A side-by-side report with gates.

For each traffic entry both runs measured (and the all-traffic row), it compares throughput and
p99 latency of B against A and fails (exit 1) when B's p99 rose by more than
``--max-p99-regression`` or its throughput fell by more than ``--max-rps-regression``.

Noise: where both runs recorded repeated windows (campaign stages with ``window_s``), each metric
is the mean over the windows and the change gets a 95 % interval:

* at least ``BOOTSTRAP_MIN_WINDOWS`` (8) windows in each run: a percentile bootstrap interval;
* 2 to 7 windows in a run: a Welch t-interval of the difference of the means (t quantiles for its
  Welch-Satterthwaite degrees of freedom, rounded down), divided by A's mean. A bootstrap of
  fewer than 8 values understates the spread (it never resamples beyond the values seen), so
  it called differences "within noise" or significant on too little evidence;
* one window in a run: no interval; the change is a single measurement, "inconclusive".

A change whose interval includes zero is marked "within noise"; the gate uses the point estimate
either way, so a failed gate says whether the runs could tell. Both runs are read through the one
summary type (report.summary); when they ran on different CPUs (or core counts, or GPUs) the report
warns that the change mixes the machine with the code.

Writes ``compare.md`` and a self-contained ``compare.html`` into ``--out`` (default
``reports/compare/A-vs-B``). Exit codes: 0 no bound crossed, 1 a bound crossed, 2 bad input.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import random
from pathlib import Path

from tritonstack.loadtest.campaign.slo import TOTAL
from tritonstack.loadtest.errors import CampaignError
from tritonstack.loadtest.report.summary import Summary, read

METRICS = (("rps", "throughput (rps)", -1), ("p99_ms", "p99 (ms)", +1))  # +1: higher is worse
BOOTSTRAP_MIN_WINDOWS = 8
# two-sided 95 %: t quantile 0.975 by degrees of freedom (beyond the table: the normal's 1.96)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
_T975_BEYOND = ((40, 2.021), (60, 2.000), (120, 1.980))


def t975(df: float) -> float:
    """The 97.5 % quantile of Student's t at ``df`` degrees of freedom rounded down (conservative)."""
    whole = max(1, math.floor(df))
    if whole <= len(_T975):
        return _T975[whole - 1]
    for limit, value in reversed(_T975_BEYOND):
        if whole >= limit:
            return value
    return _T975[-1]


@dataclasses.dataclass(frozen=True)
class Change:
    traffic: str
    metric: str
    a: float
    b: float
    change: float  # (b - a) / a
    interval: tuple[float, float] | None  # 95 % interval of the change, when windows allow
    method: str | None  # "bootstrap" (>= 8 windows each), "welch-t" (2-7), None (one window)
    windows: tuple[int, int]
    worse: bool
    bound: float | None
    crossed: bool

    @property
    def noise(self) -> bool:
        return self.interval is not None and self.interval[0] <= 0 <= self.interval[1]

    @property
    def inconclusive(self) -> bool:
        """No interval: a single measurement per run cannot tell a change from noise."""
        return self.interval is None

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self) | {"within_noise": self.noise, "inconclusive": self.inconclusive}


def load_run(run: str | Path) -> Summary:
    """A run's summary (RUN is its report folder or its summary.json)."""
    return read(run)


def _windows(summary: Summary, traffic: str, metric: str) -> list[float]:
    values = []
    for window in summary.windows:
        value = ((window.get("stats") or {}).get(traffic) or {}).get(metric)
        if isinstance(value, int | float) and (window.get("stats") or {}).get(traffic, {}).get("requests", 1):
            values.append(float(value))
    return values


def _bootstrap(a: list[float], b: list[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    mean_a = sum(a) / len(a)
    changes = []
    for _ in range(rounds):
        ra = [rng.choice(a) for _ in a]
        rb = [rng.choice(b) for _ in b]
        base = sum(ra) / len(ra) or mean_a or 1.0
        changes.append((sum(rb) / len(rb) - base) / base)
    changes.sort()
    return changes[int(0.025 * rounds)], changes[int(0.975 * rounds) - 1]


def welch_interval(a: list[float], b: list[float]) -> tuple[float, float]:
    """95 % Welch t-interval of (mean b - mean a) / mean a, A's mean taken as the fixed base."""
    def mean_var(xs: list[float]) -> tuple[float, float]:
        m = sum(xs) / len(xs)
        return m, sum((x - m) ** 2 for x in xs) / (len(xs) - 1)

    ma, va = mean_var(a)
    mb, vb = mean_var(b)
    sa, sb = va / len(a), vb / len(b)
    se = math.sqrt(sa + sb)
    diff = mb - ma
    if se == 0:
        half = 0.0
    else:
        df = (sa + sb) ** 2 / ((sa ** 2 / (len(a) - 1) if sa else 0.0) + (sb ** 2 / (len(b) - 1) if sb else 0.0))
        half = t975(df) * se
    return (diff - half) / ma, (diff + half) / ma


def parse_percent(text: str | None) -> float | None:
    """``10%`` or ``0.1`` -> 0.1."""
    if text is None:
        return None
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise CampaignError(f"{text!r} is not a percentage (e.g. 10%)") from None
    if not 0 <= value <= 10:
        raise CampaignError(f"{text!r}: a regression bound must be between 0% and 1000%")
    return value


def compare(a: Summary, b: Summary, *, max_p99: float | None, max_rps: float | None) -> list[Change]:
    stats_a, stats_b = a.stats, b.stats
    shared = [t for t in stats_a if t in stats_b]
    if not shared:
        raise CampaignError("the two runs share no traffic entry; compare runs of the same campaign")
    shared.sort(key=lambda t: (t != TOTAL, t))
    changes = []
    for traffic in shared:
        for metric, _, direction in METRICS:
            va, vb = stats_a[traffic].get(metric), stats_b[traffic].get(metric)
            if not isinstance(va, int | float) or not isinstance(vb, int | float) or va == 0:
                continue
            wa, wb = _windows(a, traffic, metric), _windows(b, traffic, metric)
            interval: tuple[float, float] | None = None
            method = None
            if len(wa) >= 2 and len(wb) >= 2 and sum(wa):
                mean_a, mean_b = sum(wa) / len(wa), sum(wb) / len(wb)
                va, vb = mean_a, mean_b
                if min(len(wa), len(wb)) >= BOOTSTRAP_MIN_WINDOWS:
                    interval, method = _bootstrap(wa, wb), "bootstrap"
                else:
                    interval, method = welch_interval(wa, wb), "welch-t"
            change = (vb - va) / va
            worse = change * direction > 0
            bound = max_p99 if metric == "p99_ms" else max_rps
            crossed = bound is not None and worse and abs(change) > bound
            changes.append(Change(traffic, metric, float(va), float(vb), change, interval, method,
                                  (len(wa), len(wb)), worse, bound, crossed))
    return changes


def machine_warning(a: Summary, b: Summary) -> str | None:
    """A line when A and B ran on different CPUs, core counts or GPUs (None when alike)."""
    ma, mb = a.machine, b.machine
    if (ma.cpu, ma.cores, ma.gpu) == (mb.cpu, mb.cores, mb.gpu):
        return None
    return (f"warning: A and B ran on different machines (A: {ma.label}; B: {mb.label}); the change mixes "
            "the machine with the code")


def _row(c: Change) -> list[str]:
    label = dict((m, name) for m, name, _ in METRICS)[c.metric]
    if c.interval is None:
        interval = "inconclusive: single measurement (one window per run, no interval)"
    else:
        how = ("bootstrap" if c.method == "bootstrap" else "Welch t") + f", {c.windows[0]} / {c.windows[1]} windows"
        interval = (f"{c.interval[0]:+.1%} .. {c.interval[1]:+.1%} ({how})"
                    + (" within noise" if c.noise else ""))
    verdict = "REGRESSION" if c.crossed else ("worse" if c.worse else "same or better")
    bound = "–" if c.bound is None else f"{c.bound:.0%}"
    return [c.traffic, label, f"{c.a:,.1f}", f"{c.b:,.1f}", f"{c.change:+.1%}", interval, bound, verdict]


HEADERS = ["traffic", "metric", "A", "B", "change", "95% interval", "bound", "verdict"]


def _machines(a: Summary, b: Summary) -> list[str]:
    return [f"A: {a.machine.label}, server commit {a.machine.server_commit}",
            f"B: {b.machine.label}, server commit {b.machine.server_commit}"]


def markdown(name_a: str, name_b: str, changes: list[Change], a: Summary, b: Summary) -> str:
    failed = any(c.crossed for c in changes)
    lines = [f"# Compare `{name_a}` (A) with `{name_b}` (B): {'FAIL' if failed else 'PASS'}", ""]
    lines += [f"- {line}" for line in _machines(a, b)] + [""]
    if warning := machine_warning(a, b):
        lines += [f"**{warning}**", ""]
    lines += ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_row(c)) + " |" for c in changes]
    return "\n".join(lines) + "\n"


def html_page(name_a: str, name_b: str, changes: list[Change], a: Summary, b: Summary) -> str:
    failed = any(c.crossed for c in changes)
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in HEADERS)
    rows = "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in _row(c)) + "</tr>" for c in changes)
    warning = machine_warning(a, b)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>compare {e(name_a)} vs "
            f"{e(name_b)}</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .6rem}"
            "th{background:#f4f4f4}.bad{color:#b42318}</style></head><body>"
            f"<h1>{e(name_a)} (A) vs {e(name_b)} (B): {'FAIL' if failed else 'PASS'}</h1>"
            + "".join(f"<p>{e(line)}</p>" for line in _machines(a, b))
            + (f"<p class='bad'><b>{e(warning)}</b></p>" if warning else "")
            + f"<table><tr>{head}</tr>{rows}</table>"
            "<p>Change = (B - A) / A; the gate uses it. The interval says whether the runs could tell it "
            "from noise: a bootstrap with 8 or more windows per run, a Welch t-interval with 2 to 7, "
            "none (inconclusive) with one.</p></body></html>")


def run(run_a: str, run_b: str, *, max_p99: str | None, max_rps: str | None, out: Path | None,
        as_json: bool) -> int:
    """The command: read both runs, compare, write the reports, print; the exit code."""
    a, b = load_run(run_a), load_run(run_b)
    changes = compare(a, b, max_p99=parse_percent(max_p99), max_rps=parse_percent(max_rps))
    name_a, name_b = Path(run_a).name or str(run_a), Path(run_b).name or str(run_b)
    out = out or Path("reports") / "compare" / f"{name_a}-vs-{name_b}"
    if out.exists() and not out.is_dir():
        raise CampaignError(f"--out {out} is a file; pass a folder")
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(name_a, name_b, changes, a, b)
    (out / "compare.md").write_text(text, encoding="utf-8")
    (out / "compare.html").write_text(html_page(name_a, name_b, changes, a, b), encoding="utf-8")
    warning = machine_warning(a, b)
    if as_json:
        print(json.dumps({"changes": [c.to_dict() for c in changes], "report": str(out),
                          "machines": {"a": a.machine.to_dict(), "b": b.machine.to_dict()},
                          "machine_warning": warning}, indent=2))
    else:
        print(text + f"\nreport: {out / 'compare.html'}")
    return 1 if any(c.crossed for c in changes) else 0
