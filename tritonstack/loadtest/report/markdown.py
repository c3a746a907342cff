"""``report.md`` (terminals, pull requests) and the run's PNG plots, from the run's :class:`Summary`:
latency-vs-throughput.png for step campaigns, over-time.png for long stages in windows (the
goodput plot of a concurrency sweep is ``report.goodput.plot``). They only read the summary."""

from __future__ import annotations

from pathlib import Path

from tritonstack.loadtest.campaign.slo import TOTAL, limit
from tritonstack.loadtest.campaign.spec import Campaign
from tritonstack.loadtest.report import goodput
from tritonstack.loadtest.report.summary import Summary
from tritonstack.loadtest.runner import metrics


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _fmt_slope(mb_per_min: float | None) -> str:
    return "–" if mb_per_min is None else f"{mb_per_min:+.2f} MB/min"


def markdown(campaign: Campaign, summary: Summary) -> str:
    """A human summary: verdict, machine, SLOs, one row per measured window, Triton per model, CPU."""
    verdict = "PASS" if summary.passed else "FAIL"
    lines = [f"# Load test `{campaign.name}`: {verdict}", ""]
    if campaign.description:
        lines += [campaign.description, ""]
    m = summary.machine
    lines += [f"Target `{summary.target}`, started {summary.started_at}, wall time {summary.wall_s:.0f} s.", "",
              f"Machine: {m.label}; server commit `{m.server_commit}`.", ""]
    if summary.capacity:
        lines += [f"Capacity {summary.capacity.rps:,.1f} rps ({summary.capacity.source}); the campaign's "
                  "rates are multiples of it.", ""]
    if summary.find_max:
        fm = summary.find_max
        lines += [f"**Highest sustained RPS meeting the SLOs: {fm.max_rps:.0f}** "
                  f"(target {fm.target_rps:.0f}, p99 {fm.p99_ms:.0f} ms, {fm.users} users)", ""]
    elif campaign.find_max:
        lines += ["**No step met the SLOs.**", ""]
    if summary.verdicts:
        lines += ["## SLOs", ""] + [f"- {v.text}" for v in summary.verdicts] + [""]
    rows = summary.stats
    lines += ["## Requests (SLO window, "
              f"{summary.slo_window_s:.1f} s)", "",
              "Latencies are those of accepted requests; shed requests (refused by the server's queue "
              "policy) count as errors and are timed apart.", "",
              "| name | requests | RPS | p50 ms | p95 ms | p99 ms | max ms | errors | error rate | shed "
              "| shed p99 ms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in sorted(rows.items(), key=lambda kv: (kv[0] == TOTAL, kv[0])):
        lines.append(f"| {name} | {r['requests']:.0f} | {r['rps']:.1f} | {r['p50_ms']:.0f} | "
                     f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['errors']:.0f} | "
                     f"{r['error_rate']:.4f} | {r['shed']:.0f} | {r['shed_p99_ms']:.0f} |")
    lines += ["", "## Windows", "",
              "| window | target RPS | users | RPS | p50 ms | p95 ms | p99 ms | errors | shed "
              "| generator CPU % | server CPU % | server RSS MB | result |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for w in summary.windows:
        r = w["stats"][TOTAL]
        result = "" if "passed" not in w else ("pass" if w["passed"] else f"fail: {w['reason']}")
        lines.append(f"| {w['name']} | {_fmt(w['target_rps'], 0)} | {w['users']} | {r['rps']:.1f} | "
                     f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']:.0f} | "
                     f"{r['shed']:.0f} | {_fmt(w['generator_cpu_pct'], 0)} | "
                     f"{_fmt(w['server_cpu_pct'], 0)} | "
                     f"{_fmt(w.get('server_rss_mb'), 0)} | {result} |")
    if sweep := goodput.curve(campaign, summary.windows):
        lines += [""] + goodput.markdown(sweep)
    if summary.crosscheck:
        pa = summary.crosscheck
        lines += ["", f"## Cross-check: perf_analyzer on {pa['model']} ({pa['mode']})", "",
                  f"{pa['rps']:.1f} infer/s, p50 {pa['p50_ms']:.1f} ms, p95 {pa['p95_ms']:.1f} ms, "
                  f"p99 {pa['p99_ms']:.1f} ms (perf_analyzer.csv / .json)"]
    if mem := summary.server.memory:
        lines += ["", "## Server memory (tritonserver and its backend stubs, RSS at each window's end)", "",
                  f"{mem['first_mb']:.0f} MB -> {mem['last_mb']:.0f} MB (max {mem['max_mb']:.0f} MB) over "
                  f"{mem['span_s'] / 60:.1f} min, {mem['samples']:.0f} samples; least-squares trend "
                  f"{mem['slope_mb_per_min']:+.2f} MB/min, {_fmt_slope(mem.get('late_slope_mb_per_min'))} "
                  "over the second half (warm-up levels off there, a leak does not)"]
        if procs := summary.server.memory_by_process:
            lines += ["", "| process | first MB | last MB | change MB | trend, second half (MB/min) |",
                      "|---|---:|---:|---:|---:|"]
            lines += [f"| {label} | {m['first_mb']:.1f} | {m['last_mb']:.1f} | "
                      f"{m['last_mb'] - m['first_mb']:+.1f} | {_fmt(m.get('late_slope_mb_per_min'), 2)} |"
                      for label, m in procs.items()]
    lines += ["", "## Triton, per model (whole run)", ""]
    lines += metrics.summarize_models(summary.server.models)
    lines += ["", "## Drift and data quality (at the end of the run)", ""]
    lines += metrics.summarize_drift(summary.server.drift, summary.server.data_quality)
    gen = summary.generator
    lines += ["", "## CPU (percent of one core; this machine has "
              f"{summary.machine.cores} cores)", "",
              f"- server (tritonserver and its backend stubs): {_fmt(summary.server.cpu_pct)} %, "
              f"{_fmt(summary.server.cpu_us_per_request, 0)} µs CPU per request",
              f"- load generator, whole run including start-up: {_fmt(gen.cpu_pct_whole_run)} %",
              f"- load generator cost: {_fmt(gen.cpu_us_per_request, 0)} µs CPU per request "
              f"({gen.requests} requests, {len(gen.processes)} Locust process(es))", ""]
    return "\n".join(lines)


def plot(campaign: Campaign, summary: Summary, path: Path) -> bool:
    """Latency percentiles against achieved throughput, one point per measured window."""
    windows = sorted(summary.windows, key=lambda w: w["stats"][TOTAL]["rps"])
    if len(windows) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rps = [w["stats"][TOTAL]["rps"] for w in windows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s-"), ("p99_ms", "^-")):
        ax.plot(rps, [w["stats"][TOTAL][key] for w in windows], style, label=key.replace("_ms", ""))
    p99 = limit(list(campaign.slos), "p99_ms")
    if p99 is not None:
        ax.axhline(p99, color="red", linestyle="--", linewidth=1, label=f"p99 SLO {p99:g} ms")
    if summary.find_max:
        ax.axvline(summary.find_max.max_rps, color="green", linestyle=":", linewidth=1,
                   label=f"max {summary.find_max.max_rps:.0f} rps")
    ax.set_xlabel("achieved requests/s")
    ax.set_ylabel("response time (ms)")
    ax.set_title(f"{campaign.name}: latency vs throughput")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_over_time(campaign: Campaign, summary: Summary, path: Path) -> bool:
    """p99 and server memory per window against time (long stages recorded with ``window_s``)."""
    windows = [w for w in summary.windows if w.get("server_rss_mb") is not None]
    if len(windows) < 3:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [(w["start_s"] + w["duration_s"]) / 60 for w in windows]
    fig, (lat, mem) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    lat.plot(minutes, [w["stats"][TOTAL]["p99_ms"] for w in windows], "^-", label="p99")
    lat.plot(minutes, [w["stats"][TOTAL]["p50_ms"] for w in windows], "o-", label="p50")
    lat.set_ylabel("response time (ms)")
    lat.set_ylim(bottom=0)
    lat.legend()
    mem.plot(minutes, [w["server_rss_mb"] for w in windows], "s-", color="purple")
    mem.set_ylabel("server RSS (MB)")
    mem.set_xlabel("minutes into the run")
    for ax in (lat, mem):
        ax.grid(True, alpha=0.3)
    lat.set_title(f"{campaign.name}: latency and server memory over time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
