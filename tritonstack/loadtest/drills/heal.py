"""``python -m tritonstack.loadtest heal-drill``: kill each backend stub of a repository under load, and measure.

A Triton of our own serves the repository under the launcher's supervisor (the same code as
``python -m tritonstack.server serve``). Client threads call the pipelines on 127.0.0.1 without pause, half
with the client library's retries off (what a bare gRPC caller sees) and half with its defaults
(retries with backoff). Then, one model at a time, one of its backend stubs gets SIGKILL, and the
drill records how long the launcher took to notice (readiness false) and to recover (ready
again, and the first successful answer of each pipeline), and how many requests failed.

Bounded: at most ``max_seconds`` in all and ``timeout_s`` per recovery; stops by itself.
Exit code: 0 every model recovered within ``timeout_s``; 1 one did not.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tritonstack.client import Client, ClientError

PIPELINES: dict[str, Callable[[Client], object]] = {
    "embed": lambda c: c.embed(["where is my parcel"]),
    "classify_digit": lambda c: c.classify_digits(np.full((1, 8, 8), 8.0, np.float32)),
}


@dataclasses.dataclass
class Recovery:
    """One killed stub: what the supervisor saw and what callers saw."""

    model: str
    detected_s: float | None  # kill -> launcher readiness false
    ready_s: float | None  # kill -> launcher readiness true again
    first_success_s: dict[str, float | None]  # pipeline -> kill -> answering again (0: never failed)
    failed: dict[str, dict[str, int]]  # pipeline -> {"bare": n, "with retries": n} failed after kill
    calls: dict[str, int]  # pipeline -> calls completed from the kill to recovery + 2 s

    @property
    def recovered(self) -> bool:
        return self.ready_s is not None and all(v is not None for v in self.first_success_s.values())

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self) | {"recovered": self.recovered}


class _Load:
    """Client threads calling the pipelines until stopped; each result is (time, pipeline, kind, ok)."""

    def __init__(self, url: str, pipelines: list[str], threads_per_kind: int, max_seconds: float) -> None:
        self.results: list[tuple[float, str, str, bool]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [
            threading.Thread(target=self._run, args=(url, p, kind), daemon=True)
            for p in pipelines for kind in ("bare", "with retries") for _ in range(threads_per_kind)
        ]

    def _run(self, url: str, pipeline: str, kind: str) -> None:
        call = PIPELINES[pipeline]
        with Client(urls=url, timeout_s=10, retries=0 if kind == "bare" else 3) as client:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                try:
                    call(client)
                    ok = True
                except ClientError:
                    ok = False
                with self._lock:
                    self.results.append((time.monotonic(), pipeline, kind, ok))
                if not ok:
                    time.sleep(0.01)  # a failing call returns at once: do not spin

    def __enter__(self) -> _Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    def since(self, start: float) -> list[tuple[float, str, str, bool]]:
        with self._lock:
            return [r for r in self.results if r[0] >= start]


def run_drill(repository: Path, *, models: tuple[str, ...] = (),
              pipelines: tuple[str, ...] = tuple(PIPELINES), threads_per_kind: int = 2,
              settle_s: float = 3.0, timeout_s: float = 60.0,
              max_seconds: float = 600.0, log: Callable[[str], None] = print) -> list[Recovery]:
    """Kill one stub of each model (default: every model with a backend stub) and measure."""
    from tritonstack.server import ModelControl, ServerConfig, TritonServer
    from tritonstack.server.stubs import backend_stubs
    from tritonstack.server.supervise import Supervisor, SupervisorConfig

    unknown = [p for p in pipelines if p not in PIPELINES]
    if unknown:
        raise ValueError(f"unknown pipeline(s) {unknown}; choose from {sorted(PIPELINES)}")
    server = TritonServer(ServerConfig(model_repository=repository, http_port=0, grpc_port=0, metrics_port=0,
                                       model_control=ModelControl.EXPLICIT, load_models=("*",)))
    supervisor = Supervisor(server, SupervisorConfig(interval_s=0.5),
                            log=lambda line: log(f"  launcher: {line}"))
    stop = threading.Event()
    failure: list[str] = []

    def supervise() -> None:
        while not stop.wait(0.5):
            reason = supervisor.check()
            if reason:
                failure.append(reason)
                return

    server.start()
    watcher = threading.Thread(target=supervise, daemon=True)
    watcher.start()
    results: list[Recovery] = []
    try:
        targets = list(models) or sorted({s.model for s in backend_stubs(server.pid or 0) if s.model})
        with _Load(server.grpc_url, list(pipelines), threads_per_kind, max_seconds) as load:
            for model in targets:
                time.sleep(settle_s)
                alive = [s for s in backend_stubs(server.pid or 0) if s.model == model and not s.dead]
                stub = alive[0] if alive else None
                if stub is None:
                    raise ValueError(f"model {model!r} has no live backend stub in {repository}")
                killed = time.monotonic()
                os.kill(stub.pid, signal.SIGKILL)
                detected = ready = None
                while time.monotonic() - killed < timeout_s and not failure:
                    if detected is None and not supervisor.ready:
                        detected = time.monotonic() - killed
                    if detected is not None and supervisor.ready:
                        ready = time.monotonic() - killed
                        break
                    time.sleep(0.02)
                time.sleep(2.0)
                window = load.since(killed)
                first = {p: _answering_again(window, p, killed) for p in pipelines}
                failed = {p: {k: sum(1 for _, q, kind, ok in window if q == p and kind == k and not ok)
                              for k in ("bare", "with retries")} for p in pipelines}
                calls = {p: sum(1 for _, q, _, _ in window if q == p) for p in pipelines}
                results.append(Recovery(model, detected, ready, first, failed, calls))
                log(f"killed a stub of {model}: " + _describe(results[-1]))
                if failure:
                    break
    finally:
        stop.set()
        watcher.join(10)
        supervisor.stop()
        server.close()
    if failure:
        log(f"the launcher gave up: {failure[0]}")
    return results


def _answering_again(window: list[tuple[float, str, str, bool]], pipeline: str,
                     killed: float) -> float | None:
    """Seconds from the kill to the first success after the pipeline's last failure (0: none failed)."""
    calls = [(t, ok) for t, q, _, ok in window if q == pipeline]
    last_failure = max((t for t, ok in calls if not ok), default=None)
    if last_failure is None:
        return 0.0
    return next((t - killed for t, ok in calls if ok and t > last_failure), None)


def _describe(r: Recovery) -> str:
    def s(v: float | None) -> str:
        return "never" if v is None else f"{v:.1f} s"

    parts = [f"not ready after {s(r.detected_s)}, ready again after {s(r.ready_s)}"]
    for p, t in r.first_success_s.items():
        f = r.failed[p]
        parts.append(f"{p}: answering after {s(t)}, failed {f['bare']} bare / {f['with retries']} "
                     f"with retries of {r.calls[p]}")
    return "; ".join(parts)
