"""Cross-check a campaign's target with Triton's own ``perf_analyzer`` (C++, from the tritonclient wheel).

The same requests as the Locust run (the campaign's first traffic entry's payload pool, written as
perf_analyzer ``--input-data`` JSON) at the same rate (the first measured stage's RPS) or a fixed
concurrency. perf_analyzer needs ``libb64.so.0d`` and ``libcudart.so.12``, which the
nvidia-pytriton wheel ships under hashed names: they are linked under their sonames into a private
folder put on ``LD_LIBRARY_PATH``. Results go to ``perf_analyzer.csv`` and ``perf_analyzer.json``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tritonstack.loadtest.campaign import spec as campaigns
from tritonstack.loadtest.errors import CampaignError, RunFailed, TargetError
from tritonstack.loadtest.runner import payloads
from tritonstack.loadtest.runner.payloads import _NUMPY

_SONAMES = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


def find_perf_analyzer() -> Path:
    """The perf_analyzer binary next to this Python (the tritonclient wheel's), else on PATH."""
    here = Path(sys.executable).parent / "perf_analyzer"
    found = here if here.exists() else (Path(p) if (p := shutil.which("perf_analyzer")) else None)
    if found is None:
        raise RunFailed("perf_analyzer not found: it ships in the tritonclient==2.51.0 wheel "
                        "(pip install 'tritonclient[grpc]==2.51.0'); the PyPI package perf-analyzer is empty")
    return found


def library_dir() -> Path:
    """A private folder with the two shared libraries perf_analyzer needs, under their sonames."""
    import site

    libs = [Path(p) / "nvidia_pytriton.libs" for p in site.getsitepackages()]
    folder = Path(tempfile.gettempdir()) / f"loadtest-perf-analyzer-libs-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    for soname, pattern in _SONAMES.items():
        link = folder / soname
        if link.exists():
            continue
        matches = sorted(m for d in libs if d.is_dir() for m in d.glob(pattern))
        if not matches:
            raise RunFailed(f"{soname} not found (looked for {pattern} in nvidia_pytriton.libs); "
                            "install nvidia-pytriton (make venv) or put the library on LD_LIBRARY_PATH")
        link.symlink_to(matches[0])
    return folder


def input_data(traffic: campaigns.Traffic, limit: int = 64) -> dict[str, Any]:
    """perf_analyzer ``--input-data`` JSON with the same tensors as the Locust run's pool."""
    from tritonclient.grpc import service_pb2

    entries = []
    for raw in payloads.build_pool(dataclasses.replace(traffic, pool=min(traffic.pool, limit))):
        request = service_pb2.ModelInferRequest.FromString(raw)
        entry = {}
        for tensor, content in zip(request.inputs, request.raw_input_contents, strict=True):
            shape = list(tensor.shape)[1:]  # perf_analyzer adds the batch dimension (-b)
            if tensor.datatype == "BYTES":
                values, offset = [], 0
                while offset < len(content):
                    n = int.from_bytes(content[offset:offset + 4], "little")
                    values.append(content[offset + 4:offset + 4 + n].decode("utf-8", "replace"))
                    offset += 4 + n
            else:
                values = np.frombuffer(content, _NUMPY[tensor.datatype]).tolist()
            entry[tensor.name] = {"content": values, "shape": shape}
        entries.append(entry)
    return {"data": entries}


def parse_csv(path: Path) -> dict[str, float]:
    """The last row of perf_analyzer's ``-f`` CSV, latencies converted to milliseconds."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise RunFailed(f"perf_analyzer wrote no results to {path}")
    row = rows[-1]
    out = {"rps": float(row["Inferences/Second"])}
    for key in ("p50", "p90", "p95", "p99"):
        out[f"{key}_ms"] = float(row[f"{key} latency"]) / 1000
    out["avg_ms"] = float(row["Avg latency"]) / 1000 if "Avg latency" in row else 0.0
    for key in ("Server Queue", "Server Compute Infer"):
        if key in row:
            out[key.lower().replace(" ", "_") + "_ms"] = float(row[key]) / 1000
    return out


def run(traffic: campaigns.Traffic, grpc_url: str, out: Path, *, rate: float | None, concurrency: int,
        duration_s: float, data_json: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run perf_analyzer once (one rate or concurrency level) and return its parsed result.

    ``data_json`` replaces the traffic's own payload pool (``--input-data`` format).
    """
    out.mkdir(parents=True, exist_ok=True)
    data = out / "perf_analyzer_input.json"
    data.write_text(json.dumps(data_json or input_data(traffic)))
    cmd = [str(find_perf_analyzer()), "-m", traffic.model, "-u", grpc_url, "-i", "grpc",
           "--input-data", str(data), "-b", str(traffic.batch), "--measurement-mode", "time_windows",
           "-p", str(int(duration_s * 1000)), "--max-trials", "6", "--stability-percentage", "25",
           "-f", str(out / "perf_analyzer.csv")]
    if traffic.version:
        cmd += ["-x", traffic.version]
    cmd += ["--request-rate-range", f"{rate:g}"] if rate else ["--concurrency-range", str(concurrency)]
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(
        filter(None, [str(library_dir()), os.environ.get("LD_LIBRARY_PATH")]))}
    timeout = duration_s * 6 + 60
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"perf_analyzer ran past {timeout:.0f} s and was killed") from None
    (out / "perf_analyzer.txt").write_text(" ".join(cmd) + "\n\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0 or not (out / "perf_analyzer.csv").exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise RunFailed(f"perf_analyzer exited with {proc.returncode}:\n{tail}")
    mode = f"request rate {rate:g}" if rate else f"concurrency {concurrency}"
    result = {"model": traffic.model, "mode": mode, "command": cmd, **parse_csv(out / "perf_analyzer.csv")}
    (out / "perf_analyzer.json").write_text(json.dumps(result, indent=2))
    return result


def main(args: argparse.Namespace) -> int:
    """``python -m tritonstack.loadtest perf-analyzer``: resolve the target, run, print one comparable line."""
    try:
        campaign = campaigns.load(args.target)
        traffic = campaign.traffic[0]
        stage = next((s for s in campaign.stages if s.measure and s.rps), None)
        default_rate = stage.rps if stage else None
        grpc_url = args.target_url or campaign.target.grpc
    except CampaignError:
        if Path(args.target).suffix in (".toml", ".yaml", ".yml"):
            raise
        traffic = campaigns.Traffic(model=args.target, pipeline=args.target
                                    if args.target in campaigns.PIPELINES else None)
        if traffic.pipeline is None:
            raise CampaignError(f"{args.target!r} is neither a campaign nor a demo pipeline; for another "
                                "model write a campaign with its [inputs]") from None
        default_rate, grpc_url = None, args.target_url or campaigns.Target.grpc
    rate = args.rate if args.rate is not None else (None if args.concurrency_given else default_rate)
    out = args.out or Path("reports") / "loadtest" / f"perf_analyzer-{traffic.model}"
    server = None
    try:
        if args.model_repository is not None:
            from tritonstack.server import ServerConfig, ServerError, TritonServer

            try:
                server = TritonServer(ServerConfig(model_repository=args.model_repository, http_port=0,
                                                   grpc_port=0, metrics_port=0)).start()
            except ServerError as exc:
                raise TargetError(f"could not start Triton on {args.model_repository}: {exc}") from None
            grpc_url = server.grpc_url
        result = run(traffic, grpc_url, out, rate=rate, concurrency=args.concurrency,
                     duration_s=args.duration)
    finally:
        if server is not None:
            server.close()
    if args.json:
        print(json.dumps({**{k: v for k, v in result.items() if k != "command"},
                          "report": str(out / "perf_analyzer.json")}, indent=2))
        return 0
    print(f"perf_analyzer {traffic.model} ({result['mode']}): {result['rps']:.1f} infer/s, "
          f"p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
    print(f"report: {out / 'perf_analyzer.json'}")
    return 0
