"""``report.html``: one self-contained page per campaign run (no network needed to view it).

Sections: the verdict and each SLO with its margin; the measured traffic; for a concurrency sweep,
goodput and accepted latency per level with their plot; throughput, refusals
and latency over time (from Locust's stats history), the latency distribution; Triton per model
(batch size, queue and compute time); server CPU and memory per process; the campaign as run and
the versions of everything. Plots are PNGs drawn with matplotlib and embedded as data URIs.
``report.md`` stays beside it for terminals and pull requests.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from tritonstack.loadtest.campaign.spec import Campaign
from tritonstack.loadtest.report import goodput
from tritonstack.loadtest.report.summary import Summary

TOOLS = ("locust", "tritonclient", "grpcio", "numpy", "onnxruntime", "matplotlib")
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#222}
h1 .pass{color:#17803d} h1 .fail{color:#b42318} table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left} .ok{color:#17803d} .bad{color:#b42318}
img{max-width:100%;border:1px solid #eee} pre{background:#f6f6f6;padding:.8rem;overflow:auto}
.muted{color:#666}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 1) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:,.{digits}f}"


def _table(headers: list[str], rows: list[list[str]], raw: bool = False) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def history(path: Path) -> list[dict[str, float]]:
    """Locust's stats history (it appends while it runs), all-traffic rows: t (s from the first
    row), rps, fail_s, p50, p99 (ms; NaN before the first response), users, and the requests and
    failures so far. Empty when the file is missing or unreadable."""
    def num(value: str | None) -> float:
        try:
            return float(value) if value not in (None, "", "N/A") else float("nan")
        except ValueError:
            return float("nan")

    try:
        with path.open(newline="") as f:
            rows = [{"t": num(r.get("Timestamp")), "rps": num(r.get("Requests/s")),
                     "fail_s": num(r.get("Failures/s")), "users": num(r.get("User Count")),
                     "p50": num(r.get("50%")), "p99": num(r.get("99%")),
                     "requests": num(r.get("Total Request Count")),
                     "failures": num(r.get("Total Failure Count"))}
                    for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
    except (OSError, csv.Error):
        return []
    if rows:
        start = rows[0]["t"]
        for r in rows:
            r["t"] -= start
    return rows


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _plots(points: list[dict[str, float]], percentiles: dict[str, float]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    if points:
        t = [p["t"] for p in points]
        fig, ax = plt.subplots(figsize=(9, 3))
        ax.plot(t, [p["rps"] for p in points], label="requests/s")
        ax.plot(t, [p["fail_s"] for p in points], label="failed or refused /s", color="#b42318")
        ax.set_xlabel("seconds"), ax.set_ylabel("per second"), ax.legend(loc="upper left")
        out.append(("Throughput and refusals over time", _png(fig)))
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(9, 3))
        ax.plot(t, [p["p50"] for p in points], label="p50")
        ax.plot(t, [p["p99"] for p in points], label="p99")
        ax.set_xlabel("seconds"), ax.set_ylabel("ms (Locust's running percentiles)")
        ax.legend(loc="upper left")
        out.append(("Latency over time", _png(fig)))
        plt.close(fig)
    if percentiles:
        fig, ax = plt.subplots(figsize=(9, 3))
        names = list(percentiles)
        ax.bar(names, [percentiles[n] for n in names], color="#4b6bfb")
        ax.set_xlabel("percentile"), ax.set_ylabel("ms")
        out.append(("Latency distribution (whole run, all traffic)", _png(fig)))
        plt.close(fig)
    return out


def _percentiles(stats_csv: Path) -> dict[str, float]:
    if not stats_csv.is_file():
        return {}
    with stats_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("Name") == "Aggregated":
                keys = ("50%", "75%", "90%", "95%", "99%", "99.9%", "100%")
                try:
                    return {k: float(row[k]) for k in keys}
                except (KeyError, ValueError):
                    return {}
    return {}


def versions() -> dict[str, str]:
    """The versions of the tools this process runs (the machine is the summary's)."""
    out = {"python": platform.python_version(), "architecture": platform.machine()}
    for tool in TOOLS:
        try:
            out[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            continue
    return out


def _goodput_section(campaign: Campaign, summary: Summary, folder: Path) -> list[str]:
    """A concurrency sweep's per-level table and its plot (write_all drew the PNG), embedded."""
    sweep = goodput.curve(campaign, summary.windows)
    if sweep is None:
        return []
    parts = ["<h2>Goodput against concurrency</h2>", f"<p>{_e(goodput.headline(sweep))}</p>",
             _table(goodput.HEADERS, goodput.rows(sweep)),
             f"<p class='muted'>{_e(goodput.DEFINITIONS)}</p>"]
    png = folder / goodput.PLOT_FILE
    if png.is_file():
        uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
        parts.append(f"<img alt='goodput and accepted p99 against concurrency' src='{uri}'>")
    return parts


def render(campaign: Campaign, summary: Summary, folder: Path) -> str:
    """The page for the run whose report folder is ``folder`` (summary.json's numbers, verbatim)."""
    verdict = "PASS" if summary.passed else "FAIL"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(campaign.name)}: "
             f"{verdict}</title><style>{_STYLE}</style></head><body>",
             f"<h1>Load test <code>{_e(campaign.name)}</code>: "
             f"<span class='{verdict.lower()}'>{verdict}</span></h1>",
             f"<p class='muted'>target {_e(summary.target)}, started {_e(summary.started_at)}, "
             f"wall time {_num(summary.wall_s, 0)} s</p>",
             f"<p class='muted'>machine: {_e(summary.machine.label)}; server commit "
             f"<code>{_e(summary.machine.server_commit)}</code></p>"]
    if campaign.description:
        parts.append(f"<p>{_e(campaign.description)}</p>")
    if summary.capacity:
        parts.append(f"<p>Capacity {_num(summary.capacity.rps)} rps ({_e(summary.capacity.source)}); the "
                     "campaign's rates are multiples of it.</p>")
    fm = summary.find_max
    if fm:
        parts.append(f"<p><b>Highest sustained RPS meeting the SLOs: {_num(fm.max_rps, 0)}</b> "
                     f"(p99 {_num(fm.p99_ms, 0)} ms, {fm.users} users)</p>")
    if summary.verdicts:
        rows = [[f"<span class='{'ok' if v.passed else 'bad'}'>{'PASS' if v.passed else 'FAIL'}"
                 "</span>",
                 _e(v.slo), _num(v.value, 2), _e(v.text.split(": ", 1)[-1])] for v in summary.verdicts]
        parts += ["<h2>SLOs</h2>", _table(["verdict", "SLO", "measured", "margin"], rows, raw=True)]
    stats = summary.stats
    if stats:
        rows = [[name, _num(s.get("requests"), 0), _num(s.get("rps")), _num(s.get("p50_ms"), 0),
                 _num(s.get("p99_ms"), 0), _num(s.get("errors"), 0), _num(s.get("shed"), 0)]
                for name, s in stats.items()]
        parts += ["<h2>Traffic (measured window)</h2>",
                  _table(["traffic", "requests", "rps", "p50 ms", "p99 ms", "errors", "shed"], rows)]
    parts += _goodput_section(campaign, summary, folder)
    plots = _plots(history(folder / "locust_stats_history.csv"), _percentiles(folder / "locust_stats.csv"))
    for title, uri in plots:
        parts += [f"<h2>{_e(title)}</h2>", f"<img alt='{_e(title)}' src='{uri}'>"]
    server = summary.server
    models = server.models
    if models:
        rows = [[name, _num(m.get("rps")), _num(m.get("avg_batch"), 2), _num(m.get("avg_queue_us"), 0),
                 _num(m.get("avg_compute_us"), 0), _num(m.get("failures"), 0)] for name, m in models.items()]
        parts += ["<h2>Triton per model</h2>",
                  _table(["model", "rps", "avg batch", "queue µs", "compute µs", "failures"], rows)]
    memory = server.memory_by_process
    cpu = server.cpu_pct
    if memory or cpu is not None:
        parts.append(f"<h2>Server CPU and memory</h2><p>CPU {_num(cpu)} % of one core over the run, "
                     f"{_num(server.cpu_us_per_request, 0)} µs per request (the load generator's: "
                     f"{_num(summary.generator.cpu_us_per_request, 0)} µs, not counted).</p>")
        if isinstance(memory, dict) and memory:
            rows = [[name, _num(m.get("first_mb")), _num(m.get("last_mb")),
                     _num(m.get("late_slope_mb_per_min"), 2)]
                    for name, m in memory.items() if isinstance(m, dict)]
            parts.append(_table(["process", "RSS first MB", "RSS last MB", "second-half MB/min"], rows))
    parts += ["<h2>Campaign as run</h2>", f"<pre>{_e(json.dumps(campaign.to_dict(), indent=2))}</pre>",
              "<h2>Machine and versions</h2>",
              _table(["component", "version"], [["CPU", summary.machine.cpu], ["cores", str(summary.machine.cores)],
                                                ["int8 instructions", ", ".join(summary.machine.int8) or "none"],
                                                ["GPU", summary.machine.gpu or "none"],
                                                ["server commit", summary.machine.server_commit],
                                                *([k, v] for k, v in versions().items())]),
              "</body></html>"]
    return "\n".join(parts)
