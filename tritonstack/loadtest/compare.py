"""``python -m tritonstack.loadtest compare RUN_A RUN_B``: did B get slower? A side-by-side report with gates.

For each traffic entry both runs measured (and the all-traffic row), it compares throughput and
p99 latency of B against A and fails (exit 1) when B's p99 rose by more than
``--max-p99-regression`` or its throughput fell by more than ``--max-rps-regression``.

Noise: where both runs recorded repeated windows (campaign stages with ``window_s``), each metric
is the mean over the windows and the change gets a 95 % bootstrap confidence interval; the gate
still uses the point estimate, and a change whose interval includes zero is marked "within
noise", so a failed gate says whether the runs could tell. With one window per run there is no
interval: the numbers are single measurements, and the report says so.

Writes ``compare.md`` and a self-contained ``compare.html`` into ``--out`` (default
``reports/compare/A-vs-B``). Exit codes: 0 no bound crossed, 1 a bound crossed, 2 bad input.
"""

from __future__ import annotations

import dataclasses
import html
import json
import random
from pathlib import Path
from typing import Any

from tritonstack.loadtest.errors import CampaignError

TOTAL = "Aggregated"
METRICS = (("rps", "throughput (rps)", -1), ("p99_ms", "p99 (ms)", +1))  # +1: higher is worse


@dataclasses.dataclass(frozen=True)
class Change:
    traffic: str
    metric: str
    a: float
    b: float
    change: float  # (b - a) / a
    interval: tuple[float, float] | None  # 95 % bootstrap interval of the change, when windows allow
    worse: bool
    bound: float | None
    crossed: bool

    @property
    def noise(self) -> bool:
        return self.interval is not None and self.interval[0] <= 0 <= self.interval[1]

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self) | {"within_noise": self.noise}


def load_run(run: str | Path) -> dict[str, Any]:
    """A run's summary.json (RUN is its report folder or the file)."""
    path = Path(run)
    path = path / "summary.json" if path.is_dir() else path
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CampaignError(f"{run}: no summary.json; pass a `python -m tritonstack.loadtest run` report "
                            "folder") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CampaignError(f"{path} is not a load-test summary (JSON: {exc})") from None
    if not isinstance(data, dict) or "slo_window" not in data:
        raise CampaignError(f"{path} is not a load-test summary (no slo_window); pass a report folder")
    return data


def _windows(summary: dict[str, Any], traffic: str, metric: str) -> list[float]:
    values = []
    for window in summary.get("windows") or []:
        value = ((window.get("stats") or {}).get(traffic) or {}).get(metric)
        if isinstance(value, int | float):
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


def compare(a: dict[str, Any], b: dict[str, Any], *, max_p99: float | None,
            max_rps: float | None) -> list[Change]:
    stats_a = a["slo_window"].get("stats") or {}
    stats_b = b["slo_window"].get("stats") or {}
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
            if len(wa) >= 3 and len(wb) >= 3:
                mean_a, mean_b = sum(wa) / len(wa), sum(wb) / len(wb)
                change = (mean_b - mean_a) / mean_a if mean_a else 0.0
                interval: tuple[float, float] | None = _bootstrap(wa, wb)
                va, vb = mean_a, mean_b
            else:
                change, interval = (vb - va) / va, None
            worse = change * direction > 0
            bound = max_p99 if metric == "p99_ms" else max_rps
            crossed = bound is not None and worse and abs(change) > bound
            changes.append(Change(traffic, metric, float(va), float(vb), change, interval, worse, bound,
                                  crossed))
    return changes


def _row(c: Change) -> list[str]:
    label = dict((m, name) for m, name, _ in METRICS)[c.metric]
    interval = "single measurement" if c.interval is None else (
        f"{c.interval[0]:+.1%} .. {c.interval[1]:+.1%}" + (" (within noise)" if c.noise else ""))
    verdict = "REGRESSION" if c.crossed else ("worse" if c.worse else "same or better")
    bound = "–" if c.bound is None else f"{c.bound:.0%}"
    return [c.traffic, label, f"{c.a:,.1f}", f"{c.b:,.1f}", f"{c.change:+.1%}", interval, bound, verdict]


HEADERS = ["traffic", "metric", "A", "B", "change", "95% interval", "bound", "verdict"]


def markdown(name_a: str, name_b: str, changes: list[Change]) -> str:
    failed = any(c.crossed for c in changes)
    lines = [f"# Compare `{name_a}` (A) with `{name_b}` (B): {'FAIL' if failed else 'PASS'}", "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_row(c)) + " |" for c in changes]
    return "\n".join(lines) + "\n"


def html_page(name_a: str, name_b: str, changes: list[Change]) -> str:
    failed = any(c.crossed for c in changes)
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in HEADERS)
    rows = "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in _row(c)) + "</tr>" for c in changes)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>compare {e(name_a)} vs "
            f"{e(name_b)}</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .6rem}"
            "th{background:#f4f4f4}</style></head><body>"
            f"<h1>{e(name_a)} (A) vs {e(name_b)} (B): {'FAIL' if failed else 'PASS'}</h1>"
            f"<table><tr>{head}</tr>{rows}</table>"
            "<p>Change = (B - A) / A; the gate uses it, the interval (repeated windows, bootstrap) says "
            "whether the runs could tell it from noise.</p></body></html>")


def main(args: Any) -> int:
    a, b = load_run(args.run_a), load_run(args.run_b)
    changes = compare(a, b, max_p99=parse_percent(args.max_p99_regression),
                      max_rps=parse_percent(args.max_rps_regression))
    name_a, name_b = Path(args.run_a).name or str(args.run_a), Path(args.run_b).name or str(args.run_b)
    out = Path(args.out) if args.out else Path("reports") / "compare" / f"{name_a}-vs-{name_b}"
    if out.exists() and not out.is_dir():
        raise CampaignError(f"--out {out} is a file; pass a folder")
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(name_a, name_b, changes)
    (out / "compare.md").write_text(text, encoding="utf-8")
    (out / "compare.html").write_text(html_page(name_a, name_b, changes), encoding="utf-8")
    if args.json:
        print(json.dumps({"changes": [c.to_dict() for c in changes], "report": str(out)}, indent=2))
    else:
        print(text + f"\nreport: {out / 'compare.html'}")
    return 1 if any(c.crossed for c in changes) else 0
