"""The cost of the HTTP front's hop: `embed` with one sentence a request, called over gRPC
directly (tritonstack.client.AsyncClient) and through the front (OpenAI's /v1/embeddings, which
also counts tokens, and TEI's /embed with truncate=true, which does not), at a few concurrencies.

    flock /tmp/bench.lock python scripts/bench_http.py --url 127.0.0.1:8001 --model-repository DIR

It starts the front itself (python -m tritonstack.http serve --port 0, one process) against a
running Triton serving DIR, drives it closed-loop from this process (httpx for HTTP, one
connection per caller; the asyncio client for gRPC), and prints one markdown table: requests
per second, p50 and p99 latency, and CPU per request of the front's process (utime + stime
from /proc) and of this load generator. Everything shares the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tritonstack.cli import duration  # noqa: E402
from tritonstack.client import AsyncClient  # noqa: E402

SUBJECTS = ["my parcel", "the refund", "my password", "the invoice", "my subscription", "the delivery"]
ASKS = ["Where is {}?", "How do I change {}?", "Why was {} late?", "Can you cancel {} please?",
        "I have a question about {} from last week.", "Nothing works with {} since yesterday."]
SENTENCES = [ask.format(subject) for ask in ASKS for subject in SUBJECTS]
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _point(mode: str, concurrency: int, seconds: float, warmup: float, url: str, front: str,
                 front_pid: int) -> dict[str, float]:
    grpc = AsyncClient(urls=url, timeout_s=30.0) if mode == "grpc" else None
    http = httpx.AsyncClient(base_url=front, timeout=30.0,
                             limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))

    async def call(text: str) -> None:
        if grpc is not None:
            await grpc.embed([text])
            return
        if mode == "openai":
            answer = await http.post("/v1/embeddings", json={"model": "embed", "input": text})
        else:
            answer = await http.post("/embed", json={"inputs": text, "truncate": True})
        if answer.status_code != 200:
            raise RuntimeError(f"{mode}: {answer.status_code} {answer.text[:200]}")

    latencies: list[float] = []
    state = {"record": False, "stop": False}

    async def caller(k: int) -> None:
        i = k
        while not state["stop"]:
            start = time.perf_counter()
            await call(SENTENCES[i % len(SENTENCES)])
            if state["record"]:
                latencies.append(time.perf_counter() - start)
            i += concurrency

    tasks = [asyncio.create_task(caller(k)) for k in range(concurrency)]
    await asyncio.sleep(warmup)
    front_cpu, own_cpu, began = _cpu_s(front_pid), _self_cpu_s(), time.perf_counter()
    state["record"] = True
    await asyncio.sleep(seconds)
    state["record"] = False
    elapsed = time.perf_counter() - began
    front_used, own_used = _cpu_s(front_pid) - front_cpu, _self_cpu_s() - own_cpu
    state["stop"] = True
    await asyncio.gather(*tasks)
    await http.aclose()
    if grpc is not None:
        await grpc.close()
    n = len(latencies)
    ms = np.array(latencies) * 1000
    return {"mode": mode, "concurrency": concurrency, "requests": n, "rps": n / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "front_cpu_us": 0.0 if mode == "grpc" else front_used / n * 1e6,
            "loadgen_cpu_us": own_used / n * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, metavar="HOST:PORT", help="Triton's gRPC address")
    parser.add_argument("--model-repository", type=Path, required=True, metavar="DIR")
    parser.add_argument("--concurrency", type=int, action="append", help="repeatable (default: 1, 4, 16)")
    parser.add_argument("--duration", type=duration, default=10.0, metavar="DURATION", help="per point (default: 10s)")
    parser.add_argument("--warmup", type=duration, default=2.0, metavar="DURATION", help="per point (default: 2s)")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    front = subprocess.Popen([sys.executable, "-m", "tritonstack.http", "serve", "--port", "0", "--url", args.url,
                              "--model-repository", str(args.model_repository), "--max-inputs", "64"],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = front.stdout.readline() if front.stdout else ""
        if "listening on " not in line:
            print(f"the front did not start: {line.strip()}", file=sys.stderr)
            return 3
        front_url = line.split("listening on ", 1)[1].split()[0]
        rows = []
        for concurrency in args.concurrency or [1, 4, 16]:
            for mode in ("grpc", "openai", "tei"):
                row = asyncio.run(_point(mode, concurrency, args.duration, args.warmup, args.url, front_url,
                                         front.pid))
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    finally:
        front.terminate()
        front.wait(timeout=10)
    names = {"grpc": "gRPC direct (`AsyncClient.embed`)", "openai": "front, OpenAI `/v1/embeddings` (counts tokens)",
             "tei": "front, TEI `/embed` (`truncate=true`)"}
    print("| concurrency | path | rps | p50 ms | p99 ms | front CPU µs/req | load generator CPU µs/req |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        front_cpu = "–" if r["mode"] == "grpc" else f"{r['front_cpu_us']:,.0f}"
        print(f"| {r['concurrency']} | {names[r['mode']]} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
              f"| {front_cpu} | {r['loadgen_cpu_us']:,.0f} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
