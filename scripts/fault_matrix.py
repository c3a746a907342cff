"""The fault matrix (issue #32): each fault injected under load on the demo repository, with what
a retrying client lost, how long recovery took and what the launcher's readiness probe said.

    flock /tmp/bench.lock .venv/bin/python scripts/fault_matrix.py --model-repository model_repository

Each fault gets a fresh launcher (``--restart-on-failure 2``) and a paced load of ``--rate``
requests/s on ``embed`` from ``--callers`` threads using the project's client (3 retries on
UNAVAILABLE, a 5 s deadline): a request counts as lost only when the client gave up. The
readiness probe (the launcher's /v2/health/ready) is polled every 100 ms. Writes
``OUT/fault-matrix.json`` and ``OUT/fault-matrix.md`` (the table in docs/benchmarks.md).

Two rows work on a copy of the repository, so the one given is left as it was: "canary
controller kill" adds ``minilm`` version 2 (a copy of version 1) and SIGKILLs a canary of it
mid-step; "disk full during export" serves the copy from a small tmpfs (mounting one needs root)
and fills it before an export.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
from tritonstack.rollout import repository as rollout_repo  # noqa: E402
from tritonstack.rollout.state import read_log, read_split  # noqa: E402
from tritonstack.server import free_port  # noqa: E402
from tritonstack.server.leftovers import staging_folders  # noqa: E402
from tritonstack.server.stubs import backend_stubs  # noqa: E402


class Launcher:
    log_dir: Path | None = None  # --log-dir: each launcher's output, one file per start

    def __init__(self, repo: Path, *extra: str) -> None:
        self.repo, self.extra = repo, extra
        self.grpc, self.http, self.metrics, self.health = (free_port() for _ in range(4))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tritonstack.server", "serve", "--model-repository", str(self.repo),
               f"--grpc-port={self.grpc}", f"--http-port={self.http}", f"--metrics-port={self.metrics}",
               f"--health-port={self.health}", "--health-interval=0.5", "--restart-on-failure=2", *self.extra]
        log = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.log_dir / f"launcher-{time.strftime('%H%M%S')}-{self.grpc}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if log is not subprocess.DEVNULL:
            log.close()  # the child holds its own copy

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


def _next_start_serves(launcher, observed) -> None:
    """Restart the launcher on what the fault left in the repository; it must turn ready."""
    launcher.stop()
    launcher.start()
    launcher.wait_ready()
    observed.note += "; the next start was ready"


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


def _not_ready(probes: list[tuple[float, int | None]], at: float) -> list[tuple[float, float]]:
    """When the probe said anything but 200 from ``at`` on: (from, to) in seconds after ``at``."""
    spans: list[list[float]] = []
    for t, code in probes:
        if t < at:
            continue
        if code != 200:
            if spans and spans[-1][1] is None:
                continue
            spans.append([t - at, None])
        elif spans and spans[-1][1] is None:
            spans[-1][1] = t - at
    return [(start, end if end is not None else float("nan")) for start, end in spans]


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
            _next_start_serves(launcher, observed)
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


CANARY_MODEL = "minilm"  # the model behind embed, the model the load calls
# The canary's SLOs as tests/rollout/test_served.py's resumed canary: this row is about the
# controller's record and its resumption, not about judging a candidate on a shared CPU.
CANARY_SLOS = ("--min-requests", "50", "--min-compared", "30", "--max-p99-ratio", "5", "--max-p99-ms", "1000")


def _rollout(launcher: Launcher, repo: Path, out: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "tritonstack.rollout", *argv, "--model-repository", str(repo),
            "--url", f"127.0.0.1:{launcher.grpc}", "--metrics-url", f"http://127.0.0.1:{launcher.metrics}/metrics",
            "--out", str(out)]


def run_canary_kill(repo: Path, args: argparse.Namespace) -> Observed:
    """A canary of a byte-identical ``minilm`` v2 (steps 20, 50, 100; 6 s holds) SIGKILLed 2 s
    into its first step, under the load on embed; then ``status``, and the same ``canary``
    command run again, which resumes it to the end."""
    work = Path(tempfile.mkdtemp(prefix="fault-canary-"))
    copy = work / "model_repository"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns("rollout.json", "rollout.jsonl", ".staging-*"))
    model_dir = copy / CANARY_MODEL
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())
    candidate = versions[-1] + 1
    shutil.copytree(model_dir / str(versions[-1]), model_dir / str(candidate))
    rollout_repo.set_versions(copy, CANARY_MODEL, [versions[-1]])  # what is served before the rollout
    canary = ("canary", CANARY_MODEL, "--candidate", str(candidate), "--steps", "20,50,100", "--hold", "6s",
              *CANARY_SLOS)
    launcher = Launcher(copy)
    try:
        launcher.start()
        launcher.wait_ready()
        with Load(launcher, args.rate, args.callers) as load:
            time.sleep(args.warm)
            controller = subprocess.Popen(_rollout(launcher, copy, work / "reports", *canary), cwd=ROOT,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True)
            deadline = time.monotonic() + 180
            while not any(e["event"] == "step" and e["weight"] == 20 for e in read_log(model_dir)):
                if time.monotonic() > deadline or controller.poll() is not None:
                    raise SystemExit("the canary did not reach its first step")
                time.sleep(0.1)
            time.sleep(2.0)
            at = time.monotonic()
            os.killpg(controller.pid, signal.SIGKILL)
            controller.wait()
            truth = read_split(model_dir)
            status = subprocess.run(_rollout(launcher, copy, work / "reports", "status", CANARY_MODEL, "--json"),
                                    cwd=ROOT, capture_output=True, text=True, timeout=120)
            said = json.loads(status.stdout).get("split") if status.returncode == 0 else None
            truthful = said is not None and truth is not None and (said["candidate"], said["weight"]) == (
                truth.candidate, truth.weight)
            resumed_at = time.monotonic()
            resumed = subprocess.run(_rollout(launcher, copy, work / "reports", *canary), cwd=ROOT,
                                     capture_output=True, text=True, timeout=600)
            resume_s = time.monotonic() - resumed_at
            resume_window = (resumed_at - at, resumed_at - at + resume_s)
            outcome = (resumed.stdout.strip().splitlines() or resumed.stderr.strip().splitlines() or ["?"])[-1]
            time.sleep(args.observe)
            served = sorted(int(m.version) for m in _models(launcher)
                            if m.name == CANARY_MODEL and m.state == "READY")
            note = f"killed at weight {truth.weight:g}" if truth else "killed with no split written"
            note += (f"; `status` (rc {status.returncode}) said candidate {said['candidate']} at weight "
                     f"{said['weight']:g}, {'as' if truthful else 'NOT as'} rollout.json" if said else
                     f"; `status` rc {status.returncode}: {status.stderr.strip()[:120]}")
            note += (f"; the same `canary` again resumed and ended in {resume_s:.0f} s (rc {resumed.returncode}: "
                     f"{outcome[:120]}); serves v{', v'.join(map(str, served))}, router "
                     f"{'left' if (copy / rollout_repo.router_name(CANARY_MODEL)).exists() else 'gone'}")
            spans = _not_ready(load.probes, at)
            if spans:
                note += ("; the probe said not ready " + ", ".join(f"{a:.1f}–{b:.1f} s" for a, b in spans)
                         + f" after the kill (the resumed canary ran {resume_window[0]:.1f}–{resume_window[1]:.1f} s)")
            return load.observe("canary controller kill", at, note)
    finally:
        launcher.stop()
        shutil.rmtree(work, ignore_errors=True)


def _models(launcher: Launcher) -> list:
    with Client(ClientConfig(urls=(f"127.0.0.1:{launcher.grpc}",), timeout_s=10.0)) as client:
        return client.list_models()


def _fill(folder: Path, leave: int) -> Path:
    stat = os.statvfs(folder)
    filler = folder / ".filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(stat.f_bavail * stat.f_frsize - leave, 0))
    return filler


def run_disk_full(repo: Path, args: argparse.Namespace) -> Observed:
    """The repository served from a tmpfs with room for itself and 8 MB more; under the load on
    embed, the disk is filled to 200 kB free and a new model (the digits CNN, FP32, about 0.4 MB
    a version) is exported into it. The export must fail with NoSpace (exit 3) and leave nothing;
    then the disk is freed and the launcher started again on it."""
    work = Path(tempfile.mkdtemp(prefix="fault-disk-"))
    disk = work / "disk"
    disk.mkdir()
    size = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file()) + 8 * 2**20
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size // 1024}k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        return Observed("disk full during export", note=f"not run: cannot mount a tmpfs (needs root): "
                                                        f"{mounted.stderr.strip()[:120]}")
    launcher: Launcher | None = None
    try:
        copy = disk / "model_repository"
        shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".staging-*"))
        launcher = Launcher(copy)
        launcher.start()
        launcher.wait_ready()
        with Load(launcher, args.rate, args.callers) as load:
            time.sleep(args.warm)
            filler = _fill(disk, 200_000)
            at = time.monotonic()
            export = subprocess.run(
                [sys.executable, "-m", "tritonstack.converters", "export",
                 "tritonstack.converters.sources.digits:factory", "--name", "fault_export", "--precision", "fp32",
                 "--model-repository", str(copy), "--quiet", "--work-dir", str(work / "export-work")],
                cwd=ROOT, capture_output=True, text=True, timeout=600)
            export_s = time.monotonic() - at
            left = [str(p.relative_to(copy)) for p in staging_folders(copy)]
            if (copy / "fault_export").exists():
                left.append("fault_export/")
            error = (export.stderr.strip().splitlines() or ["(no message)"])[-1]
            filler.unlink()
            time.sleep(args.observe)
            note = (f"export exit {export.returncode} after {export_s:.0f} s: `{error[:160]}`; "
                    f"left in the repository: {', '.join(left) if left else 'nothing'}")
            observed = load.observe("disk full during export", at, note)
        _next_start_serves(launcher, observed)
        return observed
    finally:
        if launcher:
            launcher.stop()
        subprocess.run(["umount", str(disk)], check=False)
        shutil.rmtree(work, ignore_errors=True)


FAULTS = ("stub kill, early", "stub kill, late", "tritonserver kill", "launcher kill", "export kill",
          "canary controller kill", "disk full during export")
SEPARATE = {"canary controller kill": run_canary_kill, "disk full during export": run_disk_full}


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
    parser.add_argument("--log-dir", type=Path, help="keep each launcher's output here (default: discarded)")
    args = parser.parse_args()
    Launcher.log_dir = args.log_dir
    repo = args.model_repository.resolve()
    rows = []
    for fault in (*FAULTS, "overload"):
        if args.only and fault not in args.only:
            continue
        print(f"-- {fault}", flush=True)
        if fault == "overload":
            row = run_overload(repo, args)
        elif fault in SEPARATE:
            row = SEPARATE[fault](repo, args)
        else:
            row = run_fault(fault, repo, args)
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
