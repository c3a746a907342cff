"""Client overhead benchmark: client CPU microseconds per call against a trivial model.

    flock /tmp/bench.lock python -m tritonstack.loadtest.bench.client [--url HOST:PORT] [--calls 2000] [--json]

Without ``--url`` it starts its own Triton (``server`` package) on a temporary repository with
one trivial Python-backend model, ``add_one`` (FP32 [4] -> [4], no batching delay). Each
variant makes the same sequential call ``--calls`` times; CPU time is ``time.process_time()``
of this process (every thread, gRPC's own included), so the server's work is not counted.
Variants run interleaved for ``--rounds`` rounds; the median round is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as tc
import tritonclient.grpc.aio as tc_aio
from tritonclient.grpc import service_pb2_grpc

from tritonstack.client._aio import AsyncClient
from tritonstack.client._sync import Client
from tritonstack.client._tensors import build_request

MODEL = "add_one"
_MODEL_PY = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(
            "OUTPUT", pb_utils.get_input_tensor_by_name(r, "INPUT").as_numpy() + 1)])
            for r in requests]
'''
_CONFIG = textwrap.dedent(f"""\
    name: "{MODEL}"
    backend: "python"
    max_batch_size: 8
    input [{{ name: "INPUT", data_type: TYPE_FP32, dims: [4] }}]
    output [{{ name: "OUTPUT", data_type: TYPE_FP32, dims: [4] }}]
    instance_group [{{ kind: KIND_CPU, count: 1 }}]
    """)


def write_repository(root: Path) -> Path:
    (root / MODEL / "1").mkdir(parents=True)
    (root / MODEL / "1" / "model.py").write_text(_MODEL_PY)
    (root / MODEL / "config.pbtxt").write_text(_CONFIG)
    return root


def _measure(call: Callable[[], object], calls: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        call()
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


async def _measure_async(call: Callable[[], Awaitable[object]], calls: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.process_time() - cpu) / calls * 1e6, (time.perf_counter() - wall) / calls * 1e6


def run(url: str, calls: int, rounds: int, warmup: int = 200) -> dict[str, dict[str, float]]:
    """{variant: {"cpu_us": ..., "wall_us": ...}} (medians over rounds)."""
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    samples: dict[str, list[tuple[float, float]]] = {}

    ours = Client(urls=url)
    raw = tc.InferenceServerClient(url)
    channel = grpc.insecure_channel(url)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    prebuilt = build_request(MODEL, "", {"INPUT": x}, None)

    def tritonclient_call() -> object:
        inp = tc.InferInput("INPUT", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        return raw.infer(MODEL, [inp]).as_numpy("OUTPUT")

    sync_variants: dict[str, Callable[[], object]] = {
        "client.Client.infer": lambda: ours.infer(MODEL, {"INPUT": x})["OUTPUT"],
        "tritonclient.grpc (sync)": tritonclient_call,
        "bare grpc stub, prebuilt request (floor)": lambda: stub.ModelInfer(prebuilt, timeout=10),
    }

    async def async_rounds() -> None:
        aours = AsyncClient(urls=url)
        araw = tc_aio.InferenceServerClient(url)

        async def araw_call() -> object:
            inp = tc_aio.InferInput("INPUT", [1, 4], "FP32")
            inp.set_data_from_numpy(x)
            return (await araw.infer(MODEL, [inp])).as_numpy("OUTPUT")

        async def aours_call() -> object:
            return (await aours.infer(MODEL, {"INPUT": x}))["OUTPUT"]

        variants = {"client.AsyncClient.infer": aours_call, "tritonclient.grpc.aio": araw_call}
        for call in variants.values():
            for _ in range(warmup):
                await call()
        for _ in range(rounds):
            for name, call in variants.items():
                samples.setdefault(name, []).append(await _measure_async(call, calls))
        await aours.close()
        await araw.close()

    for call in sync_variants.values():
        _measure(call, warmup)
    for _ in range(rounds):
        for name, call in sync_variants.items():
            samples.setdefault(name, []).append(_measure(call, calls))
    asyncio.run(async_rounds())
    ours.close()
    raw.close()
    channel.close()
    return {name: {"cpu_us": statistics.median(s[0] for s in runs),
                   "wall_us": statistics.median(s[1] for s in runs)}
            for name, runs in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonstack.loadtest.bench.client",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running Triton serving add_one (default: start one)")
    parser.add_argument("--calls", type=int, default=2000, help="calls per round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default: %(default)s)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.url:
        results = run(args.url, args.calls, args.rounds)
    else:
        from tritonstack.server import ServerConfig, TritonServer

        with tempfile.TemporaryDirectory() as tmp:
            config = ServerConfig(model_repository=write_repository(Path(tmp)), http_port=0,
                                  grpc_port=0, metrics_port=0)
            with TritonServer(config) as server:
                results = run(server.grpc_url, args.calls, args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'variant':<44} {'client CPU us/call':>18} {'wall us/call':>13}")
        for name, r in results.items():
            print(f"{name:<44} {r['cpu_us']:>18.0f} {r['wall_us']:>13.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
