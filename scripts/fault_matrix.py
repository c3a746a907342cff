"""The fault matrix (issue #32): each fault injected under load on the demo repository, with what
a retrying client lost, how long recovery took and what the launcher's readiness probe said.

    flock /tmp/bench.lock .venv/bin/python scripts/fault_matrix.py --model-repository model_repository

Each fault gets a fresh launcher (``--restart-on-failure 2``) and a paced load of ``--rate``
requests/s on ``embed`` from ``--callers`` threads using the project's client (3 retries on
UNAVAILABLE, a 5 s deadline): a request counts as lost only when the client gave up. The
readiness probe (the launcher's /v2/health/ready) is polled every 100 ms. Writes
``OUT/fault-matrix.json`` and ``OUT/fault-matrix.md`` (the table in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tritonstack.client import Client, ClientConfig, ClientError  # noqa: E402
from tritonstack.loadtest.report.machine import detect  # noqa: E402
from tritonstack.server import free_port  # noqa: E402
from tritonstack.server.stubs import backend_stubs  # noqa: E402


class Launcher:
    def __init__(self, repo: Path, *extra: str) -> None:
        self.repo, self.extra = repo, extra
        self.grpc, self.http, self.metrics, self.health = (free_port() for _ in range(4))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tritonstack.server", "serve", "--model-repository", str(self.repo),
               f"--grpc-port={self.grpc}", f"--http-port={self.http}", f"--metrics-port={self.metrics}",
               f"--health-port={self.health}", "--health-interval=0.5", "--restart-on-failure=2", *self.extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready(self) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/v2/health/ready", timeout=1) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while self.ready() != 200:
            if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                raise SystemExit("the launcher did not become ready")
            time.sleep(0.2)

    def triton(self) -> psutil.Process:
        return next(c for c in psutil.Process(self.proc.pid).children() if c.name() == "tritonserver")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Observed:
    fault: str
    requests: int = 0
    lost: int = 0
    lost_by_status: dict[str, int] = field(default_factory=dict)
    recovery_s: float | None = None
    readiness: str = ""
    note: str = ""


class Load:
    """Paced requests from threads, each result timed; the readiness probe beside them."""

    def __init__(self, launcher: Launcher, rate: float, callers: int) -> None:
        self.launcher, self.rate, self.callers = launcher, rate, callers
        self.results: list[tuple[float, str]] = []  # (time, "ok" or the status given up on)
        self.probes: list[tuple[float, int | None]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._caller) for _ in range(callers)]
        self.threads.append(threading.Thread(target=self._probe))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _caller(self) -> None:
        config = ClientConfig(urls=(f"127.0.0.1:{self.launcher.grpc}",), timeout_s=5.0, retries=3)
        interval = self.callers / self.rate if self.rate else 0.0
        with Client(config) as client:
            next_at = time.monotonic()
            while not self.stop.is_set():
                try:
                    client.embed(["a short sentence to embed"])
                    outcome = "ok"
                except ClientError as exc:
                    outcome = exc.status.value
                self.results.append((time.monotonic(), outcome))
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

    def _probe(self) -> None:
        while not self.stop.is_set():
            self.probes.append((time.monotonic(), self.launcher.ready()))
            time.sleep(0.1)

    def observe(self, fault: str, at: float, note: str = "") -> Observed:
        failed = [(t, s) for t, s in self.results if s != "ok"]
        after = [t for t, s in self.results if s == "ok" and t > max([at, *(t for t, _ in failed)])]
        recovery = (after[0] - at) if failed and after else (0.0 if not failed else None)
        return Observed(fault, len(self.results), len(failed), dict(Counter(s for _, s in failed)),
                        None if recovery is None else round(recovery, 2), _readiness(self.probes, at), note)


def _readiness(probes: list[tuple[float, int | None]], at: float) -> str:
    """The probe's states from the fault on, with how long each lasted: '200 → 503 2.1 s → 200'."""
    spans: list[list] = []
    for t, code in probes:
        if t < at:
            continue
        label = str(code) if code is not None else "down"
        if not spans or spans[-1][0] != label:
            spans.append([label, t, t])
        spans[-1][2] = t
    parts = [label if i in (0, len(spans) - 1) else f"{label} {end - start + 0.1:.1f} s"
             for i, (label, start, end) in enumerate(spans)]
    return " → ".join(parts) or "?"


def _stub(launcher: Launcher, model: str) -> int:
    return next(s.pid for s in backend_stubs(launcher.triton().pid) if s.model == model and not s.dead)


