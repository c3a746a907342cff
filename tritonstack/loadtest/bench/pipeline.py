"""Served throughput of each pipeline next to its model's in-process ONNX Runtime limit.

    python -m tritonstack.loadtest bench-pipelines [--model-repository model_repository] [--text-length long]
        [--concurrency 8 --concurrency 16 ...] [--duration 5s] [--pipeline embed] [--out DIR] [--json]

For ``embed`` (the same sentences both sides: ``--text-length`` short, ~16 tokens, or long,
~35) and ``classify_digit``:
* served: Triton's ``perf_analyzer`` (C++, ~0.7 core at 6,000 RPS, so the client eats little of
  the server's two cores) over a sweep of concurrency levels; the best level is reported (a level
  where the server sheds requests for load ends the sweep: the levels below it stand);
* in process: the same ONNX file in ONNX Runtime with the served layout (one session per
  instance, each with the config's intra-op threads, side by side), on the same inputs, at the
  batch size Triton formed (from its metrics), pre-tokenized. For ``embed`` twice:
  - the limit: the sentences sorted by length before they are cut into batches, so a batch
    pads almost nothing (ORT's best on these sentences; what the ratio divides by);
  - as served: batches of sentences in arrival order, each cut into runs as the python-ort
    runner cuts them (``plan_runs``): what ORT alone does with the batches a server gets;
* ratio = served / in-process limit, and for ``embed`` the ensemble's overhead over calling
  ``minilm`` directly with pre-tokenized input at the same concurrency;
* the server's CPU per request: tritonserver and every stub, read from /proc over the best
  level's window, divided by its requests (perf_analyzer's CPU is reported apart and never
  counted), against in-process ORT's least CPU per row over batch sizes 1-32 of the same inputs
  length-sorted, one session with the served thread count; ``cpu_ratio`` = the first / the second.

A benchmark, not a test: run it alone (two cores), it takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tritonstack.cli import add_model_repository, add_out, positive_duration
from tritonstack.loadtest.bench import perf_analyzer as crosscheck
from tritonstack.loadtest.campaign import spec as campaigns
from tritonstack.loadtest.errors import RunFailed
from tritonstack.loadtest.runner import metrics

STEPS = {"embed": ("embed", "minilm"),
         "classify_digit": ("classify_digit", "digits_cnn")}
_TIMES = ("queue", "compute_input", "compute_infer", "compute_output")


def _breakdown(rows: dict[str, dict], models: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Per model: average µs per request queued and in each compute phase (from model_deltas rows)."""
    return {model: {phase: round(rows[model][f"avg_{phase}_us"]) for phase in _TIMES}
            for model in models if model in rows}


def _layout(repository: Path, model: str) -> tuple[int, int]:
    """(instances, ORT intra-op threads per instance) of the served config."""
    from tritonstack.converters.repository import read_config
    config = read_config(repository / model)
    value = config.parameters.get("intra_op_thread_count")
    threads = int(value.string_value) if value and value.string_value else 0
    return sum(g.count or 1 for g in config.instance_group) or 1, threads


def _session(repository: Path, model: str, threads: int):
    import onnxruntime as ort

    from tritonstack.converters.repository import existing_versions
    folder = repository / model
    from tritonstack.serving.cpu import int8_config_entries

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    for key, value in int8_config_entries().items():  # as the runner serves it on this CPU
        options.add_session_config_entry(key, value)
    path = folder / str(existing_versions(folder)[-1]) / "model.onnx"
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _process_cpu_s() -> float:
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rows_per_s(sessions: list, feeds: list[dict[str, np.ndarray]], seconds: float = 5.0) -> tuple[float, float]:
    """Rows/s of ``sessions`` running side by side (one Python thread each; ORT releases the GIL),
    as Triton runs one session per model instance, and the CPU µs this process spent per row."""
    from concurrent.futures import ThreadPoolExecutor

    def one(session, offset: int) -> tuple[int, float]:
        for feed in feeds[:3]:
            session.run(None, feed)
        rows, i, start = 0, offset, time.perf_counter()
        end = start + seconds
        while time.perf_counter() < end:
            feed = feeds[i % len(feeds)]
            session.run(None, feed)
            rows += len(next(iter(feed.values())))
            i += 1
        return rows, time.perf_counter() - start

    cpu = _process_cpu_s()
    with ThreadPoolExecutor(len(sessions)) as pool:
        done = list(pool.map(one, sessions, range(0, 7 * len(sessions), 7)))
    cpu = _process_cpu_s() - cpu
    rows = sum(r for r, _ in done)
    return sum(r / wall for r, wall in done), 1e6 * cpu / rows


