"""What the server did during a window: Triton's Prometheus counters and CPU time.

Triton's metrics endpoint exposes cumulative per-model counters (parsed with prometheus_client's
parser, as rollout/metrics.py does); the difference of two scrapes
gives, per model, requests, executions (so the average dynamic batch size), and the time spent
queued versus computing. CPU time comes from ``psutil`` over a process and its children
(tritonserver's Python-backend stubs are its children). Pure parsing and arithmetic, plus two
small readers; safe in the parent and in the gevent-patched Locust processes.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")

COUNTERS = (
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us", "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
    # Triton's response cache (a server started with one, models that enable it)
    "nv_cache_num_hits_per_model", "nv_cache_num_misses_per_model",
)

Counters = dict[str, dict[str, float]]  # model -> counter name -> value (summed over versions/reasons)


def _samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample, parsed by prometheus_client's parser (the format's
    escaping, comments, timestamps and exemplars included). A counter's ``_total`` suffix is
    dropped: the parser adds it to every counter's samples whatever the exposition said. Stops at
    the first malformed line (what came before is kept)."""
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                yield sample.name.removesuffix("_total"), sample.labels, float(sample.value)
    except ValueError:
        return


def parse_prometheus(text: str) -> Counters:
    """Triton's per-model inference counters from the metrics endpoint's text."""
    out: Counters = {}
    for name, labels, value in _samples(text):
        if name not in COUNTERS or "model" not in labels:
            continue
        row = out.setdefault(labels["model"], {})
        row[name] = row.get(name, 0.0) + value
    return out


def _fetch(url: str | None, timeout_s: float) -> str | None:
    """The metrics endpoint's text; None when there is none or it does not answer."""
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - local URL
            return response.read().decode("utf-8", "replace")
    except OSError:
        return None


def scrape(url: str | None, timeout_s: float = 2.0) -> Counters | None:
    """Read and parse the metrics endpoint; None when there is none or it does not answer."""
    text = _fetch(url, timeout_s)
    return None if text is None else parse_prometheus(text)


PSI_SHIFTED = 0.25  # the alert rules' threshold (docker/monitoring/alerts.yml)


def parse_monitoring(text: str) -> dict[str, Any]:
    """The stack's own series on Triton's /metrics: drift per model, version and feature (with
    the rows its window holds) and data-quality counts per model and reason."""
    drift: dict[tuple[str, str, str], float] = {}
    rows: dict[tuple[str, str], float] = {}
    quality: dict[str, dict[str, float]] = {}
    for name, labels, value in _samples(text):
        if name == "triton_stack_drift_psi":
            drift[(labels.get("model", ""), labels.get("version", ""), labels.get("feature", ""))] = value
        elif name == "triton_stack_drift_window_rows":
            rows[(labels.get("model", ""), labels.get("version", ""))] = value
        elif name == "triton_stack_data_quality":
            quality.setdefault(labels.get("model", ""), {})[labels.get("reason", "")] = value
    return {"drift": [{"model": m, "version": v, "feature": f, "psi": psi,
                       "window_rows": rows.get((m, v), 0.0), "shifted": psi > PSI_SHIFTED}
                      for (m, v, f), psi in sorted(drift.items()) if rows.get((m, v), 0.0) > 0],
            "data_quality": quality}


