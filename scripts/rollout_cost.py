"""What a rollout costs each request, measured with perf_analyzer on a copy of the demo repository:

* the router step itself: each pipeline's top throughput (closed loop, --concurrency) and the
  server's CPU per request, straight to the model and through the router with the split at 0 %
  (every request still answered by the primary, through BLS);
* shadow traffic: at half the pipeline's capacity (a fixed request rate), the primary's p99
  without a rollout, through the router without copies, and with 50 % and 100 % of requests
  copied to the candidate.

    python scripts/rollout_cost.py --model-repository DIR [--pipelines classify_digit,embed]

The candidate is the repository's other version of each model (the demo keeps two). Writes
reports/rollout-cost-TIME/cost.json and prints a markdown table. Run it alone (flock
/tmp/bench.lock): it measures speed on shared cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"classify_digit": "digits_cnn", "embed": "minilm"}
# embed's model refuses past 8 queued requests (its overload bound); perf_analyzer stops at a refusal
CONCURRENCY = {"classify_digit": 16, "embed": 8}


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two samples: processes that ended in between are not subtracted (a
    stub unloaded with the router takes its time with it); new ones count from zero."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def _policies(pid: int | None, model: str, version: int) -> list[str]:
    """Scheduling policy of each thread of the candidate's stub (its command line names the
    model's folder and the version), e.g. ['SCHED_IDLE', ...]."""
    import os

    import psutil

    names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_IDLE: "SCHED_IDLE", os.SCHED_BATCH: "SCHED_BATCH"}
    found = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            line = " ".join(proc.cmdline())
            if f"/{model}/{version}/model.py" in line or f"/{model}/{version} " in line:
                found += [names.get(os.sched_getscheduler(t.id), "?") for t in proc.threads()]
        except (psutil.Error, OSError):
            continue
    return sorted(set(found))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--pipelines", default="classify_digit,embed")
    parser.add_argument("--duration", type=float, default=5.0, help="perf_analyzer window, seconds")
    parser.add_argument("--shares", default="0,10,50,100", help="%% of requests shadowed, at half capacity")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tritonstack.loadtest.bench import perf_analyzer as crosscheck
    from tritonstack.loadtest.campaign import Traffic
    from tritonstack.loadtest.errors import RunFailed
    from tritonstack.loadtest.runner.metrics import cpu_by_process, scrape
    from tritonstack.rollout.controller import Rollout, Target
    from tritonstack.server import ServerConfig, TritonServer

    out = ROOT / "reports" / f"rollout-cost-{time.strftime('%Y%m%d-%H%M%S')}"
    results: dict = {"cpu": _cpu(), "concurrency": CONCURRENCY, "pipelines": {}}
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp) / "repo"
        shutil.copytree(args.model_repository, repository, ignore=shutil.ignore_patterns("__pycache__"))
        from tritonstack.converters import carry

        for model in MODELS.values():  # both versions run today's runner, whenever they were exported
            for version in (repository / model).iterdir():
                if version.name.isdigit():
                    carry.copy_into(version, "ort_runner")
        config = ServerConfig(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0,
                              model_control="explicit", load_models=("*",))
        with TritonServer(config) as triton:
            for pipeline in args.pipelines.split(","):
                model = MODELS[pipeline]
                traffic = Traffic(model=pipeline, pipeline=pipeline)
                rollout = Rollout(Target(repository, (triton.grpc_url,), (triton.metrics_url,)), model,
                                  progress=lambda _: None)

                def measure(label: str, rate: float | None = None, pipeline: str = pipeline,
                            traffic: Traffic = traffic) -> dict:
                    before = (cpu_by_process(triton.pid), scrape(triton.metrics_url) or {})
                    for attempt in range(3):  # two shared cores: perf_analyzer may not settle
                        try:
                            row = crosscheck.run(traffic, triton.grpc_url, out / pipeline / label,
                                                 rate=rate, concurrency=CONCURRENCY[pipeline],
                                                 duration_s=args.duration)
                            break
                        except RunFailed as exc:
                            if "stable" not in str(exc) or attempt == 2:
                                raise
                            before = (cpu_by_process(triton.pid), scrape(triton.metrics_url) or {})
                    after = (cpu_by_process(triton.pid), scrape(triton.metrics_url) or {})
                    served = (after[1].get(pipeline, {}).get("nv_inference_request_success", 0)
                              - before[1].get(pipeline, {}).get("nv_inference_request_success", 0))
                    cpu = _cpu_spent(before[0], after[0]) / served * 1e6 if served else None
                    row["server_cpu_us_per_request"] = cpu
                    print(f"  {pipeline:<15} {label:<28} {row['rps']:8.1f} rps  p50 {row['p50_ms']:6.2f} ms  "
                          f"p99 {row['p99_ms']:6.2f} ms  CPU {cpu or 0:6.0f} µs/req", flush=True)
                    return {k: v for k, v in row.items() if k != "command"}

                versions = sorted(int(p.name) for p in (repository / model).iterdir() if p.name.isdigit())
                served = rollout.served()[-1]
                candidate = next(v for v in reversed(versions) if v != served)
                rows: dict = {"model": model, "primary": served, "candidate": candidate}
                rows["direct"] = measure("direct")
                rollout.start(candidate, "split")
                try:
                    rollout.set_split(weight=0, compare=0)
                    rows["router"] = measure("router, split at 0 %")
                    rate = round(rows["direct"]["rps"] / 2)
                    rows["half_capacity_rps"] = rate
                    rollout.finish(promote=False)
                    rows["direct_at_half"] = measure(f"direct at {rate} rps", rate)
                    rollout.start(candidate, "shadow")
                    for share in (int(x) for x in args.shares.split(",")):
                        rollout.set_split(weight=0, compare=share, mode="shadow")
                        rows[f"shadow_{share}_at_half"] = measure(f"shadow {share} % at {rate} rps", rate)
                    rows["candidate_scheduling"] = _policies(triton.pid, model, candidate)
                finally:
                    if rollout.split() is not None:
                        rollout.finish(promote=False)
                results["pipelines"][pipeline] = rows
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nCPU: {results['cpu']}; perf_analyzer --concurrency {CONCURRENCY} (top throughput), "
          f"then a fixed rate at half of it\n")
    print("| pipeline | setup | rps | p50 ms | p99 ms | server CPU µs/request |")
    print("|---|---|---:|---:|---:|---:|")
    for pipeline, rows in results["pipelines"].items():
        for key, label in (("direct", "straight to the model"), ("router", "through the router, 0 %"),
                           ("direct_at_half", f"straight, at {rows['half_capacity_rps']} rps"),
                           *((f"shadow_{x}_at_half", f"router, {x} % shadowed" if x else "router, no copies")
                             for x in (int(x) for x in args.shares.split(",")))):
            r = rows[key]
            cpu = r["server_cpu_us_per_request"]
            print(f"| {pipeline} | {label} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{'–' if cpu is None else f'{cpu:,.0f}'} |")
    print(f"\n{out / 'cost.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
