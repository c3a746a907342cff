"""Many callers that do not back off, against one Triton: what the client's adaptive limit buys.

    python -m tritonstack.loadtest.bench.storm --model-repository DIR [--callers 64] [--seconds 15]

``--callers`` threads share one ``client.Client`` and call ``embed`` with one evaluation sentence
each, closed loop: a caller sends its next request as soon as it has an answer or an error. Three
clients, one after another, against the same server:

* ``bare``: no retries; a refused caller sends again at once (the storm);
* ``retries``: the client retries refusals itself (``retry_overloaded``, backoff with jitter);
* ``adaptive``: the client's AIMD limit per replica (``adaptive_concurrency``), no retries.

Printed per client: goodput (answers/s), refusals/s, p50/p99 of the answers, and the server's CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

MODES = {
    "bare": {"retries": 0},
    "retries": {"retries": 3, "retry_overloaded": True},
    "adaptive": {"retries": 0, "adaptive_concurrency": True},
}


def storm(url: str, mode: str, callers: int, seconds: float, texts: list[str]) -> dict[str, float]:
    """One client, ``callers`` threads, ``seconds`` of closed-loop ``embed`` calls."""
    from tritonstack.client import Client, ClientError

    latencies: list[float] = []
    failures: dict[str, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    with Client(urls=[url], timeout_s=10.0, **MODES[mode]) as client:  # type: ignore[arg-type]
        def call(worker: int) -> None:
            i = worker
            while time.monotonic() < stop:
                start = time.perf_counter()
                try:
                    client.embed(texts[i % len(texts)])
                    with lock:
                        latencies.append(1000 * (time.perf_counter() - start))
                except ClientError as exc:
                    with lock:
                        failures[exc.status.value] = failures.get(exc.status.value, 0) + 1
                i += callers

        threads = [threading.Thread(target=call, args=(w,), daemon=True) for w in range(callers)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
    ordered = sorted(latencies)
    return {"goodput_rps": len(latencies) / wall, "failures_per_s": sum(failures.values()) / wall,
            "failures": failures, "p50_ms": statistics.median(ordered) if ordered else float("nan"),
            "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] if ordered else float("nan"),
            "answers": len(latencies), "seconds": wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonstack.loadtest.bench.storm",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, required=True, metavar="DIR")
    parser.add_argument("--callers", type=int, default=64, metavar="N")
    parser.add_argument("--seconds", type=float, default=15.0, metavar="S")
    parser.add_argument("--modes", default=",".join(MODES), help="default: %(default)s")
    parser.add_argument("--out", type=Path, default=Path("reports/storm"), metavar="DIR")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    if not 1 <= args.callers <= 1024 or not 1 <= args.seconds <= 600 or set(modes) - set(MODES):
        print(f"UsageError: --callers 1..1024, --seconds 1..600, --modes from {','.join(MODES)}",
              file=sys.stderr)
        return 2
    from tritonstack.demo.data import text_corpus
    from tritonstack.loadtest.runner.metrics import server_pid_for_port, tree_cpu_s
    from tritonstack.server import ServerConfig, TritonServer

    texts = [t for t in text_corpus().evaluation if t]
    results = {}
    with TritonServer(ServerConfig(model_repository=args.model_repository, grpc_port=0, http_port=0,
                                   metrics_port=0)) as server:
        pid = server_pid_for_port(int(server.grpc_url.rsplit(":", 1)[1])) or server.pid
        for mode in modes:
            time.sleep(2)  # the previous client's queue drains
            cpu = tree_cpu_s(pid)
            result = storm(server.grpc_url, mode, args.callers, args.seconds, texts)
            used = tree_cpu_s(pid)
            result["server_cpu_pct"] = (100 * (used - cpu) / result["seconds"]
                                        if used is not None and cpu is not None else float("nan"))
            results[mode] = result
            print(f"{mode:<9} goodput {result['goodput_rps']:6.1f}/s  refused or failed "
                  f"{result['failures_per_s']:7.1f}/s  p50 {result['p50_ms']:6.1f} ms  p99 "
                  f"{result['p99_ms']:6.1f} ms  server CPU {result['server_cpu_pct']:.0f} %  "
                  f"{result['failures']}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / time.strftime("storm-%Y%m%d-%H%M%S.json")
    report = {"callers": args.callers, "seconds": args.seconds, "results": results}
    path.write_text(json.dumps(report, indent=1))
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