def run_fault(name: str, repo: Path, args: argparse.Namespace) -> Observed:
    launcher = Launcher(repo)
    launcher.start()
    launcher.wait_ready()
    note = ""
    try:
        with Load(launcher, args.rate, args.callers) as load:
            if name == "stub kill, early":
                time.sleep(0.5)
            else:
                time.sleep(args.warm)
            at = time.monotonic()
            if name.startswith("stub kill"):
                os.kill(_stub(launcher, args.stub_model), signal.SIGKILL)
            elif name == "tritonserver kill":
                launcher.triton().kill()
            elif name == "launcher kill":
                # SIGKILL the launcher; an orchestrator (a restart policy) starts a new one, 1 s after
                # each exit, until one is ready.
                launcher.proc.kill()
                launcher.proc.wait()
                starts = 0
                while launcher.ready() != 200 and time.monotonic() - at < args.observe:
                    if launcher.proc.poll() is not None:
                        time.sleep(1.0)
                        launcher.start()
                        starts += 1
                    time.sleep(0.2)
                note = f"restarted 1 s after each exit, as a restart policy would ({starts} start(s))"
            elif name == "export kill":
                export = subprocess.Popen(
                    [sys.executable, "-m", "tritonstack.converters", "export",
                     "tritonstack.converters.sources.digits:factory", "--name", "fault_export", "--precision",
                     "fp32", "--model-repository", str(repo), "--quiet"], cwd=ROOT,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(args.export_kill_after)
                export.kill()
                export.wait()
                note = f"export SIGKILLed after {args.export_kill_after:g} s; served models kept answering"
            time.sleep(args.observe)
            observed = load.observe(name, at, note)
        if name == "export kill":  # the next start must serve, whatever the export left
            launcher.stop()
            launcher.start()
            launcher.wait_ready()
            observed.note += "; the next start was ready"
        return observed
    finally:
        launcher.stop()
        shutil.rmtree(repo / "fault_export", ignore_errors=True)


def run_overload(repo: Path, args: argparse.Namespace) -> Observed:
    launcher = Launcher(repo)
    launcher.start()
    launcher.wait_ready()
    try:
        with Load(launcher, 0.0, args.overload_callers) as load:  # closed loop, no pacing: all it can offer
            time.sleep(args.observe)
            at = time.monotonic()
        offered = sum(1 for t, _ in load.results) / args.observe
        observed = load.observe("overload", at - args.observe,
                                f"{args.overload_callers} callers without pacing offered {offered:.0f} requests/s")
        observed.recovery_s = 0.0
        with Load(launcher, args.rate, args.callers) as after:
            time.sleep(3)
        observed.note += f"; right after, {sum(s == 'ok' for _, s in after.results)} of {len(after.results)} paced " \
                         "requests answered"
        return observed
    finally:
        launcher.stop()


FAULTS = ("stub kill, early", "stub kill, late", "tritonserver kill", "launcher kill", "export kill")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "fault-matrix")
    parser.add_argument("--rate", type=float, default=200.0, help="paced requests/s on embed (default 200)")
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--overload-callers", type=int, default=128)
    parser.add_argument("--stub-model", default="minilm", help="the model whose stub is killed")
    parser.add_argument("--warm", type=float, default=10.0, help="seconds of load before a late fault")
    parser.add_argument("--observe", type=float, default=30.0, help="seconds of load after each fault")
    parser.add_argument("--export-kill-after", type=float, default=20.0)
    parser.add_argument("--only", action="append", help="run only these faults (repeatable)")
    args = parser.parse_args()
    repo = args.model_repository.resolve()
    rows = []
    for fault in (*FAULTS, "overload"):
        if args.only and fault not in args.only:
            continue
        print(f"-- {fault}", flush=True)
        row = run_overload(repo, args) if fault == "overload" else run_fault(fault, repo, args)
        print(json.dumps(asdict(row)), flush=True)
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = detect()
    meta = {"machine": machine.to_dict(), "date": time.strftime("%Y-%m-%d"), "rate": args.rate,
            "callers": args.callers}
    (args.out / "fault-matrix.json").write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]},
                                                           indent=2))
    lines = ["| fault | requests | lost (after 3 retries) | recovered in | readiness probe | note |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lost = f"{r.lost}" + (f" ({', '.join(f'{k} {v}' for k, v in r.lost_by_status.items())})" if r.lost else "")
        recovered = "-" if r.recovery_s is None else f"{r.recovery_s:.1f} s"
        lines.append(f"| {r.fault} | {r.requests} | {lost} | {recovered} | {r.readiness} | {r.note} |")
    (args.out / "fault-matrix.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"machine: {machine.label}; commit {machine.server_commit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