#: Batch sizes tried for the in-process CPU per row on the best layout.
BEST_LAYOUT_BATCHES = (1, 2, 4, 8, 16, 32)


def best_cpu_per_row(session, feeds_at: Any, seconds: float = 2.0) -> dict[str, float]:
    """In-process ONNX Runtime's least CPU per row over :data:`BEST_LAYOUT_BATCHES` (one session,
    ``feeds_at(batch)`` the same inputs length-sorted into batches, so they pad almost nothing):
    the denominator of the server's CPU ratio (issue #35)."""
    tried = {b: _rows_per_s([session], feeds_at(b), seconds)[1] for b in BEST_LAYOUT_BATCHES}
    batch = min(tried, key=tried.__getitem__)
    return {"batch": batch, "cpu_us_per_row": round(tried[batch]),
            "by_batch": {str(b): round(v) for b, v in tried.items()}}


TEXT_LENGTHS = ("short", "long")


def bench_texts(length: str) -> list[str]:
    """The sentences both sides run: the evaluation sentences (short: ~16 MiniLM tokens, a search
    query or a chat turn) or each joined to another (long: ~35 tokens)."""
    from tritonstack.demo.data import text_corpus

    texts = [t for t in text_corpus().evaluation if t]
    if length == "short":
        return texts
    return [f"{t} {texts[(i * 7919 + 1) % len(texts)]}" for i, t in enumerate(texts)]


Feeds = list[dict[str, np.ndarray]]


