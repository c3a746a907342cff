"""``python -m tritonstack.server profile``: how a model repository starts, per model.

* **time to ready**: a Triton loading every model, from process start to ready;
* **load**: each model loaded alone (explicit model control), composing models before the
  ensembles over them; a model's load includes its initialization and its warmup requests;
* **first request vs steady state**: for each entry point (every ensemble, and every model no
  ensemble uses), the latency of the first request after ready against the median of the next
  ``requests``, each sent ``GAP_S`` after the previous answer, as the first one is (one row each,
  over a channel already open). The gap matters: on this 2-core machine a request that finds the
  server idle for 50 ms or more takes 1.6-2.2 ms on the digits CNN, against 0.65 ms back to back
  (the backend's threads wake up), so only equal gaps isolate what is cold about the first
  request. The back-to-back median is reported beside it;
* **memory**: resident memory of tritonserver and of each backend stub, at idle after loading and
  at its peak during a short burst of concurrent requests to every entry point.

A model whose first request takes more than ``FIRST_REQUEST_BOUND`` times its steady median has a
cold path its warmup does not cover; ``profile`` says so and exits 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tritonstack.server.config import ModelControl, ServerConfig
from tritonstack.server.process import TritonServer
from tritonstack.server.stubs import process_label

FIRST_REQUEST_BOUND = 2.0
GAP_S = 0.1  # idle time before each timed request, the first one included
SAMPLE_TEXT = "How do I reset my password?"
_NUMPY = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_FP64": np.float64, "TYPE_INT64": np.int64,
          "TYPE_INT32": np.int32, "TYPE_INT8": np.int8, "TYPE_UINT8": np.uint8, "TYPE_BOOL": np.bool_}


@dataclasses.dataclass
class ModelStart:
    name: str
    kind: str  # "ensemble" or the backend
    warmup: bool
    load_s: float
    entry_point: bool = False
    first_ms: float | None = None
    steady_p50_ms: float | None = None  # requests GAP_S apart, as the first
    back_to_back_p50_ms: float | None = None

    @property
    def first_over_p50(self) -> float | None:
        if self.first_ms is None or not self.steady_p50_ms:
            return None
        return self.first_ms / self.steady_p50_ms


@dataclasses.dataclass
class Profile:
    repository: str
    time_to_ready_s: float
    server_alone_s: float
    models: list[ModelStart]
    memory_idle_mb: dict[str, float]
    memory_load_mb: dict[str, float]
    requests: int

    @property
    def slow_first(self) -> list[ModelStart]:
        return [m for m in self.models if (m.first_over_p50 or 0.0) > FIRST_REQUEST_BOUND]

    def to_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        for row, model in zip(out["models"], self.models, strict=True):
            row["first_over_p50"] = model.first_over_p50
        return out

    def markdown(self) -> str:
        lines = [f"Repository {self.repository}: ready with every model in **{self.time_to_ready_s:.1f} s** "
                 f"(tritonserver alone, no model: {self.server_alone_s:.1f} s).", "",
                 f"| model | kind | warmup | load (s) | first request (ms) "
                 f"| steady p50, {GAP_S * 1000:.0f} ms apart (ms) | first / p50 | back-to-back p50 (ms) |",
                 "|---|---|---|---:|---:|---:|---:|---:|"]
        for m in self.models:
            ratio = m.first_over_p50
            lines.append(
                f"| {m.name} | {m.kind} | {'yes' if m.warmup else 'n/a' if m.kind == 'ensemble' else 'no'} "
                f"| {m.load_s:.2f} | {_ms(m.first_ms)} | {_ms(m.steady_p50_ms)} "
                f"| {'' if ratio is None else f'{ratio:.2f}'}"
                f"{' **over 2x**' if ratio is not None and ratio > FIRST_REQUEST_BOUND else ''} "
                f"| {_ms(m.back_to_back_p50_ms)} |")
        lines += ["", "| process | idle (MB) | peak under load (MB) |", "|---|---:|---:|"]
        for label in sorted(self.memory_idle_mb):
            lines.append(f"| {label} | {self.memory_idle_mb[label]:.0f} | "
                         f"{self.memory_load_mb.get(label, float('nan')):.0f} |")
        total_idle, total_load = sum(self.memory_idle_mb.values()), sum(self.memory_load_mb.values())
        lines.append(f"| **all** | **{total_idle:.0f}** | **{total_load:.0f}** |")
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def profile_repository(repository: Path, *, requests: int = 50, burst_s: float = 3.0,
                       progress: Callable[[str], None] = print) -> Profile:
    """Start, load and probe ``repository`` (two short-lived Tritons on free ports)."""
    repository = Path(repository).resolve()
    base = dict(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0,
                model_control=ModelControl.EXPLICIT)
    started = time.monotonic()
    with TritonServer(ServerConfig(**base, load_models=("*",))).start():  # type: ignore[arg-type]
        time_to_ready = time.monotonic() - started
    progress(f"every model ready in {time_to_ready:.1f} s")

    started = time.monotonic()
    with TritonServer(ServerConfig(**base)).start() as server:  # type: ignore[arg-type]
        alone = time.monotonic() - started
        import tritonclient.grpc as grpcclient

        with grpcclient.InferenceServerClient(server.grpc_url) as client:
            configs = _configs(repository)
            models = []
            for name in _load_order(configs):
                t = time.monotonic()
                client.load_model(name)
                models.append(ModelStart(name, _kind(configs[name]), bool(configs[name].get("model_warmup")),
                                         time.monotonic() - t))
                progress(f"  loaded {name:<22} {models[-1].load_s:6.2f} s")
            idle = _rss_by_process(server.pid)
            used = {s["model_name"] for c in configs.values()
                    for s in c.get("ensemble_scheduling", {}).get("step", [])}
            entries = [m for m in models if m.kind == "ensemble" or m.name not in used]
            if entries:
                _warm_client(client, entries[0].name, _inputs(configs[entries[0].name]))
            for model in entries:
                model.entry_point = True
                inputs = _inputs(configs[model.name])
                client.get_model_metadata(model.name)  # the channel is open before the clock starts
                model.first_ms, model.steady_p50_ms, model.back_to_back_p50_ms = _first_and_steady(
                    client, model.name, inputs, requests)
                progress(f"  {model.name:<22} first {model.first_ms:7.1f} ms, steady p50 "
                         f"{model.steady_p50_ms:6.1f} ms ({model.back_to_back_p50_ms:.1f} back to back)")
            peak = _burst(server.grpc_url, server.pid, [(m.name, _inputs(configs[m.name])) for m in entries],
                          burst_s)
    return Profile(str(repository), time_to_ready, alone, models, idle, peak, requests)


def _configs(repository: Path) -> dict[str, dict]:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    configs = {}
    for path in sorted(repository.glob("*/config.pbtxt")):
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        configs[path.parent.name] = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return configs


def _kind(config: dict) -> str:
    if config.get("platform") == "ensemble":
        return "ensemble"
    return config.get("backend") or config.get("platform", "")


def _load_order(configs: dict[str, dict]) -> list[str]:
    """Models before the ensembles over them (an ensemble's load would load its steps)."""
    return sorted(configs, key=lambda n: (_kind(configs[n]) == "ensemble", n))


def _inputs(config: dict) -> list:
    """One row per input, from the config: a sentence for text, ones for integers (valid token
    ids), zeros for floats (valid pixels and logits); a variable axis gets length 8."""
    import tritonclient.grpc as grpcclient

    batched = int(config.get("max_batch_size", 0)) > 0
    out = []
    for spec in config.get("input", []):
        dims = [int(d) if int(d) > 0 else 8 for d in spec.get("dims", [])]
        shape = [1, *dims] if batched else dims
        data_type = spec.get("data_type", "TYPE_FP32")
        if data_type == "TYPE_STRING":
            array = np.full(shape, SAMPLE_TEXT.encode(), dtype=object)
            datatype = "BYTES"
        else:
            dtype = _NUMPY[data_type]
            array = (np.ones if np.issubdtype(dtype, np.integer) else np.zeros)(shape, dtype)
            datatype = data_type.removeprefix("TYPE_")
        tensor = grpcclient.InferInput(spec["name"], shape, datatype)
        tensor.set_data_from_numpy(array)
        out.append(tensor)
    return out


def _warm_client(client, name: str, inputs: list) -> None:  # noqa: ANN001
    """The client's own first inference (stub, serializers) on a request Triton refuses before any
    model runs (a version that does not exist), so the first figure is the server's alone."""
    from tritonclient.utils import InferenceServerException

    for _ in range(3):
        with contextlib.suppress(InferenceServerException):
            client.infer(name, inputs, model_version="999999")


def _first_and_steady(client, name: str, inputs: list, requests: int) -> tuple[float, float, float]:  # noqa: ANN001
    """(first, median of the next ``requests`` each after GAP_S idle, median back to back), ms."""
    def timed(gap_s: float) -> float:
        time.sleep(gap_s)
        t = time.perf_counter()
        client.infer(name, inputs)
        return 1000 * (time.perf_counter() - t)

    first = timed(GAP_S)
    steady = statistics.median(timed(GAP_S) for _ in range(requests))
    back_to_back = statistics.median(timed(0.0) for _ in range(requests))
    return first, steady, back_to_back


def _burst(url: str, pid: int | None, entries: list[tuple[str, list]], seconds: float,
           threads_per_entry: int = 2) -> dict[str, float]:
    """Peak RSS per process while every entry point gets concurrent requests for ``seconds``."""
    import tritonclient.grpc as grpcclient

    stop = time.monotonic() + seconds
    peak: dict[str, float] = {}

    def send(name: str, inputs: list) -> None:
        with grpcclient.InferenceServerClient(url) as client:
            while time.monotonic() < stop:
                client.infer(name, inputs)

    workers = [threading.Thread(target=send, args=entry, daemon=True)
               for entry in entries for _ in range(threads_per_entry)]
    for worker in workers:
        worker.start()
    while any(w.is_alive() for w in workers):
        for label, mb in _rss_by_process(pid).items():
            peak[label] = max(peak.get(label, 0.0), mb)
        time.sleep(0.1)
    for worker in workers:
        worker.join()
    return peak


def _rss_by_process(pid: int | None) -> dict[str, float]:
    """MB resident per process: ``tritonserver`` and each stub by its model instance."""
    import psutil

    if pid is None:
        return {}
    out: dict[str, float] = {}
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return out
    for proc in processes:
        try:
            out[process_label(proc)] = proc.memory_info().rss / 2**20
        except psutil.Error:
            continue
    return out


def write_report(result: Profile, out_dir: Path) -> Path:
    """``profile.json`` and ``profile.md`` in a new folder under ``out_dir``."""
    folder = Path(out_dir) / time.strftime("cold-start-%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profile.json").write_text(json.dumps(result.to_dict(), indent=1))
    (folder / "profile.md").write_text("# Cold start\n\n" + result.markdown() + "\n")
    return folder