def scrape_monitoring(url: str | None, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """:func:`parse_monitoring` of the metrics endpoint; None when it does not answer."""
    text = _fetch(url, timeout_s)
    return None if text is None else parse_monitoring(text)


def scrape_both(url: str | None, timeout_s: float = 2.0) -> tuple[Counters | None, dict[str, Any] | None]:
    """Triton's counters and the stack's monitoring series from one read of the endpoint."""
    text = _fetch(url, timeout_s)
    return (None, None) if text is None else (parse_prometheus(text), parse_monitoring(text))


def quality_deltas(after: dict[str, Any] | None,
                   before: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """Data-quality events per model and reason during a window."""
    if not after:
        return {}
    then = (before or {}).get("data_quality", {})
    out = {}
    for model, reasons in after["data_quality"].items():
        delta = {r: n - then.get(model, {}).get(r, 0.0) for r, n in reasons.items()}
        delta = {r: n for r, n in delta.items() if n > 0}
        if delta:
            out[model] = delta
    return out


def summarize_drift(drift: list[dict[str, Any]], quality: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Markdown lines: each monitored model's features with their PSI, and data-quality counts."""
    if not drift and not quality:
        return ["(no drift metrics: the models have no profile.json, or no traffic reached them)"]
    lines = [f"PSI of each feature over the last window of rows, against the export's profile "
             f"(> {PSI_SHIFTED}: shifted, the alert's threshold).", "",
             "| model | version | feature | PSI | window rows | |", "|---|---|---|---:|---:|---|"]
    for row in drift:
        lines.append(f"| {row['model']} | {row['version']} | {row['feature']} | {row['psi']:.3f} "
                     f"| {row['window_rows']:.0f} | {'**shifted**' if row['shifted'] else ''} |")
    if quality:
        lines += ["", "Data quality during the run: " + "; ".join(
            f"{model}: " + ", ".join(f"{n:.0f} {reason}" for reason, n in sorted(reasons.items()))
            for model, reasons in sorted(quality.items()))]
    return lines


def model_deltas(after: Counters | None, before: Counters | None, duration_s: float) -> dict[str, dict]:
    """Per model with traffic in the window: throughput, average batch, queue and compute times."""
    if after is None or before is None:
        return {}
    rows = {}
    for model, now in after.items():
        then = before.get(model, {})
        d = {k: now.get(k, 0.0) - then.get(k, 0.0) for k in COUNTERS}
        success = d["nv_inference_request_success"]
        execs = d["nv_inference_exec_count"]
        if success <= 0 and d["nv_inference_request_failure"] <= 0:
            continue
        per_request = success or 1.0
        rows[model] = {
            "requests": success,
            "failures": d["nv_inference_request_failure"],
            "inferences": d["nv_inference_count"],
            "executions": execs,
            "rps": success / duration_s if duration_s > 0 else 0.0,
            "avg_batch": d["nv_inference_count"] / execs if execs else 0.0,
            "avg_request_us": d["nv_inference_request_duration_us"] / per_request,
            "avg_queue_us": d["nv_inference_queue_duration_us"] / per_request,
            "avg_compute_us": (d["nv_inference_compute_input_duration_us"]
                               + d["nv_inference_compute_infer_duration_us"]
                               + d["nv_inference_compute_output_duration_us"]) / per_request,
            **{f"avg_{phase}_us": d[f"nv_inference_{phase}_duration_us"] / per_request
               for phase in ("compute_input", "compute_infer", "compute_output")},
            "avg_exec_infer_us": d["nv_inference_compute_infer_duration_us"] / execs if execs else 0.0,
            "cache_hits": d["nv_cache_num_hits_per_model"],
            "cache_misses": d["nv_cache_num_misses_per_model"],
        }
    return rows


def _per_process(pid: int | None, measure: Callable[[Any], T]) -> list[T] | None:
    """``measure`` of a process and of each live descendant; None if the process is gone."""
    if not pid:
        return None
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    out = []
    for proc in procs:
        try:
            out.append(measure(proc))
        except psutil.Error:  # a child that exited meanwhile
            continue
    return out


def tree_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process and its live descendants; None if it is gone."""
    seconds = _per_process(pid, lambda proc: sum(proc.cpu_times()[:2]))
    return None if seconds is None else sum(seconds)


def children_cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for children (Locust, perf_analyzer)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_by_process(pid: int | None) -> dict[int, float]:
    """User + system CPU seconds of a process and each live descendant, by pid ({} if gone): a
    window's CPU is then the sum of per-pid differences, which an exiting stub cannot make negative."""
    sampled = _per_process(pid, lambda proc: (proc.pid, sum(proc.cpu_times()[:2])))
    return dict(sampled or [])


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds a process tree spent between two :func:`cpu_by_process` readings: each pid's
    difference, a pid that started meanwhile counted whole (a stub restarted in the window)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def tree_rss_by_process(pid: int | None) -> dict[str, float] | None:
    """Resident bytes of a server and each descendant (Triton's backend stubs), by label.

    Per process so that a soak's growth can be pinned on the server or on one model's stub.
    """
    from tritonstack.server.stubs import process_label

    sampled = _per_process(pid, lambda proc: (process_label(proc), proc.pid, float(proc.memory_info().rss)))
    if sampled is None:
        return None
    out: dict[str, float] = {}
    for label, proc_pid, rss in sampled:
        out[label if label not in out else f"{label} (pid {proc_pid})"] = rss
    return out


def memory_trend(points: list[tuple[float, float]]) -> dict[str, float | None] | None:
    """First, last, max and least-squares slopes (MB per minute) of (seconds, MB) samples.

    ``late_slope_mb_per_min`` fits the second half of the samples only: a server that warms up
    (allocator arenas growing to the batch shapes it meets) levels off there, a leak does not.
    """
    if len(points) < 2:
        return None
    ts, mb = [t for t, _ in points], [m for _, m in points]
    late = points[len(points) // 2:]
    return {"first_mb": mb[0], "last_mb": mb[-1], "max_mb": max(mb),
            "slope_mb_per_min": _slope_per_min(points),
            "late_slope_mb_per_min": _slope_per_min(late) if len(late) >= 2 else None,
            "samples": float(len(points)), "span_s": ts[-1] - ts[0]}


def _slope_per_min(points: list[tuple[float, float]]) -> float:
    ts, ys = [t for t, _ in points], [y for _, y in points]
    t_mean, y_mean = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - t_mean) ** 2 for t in ts)
    return 60.0 * sum((t - t_mean) * (y - y_mean) for t, y in points) / var if var else 0.0


def window_memory_trends(windows: list[dict[str, Any]]) -> tuple[dict | None, dict[str, dict]]:
    """:func:`memory_trend` of the server's total RSS and of each process seen in every window.

    A window's sample is taken at its end (``server_rss_mb``, ``server_rss_by_process_mb``).
    """
    sampled = [w for w in windows if w.get("server_rss_mb") is not None]
    ends = [w["start_s"] + w["duration_s"] for w in sampled]
    total = memory_trend(list(zip(ends, [w["server_rss_mb"] for w in sampled], strict=True)))
    per_window = [w.get("server_rss_by_process_mb") or {} for w in sampled]
    labels = set.intersection(*(set(p) for p in per_window)) if per_window else set()
    trends = {label: memory_trend(list(zip(ends, [p[label] for p in per_window], strict=True)))
              for label in sorted(labels)}
    return total, {label: trend for label, trend in trends.items() if trend}


def server_pid_for_port(port: int) -> int | None:
    """The pid listening on ``port`` on this machine (to measure an already running server)."""
    import psutil

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except (psutil.Error, OSError):
        return None
    return None


def cpu_percent(after: float | None, before: float | None, duration_s: float) -> float | None:
    """CPU used in a window, as percent of one core (200 = both cores of this machine)."""
    if after is None or before is None or duration_s <= 0:
        return None
    return 100.0 * (after - before) / duration_s


def summarize_models(rows: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Markdown table lines for :func:`model_deltas` rows."""
    if not rows:
        return ["(no Triton metrics: pass --metrics URL or start the server with --model-repository)"]
    cached = any(r.get("cache_hits", 0) + r.get("cache_misses", 0) > 0 for r in rows.values())
    lines = ["| model | requests/s | avg batch | avg queue (ms) | avg compute (ms) | failures |"
             + (" cache hits | cache hit rate |" if cached else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if cached else "")]
    for model, r in sorted(rows.items()):
        line = (f"| {model} | {r['rps']:.1f} | {r['avg_batch']:.2f} | {r['avg_queue_us'] / 1000:.2f} "
                f"| {r['avg_compute_us'] / 1000:.2f} | {r['failures']:.0f} |")
        if cached:
            lookups = r.get("cache_hits", 0) + r.get("cache_misses", 0)
            line += (f" {r.get('cache_hits', 0):.0f} | {100 * r['cache_hits'] / lookups:.1f} % |" if lookups
                     else " | |")
        lines.append(line)
    return lines