def _text_feeds(batch: int, texts: list[str]) -> tuple[Feeds, Feeds, list[dict[str, Any]], float]:
    """``texts`` tokenized for ORT twice: batches of the length-sorted texts (the limit: almost no
    padding) and batches in arrival order cut into runs as the python-ort runner cuts them; the
    same texts pre-tokenized one per request for perf_analyzer; their mean length in tokens."""
    from tritonstack.ensembles.build import MAX_LENGTH, minilm_tokenizer_file
    from tritonstack.serving.batching import concat_padded, plan_runs
    from tritonstack.serving.requests import TensorInfo
    from tritonstack.serving.text import encode, load_tokenizer

    names = ("input_ids", "attention_mask", "token_type_ids")
    tokenizer = load_tokenizer(minilm_tokenizer_file(), MAX_LENGTH)
    kept = texts[:len(texts) // batch * batch]  # whole batches, the same sentences on both sides
    one = [encode(tokenizer, [t]) for t in kept]  # each unpadded
    rows = [{n: getattr(e, n) for n in names} for e in one]
    lengths = [r["input_ids"].shape[1] for r in rows]
    infos = [TensorInfo(n, np.dtype(np.int64), ("sequence_length",)) for n in names]
    by_length = sorted(range(len(rows)), key=lambda i: lengths[i])
    limit, served = [], []
    for start in range(0, len(rows), batch):
        limit.append(concat_padded([rows[i] for i in by_length[start:start + batch]], infos))
        arrival = rows[start:start + batch]
        for run in plan_runs([{"batch": 1, "sequence_length": lengths[start + j]} for j in range(batch)]):
            served.append(concat_padded([arrival[j] for j in run], infos))
    single = [{n: {"content": r[n][0].tolist(), "shape": [r[n].shape[1]]} for n in names} for r in rows[:64]]
    return limit, served, single, float(np.mean(lengths))


def _digit_feeds(batch: int) -> list[dict[str, np.ndarray]]:
    from tritonstack.demo.data import digits_split
    x = np.asarray(digits_split().x_test_raw, dtype=np.float32)  # the served graph scales its input
    return [{"image": x[i:i + batch]} for i in range(0, len(x) - batch + 1, batch)]


class _CpuWindow:
    """CPU seconds per process over one perf_analyzer run, by model (its instances summed),
    Triton itself, perf_analyzer (this process's children) and what the cores left idle: where
    a request's time goes, on the same cores the load is generated on."""

    def __init__(self, server_pid: int | None):
        self.pid = server_pid
        self.start = time.monotonic()
        self.before = metrics.cpu_by_process(server_pid)
        self.children = metrics.children_cpu_s()

    def per_request(self, requests: float) -> dict[str, float]:
        import os

        import psutil

        from tritonstack.server.stubs import parse_cmdline

        wall = time.monotonic() - self.start
        after = metrics.cpu_by_process(self.pid)
        spent: dict[str, float] = {"perf_analyzer": metrics.children_cpu_s() - self.children}
        for pid, seconds in after.items():
            try:
                proc = psutil.Process(pid)
                stub = parse_cmdline(proc.cmdline())  # (model, instance) of a backend stub
                name = stub[0] if stub else proc.name()
            except psutil.Error:
                continue
            spent[name] = spent.get(name, 0.0) + metrics.cpu_spent(self.before, {pid: seconds})
        spent["idle"] = max(0.0, (os.cpu_count() or 1) * wall - sum(spent.values()))
        spent["server"] = sum(v for k, v in spent.items() if k not in ("perf_analyzer", "idle"))
        return {k: round(v / requests * 1e6) for k, v in spent.items() if requests and v >= 0.005}


def sweep_until_shed(levels: tuple[int, ...], measure: Any) -> tuple[list[dict[str, Any]], int | None]:
    """``measure(level)`` for each concurrency level in order, until one the server sheds.

    A level where the server refused requests for load (its admission limit: perf_analyzer stops
    at the first error) ends the sweep, and the levels before it stand: past that level the
    server serves no more, it refuses. The first level shedding is a failure (nothing measured).
    Returns the measured levels and the level that shed (None: none did).
    """
    from tritonstack.client import is_shed

    sweep: list[dict[str, Any]] = []
    for level in levels:
        try:
            sweep.append(measure(level))
        except RunFailed as exc:
            if not sweep or not is_shed(str(exc)):
                raise
            return sweep, level
    return sweep, None


def bench(grpc_url: str, metrics_url: str, repository: Path, out: Path,
          concurrencies: tuple[int, ...], duration_s: float,
          pipelines: tuple[str, ...] = ("embed", "classify_digit"),
          text_length: str = "short", server_pid: int | None = None,
          say: Any = print) -> list[dict[str, Any]]:
    results = []
    models = {"embed": "minilm", "classify_digit": "digits_cnn"}
    texts = bench_texts(text_length)
    for pipeline, model in ((p, models[p]) for p in pipelines):
        traffic = campaigns.Traffic(model=pipeline, pipeline=pipeline, pool=64)
        data = ({"data": [{"TEXT": {"content": [t], "shape": [1]}} for t in texts[:64]]}
                if pipeline == "embed" else None)
        def measure(c: int, pipeline: str = pipeline, model: str = model,
                    traffic: Any = traffic, data: Any = data) -> dict[str, Any]:
            before = metrics.scrape(metrics_url)
            cpu = _CpuWindow(server_pid)
            r = crosscheck.run(traffic, grpc_url, out / f"{pipeline}-c{c}", rate=None, concurrency=c,
                               duration_s=duration_s, data_json=data)
            rows = metrics.model_deltas(metrics.scrape(metrics_url), before, duration_s)
            r["cpu_us_per_request"] = cpu.per_request(rows.get(pipeline, {}).get("requests", 0.0))
            r["avg_batch"] = round(rows.get(model, {}).get("avg_batch", 0.0), 1)
            r["us_per_request"] = _breakdown(rows, STEPS[pipeline])
            r["concurrency"] = c
            say(f"  {pipeline:<15} concurrency {c:>3}: {r['rps']:8.1f} rps  p99 {r['p99_ms']:6.1f} ms  "
                f"batch {r['avg_batch']}", flush=True)
            return r

        sweep, shed_at = sweep_until_shed(concurrencies, measure)
        if shed_at is not None:
            say(f"  {pipeline:<15} concurrency {shed_at:>3}: the server shed requests for load; "
                "the sweep stops at the level below", flush=True)
        best = max(sweep, key=lambda r: r["rps"])
        instances, threads = _layout(repository, model)
        batch = max(1, round(best["avg_batch"]))
        sessions = [_session(repository, model, threads) for _ in range(instances)]
        tokens = as_served = None
        if pipeline == "embed":
            feeds, served_feeds, single, tokens = _text_feeds(batch, texts)
            direct = crosscheck.run(campaigns.Traffic(model=model), grpc_url, out / "minilm-direct",
                                    rate=None, concurrency=best["concurrency"], duration_s=duration_s,
                                    data_json={"data": single})
            as_served = _rows_per_s(sessions, served_feeds)[0]
            best_layout = best_cpu_per_row(sessions[0], lambda b: _text_feeds(b, texts)[0])
        else:
            feeds, direct = _digit_feeds(batch), None
            best_layout = best_cpu_per_row(sessions[0], _digit_feeds)
        in_process = _rows_per_s(sessions, feeds)[0]
        server_cpu = best["cpu_us_per_request"].get("server")
        row = {"pipeline": pipeline, "model": model, "instances": instances, "threads": threads,
               "best": best, "sweep": sweep, "shed_at_concurrency": shed_at,
               "in_process_batch": batch, "in_process_rows_per_s": round(in_process, 1),
               "ratio": round(best["rps"] / in_process, 3),
               "server_cpu_us_per_request": server_cpu,
               "generator_cpu_us_per_request": best["cpu_us_per_request"].get("perf_analyzer"),
               "in_process_best_layout": best_layout,
               "cpu_ratio": round(server_cpu / best_layout["cpu_us_per_row"], 2) if server_cpu else None}
        if tokens is not None:
            row["text_length"], row["mean_tokens"] = text_length, round(tokens, 1)
            row["in_process_as_served_rows_per_s"] = round(as_served, 1)
        if direct:
            row["direct_model_rps"] = direct["rps"]
            row["direct_model_p50_ms"] = direct["p50_ms"]
            row["ensemble_overhead_ms_p50"] = round(best["p50_ms"] - direct["p50_ms"], 2)
        results.append(row)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench-pipelines`` command's arguments (the loadtest CLI adds the global flags)."""
    add_model_repository(parser)
    parser.add_argument("--concurrency", action="append", metavar="N[,N...]",
                        help="perf_analyzer concurrency level; repeat it, or give a comma-separated list "
                             "(default: 1,4,8,16,32,64)")
    parser.add_argument("--duration", type=positive_duration, default=5.0, metavar="DURATION",
                        help="length of each measurement window: 5s, 1m or plain seconds (default: 5s)")
    parser.add_argument("--pipeline", "--pipelines", dest="pipelines", action="append", metavar="NAME",
                        help="embed or classify_digit; repeat it (or a comma-separated list); default: both")
    parser.add_argument("--text-length", choices=TEXT_LENGTHS, default="short",
                        help="embed's sentences: short (~16 tokens, the evaluation sentences) or long "
                             "(~35 tokens, two joined); default: %(default)s")
    add_out(parser, default=Path("reports/pipeline-bench"), help="where pipeline-bench.json and "
            "perf_analyzer's files go")


def _list(values: list[str] | None, default: str) -> list[str]:
    return [v.strip() for item in (values or [default]) for v in item.split(",") if v.strip()]


def run(args: argparse.Namespace) -> int:
    """The command: start Triton on the repository, bench, print the tables (or JSON)."""
    from tritonstack.loadtest.errors import CampaignError, LoadTestError, TargetError
    from tritonstack.server import ServerConfig, ServerError, TritonServer

    try:
        levels = tuple(int(c) for c in _list(args.concurrency, "1,4,8,16,32,64"))
    except ValueError:
        raise CampaignError(f"--concurrency takes whole numbers, got {args.concurrency}") from None
    if not levels or any(not 1 <= c <= 1024 for c in levels):
        raise CampaignError(f"--concurrency levels must be 1..1024, got {list(levels)}")
    pipelines = tuple(_list(args.pipelines, "embed,classify_digit"))
    unknown = [p for p in pipelines if p not in STEPS]
    if unknown:
        raise CampaignError(f"--pipeline {unknown[0]!r}: choose from {', '.join(STEPS)}")
    if not args.model_repository.is_dir():
        raise CampaignError(f"model repository {args.model_repository} does not exist; build it first "
                            "(make repository)")
    args.report_dir = args.out
    config = ServerConfig(model_repository=args.model_repository, http_port=0, grpc_port=0, metrics_port=0)
    say = (lambda *_line, **_flush: None) if args.json or args.quiet else print
    try:
        with TritonServer(config) as server:
            results = bench(server.grpc_url, server.metrics_url, args.model_repository, args.report_dir,
                            levels, args.duration, pipelines, args.text_length, server.pid, say=say)
    except (LoadTestError, ServerError) as exc:  # e.g. perf_analyzer could not settle: one line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
        cause = next((line for line in lines[1:] if "error" in line.lower()),
                     lines[-1] if len(lines) > 1 else "")
        hint = " (perf_analyzer: rerun it, or lower --concurrency)" if isinstance(exc, LoadTestError) else ""
        raise TargetError(f"{type(exc).__name__}: {lines[0]} {cause}".rstrip() + hint) from None
    args.report_dir.mkdir(parents=True, exist_ok=True)
    (args.report_dir / "pipeline-bench.json").write_text(json.dumps(results, indent=2, default=str))
    if args.json:
        print(json.dumps({"results": results, "report": str(args.report_dir / "pipeline-bench.json")},
                         indent=2, default=str))
        return 0
    print("\n| pipeline | served rps (concurrency, p99) | in-process limit rows/s (batch, sessions x "
          "threads) | in process, batches as served | ratio |")
    print("|---|---|---|---|---|")
    for r in results:
        b = r["best"]
        name = f"{r['pipeline']} ({r['mean_tokens']:g} tokens)" if "mean_tokens" in r else r["pipeline"]
        as_served = r.get("in_process_as_served_rows_per_s")
        print(f"| {name} | {b['rps']:.0f} (c={b['concurrency']}, p99 {b['p99_ms']:.0f} ms) | "
              f"{r['in_process_rows_per_s']:.0f} (b={r['in_process_batch']}, "
              f"{r['instances']} x {r['threads']}) | "
              f"{f'{as_served:.0f}' if as_served else '-'} | {r['ratio']:.0%} |")
    for r in results:
        print(f"\n{r['pipeline']} at concurrency {r['best']['concurrency']}: "
              "µs per request, from Triton's metrics")
        print("| model | " + " | ".join(_TIMES) + " |")
        print("|---|" + "---|" * len(_TIMES))
        for model, phases in r["best"]["us_per_request"].items():
            print(f"| {model} | " + " | ".join(str(phases[p]) for p in _TIMES) + " |")
    for r in results:
        cpu = r["best"]["cpu_us_per_request"]
        print(f"\n{r['pipeline']} at concurrency {r['best']['concurrency']}: CPU µs per request by process "
              "(over the whole perf_analyzer run; idle = what the cores left unused)")
        print("| " + " | ".join(cpu) + " |")
        print("|" + "---:|" * len(cpu))
        print("| " + " | ".join(f"{v:,}" for v in cpu.values()) + " |")
    print("\nThe server's CPU per request (tritonserver and its stubs, read from /proc; the generator's "
          "apart) against in-process ONNX Runtime's least CPU per row (one session, length-sorted batches)")
    print("| pipeline | server µs/request (concurrency) | generator µs/request | in-process µs/row (batch) | "
          "ratio |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        layout = r["in_process_best_layout"]
        print(f"| {r['pipeline']} | {r['server_cpu_us_per_request'] or 0:,} (c={r['best']['concurrency']}) | "
              f"{r['generator_cpu_us_per_request'] or 0:,} | {layout['cpu_us_per_row']:,} (b={layout['batch']}) | "
              f"{r['cpu_ratio'] if r['cpu_ratio'] is not None else '-'} |")
    for r in results:
        if "direct_model_rps" in r:
            print(f"\nembed ensemble vs minilm direct (pre-tokenized), "
                  f"concurrency {r['best']['concurrency']}: "
                  f"{r['best']['rps']:.0f} vs {r['direct_model_rps']:.0f} rps; p50 overhead "
                  f"{r['ensemble_overhead_ms_p50']:+.1f} ms")
    print(f"\nreport: {args.report_dir / 'pipeline-bench.json'}")
    return 0
