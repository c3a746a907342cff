"""Run a campaign: optionally start Triton, check the target, run Locust headless, write the report.

Locust runs as a child process (``python -m locust -f loadtest/locustfile.py --headless``) so that
one process, ``--processes N`` (Locust forks workers) and master/workers all use the same path,
gevent's monkey-patching stays out of this process, and a hung run can be killed: the child gets
``--run-time`` and a hard wall-clock limit on top.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tritonstack.loadtest import report
from tritonstack.loadtest.campaign import sizing
from tritonstack.loadtest.campaign.sizing import Capacity
from tritonstack.loadtest.campaign.slo import TOTAL, Verdict
from tritonstack.loadtest.campaign.spec import Campaign
from tritonstack.loadtest.errors import CampaignError, RunFailed, TargetError
from tritonstack.loadtest.report import summary
from tritonstack.loadtest.report.machine import Machine
from tritonstack.loadtest.report.machine import detect as detect_machine
from tritonstack.loadtest.runner import metrics, payloads, results
from tritonstack.loadtest.runner.progress import LiveProgress

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
GRACE_S = 60.0  # beyond the campaign's length before the run is killed
DRIFT_PUBLISH_S = 1.2  # the python-ort runners publish drift scores at most once a second


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run a campaign; ``model_repository`` starts a Triton of our own on free ports."""

    report_dir: Path | None = None
    grpc: str | None = None
    metrics_url: str | None = None
    model_repository: Path | None = None
    processes: int | None = None
    workers: int = 0
    master: bool = False
    expect_workers: int = 0
    master_bind_port: int = 5557
    # Locust binds its master to every interface unless told otherwise: loopback unless asked.
    master_bind_host: str = "127.0.0.1"
    server_pid: int | None = None
    # Unix nice of the Triton this run starts: > 0 lets a generator sharing the machine go first
    # when both want a core. Measured on the spike campaign it is not needed (nice 0: accepted
    # p99 66 ms, 350 rps served; nice 10: 71 ms, 294 rps), so the default leaves Triton as is.
    server_nice: int = 0
    preflight: bool = True
    crosscheck: bool = False
    progress: bool = False  # live progress on stderr (the CLI: on when stderr is a terminal, not --quiet)
    # the capacity of a campaign with relative rates (--capacity, --capacity-from); None: measure it
    capacity: Capacity | None = None
    say: Callable[[str], None] = lambda _line: None  # one line of news (the CLI prints it)

    def __post_init__(self) -> None:
        if self.processes is not None and self.processes < 1:
            raise CampaignError("--processes must be 1 or more")
        if not 0 <= self.server_nice <= 19:
            raise CampaignError(f"--server-nice must be 0-19, got {self.server_nice}")
        if self.workers < 0 or self.expect_workers < 0:
            raise CampaignError("--workers / --expect-workers must be 0 or more")
        if self.master and not self.expect_workers:
            raise CampaignError("--master needs --expect-workers N (workers start with `python -m tritonstack.loadtest "
                                "worker CAMPAIGN --master-host HOST`)")
        modes = sum([bool(self.processes and self.processes > 1), bool(self.workers), self.master])
        if modes > 1:
            raise CampaignError("choose one of --processes, --workers and --master")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A finished run: its summary (also in summary.json), SLO verdicts, report folder and the
    campaign as run (sized, when its rates were relative to the capacity)."""

    summary: summary.Summary
    verdicts: list[Verdict]
    report_dir: Path
    campaign: Campaign

    @property
    def passed(self) -> bool:
        """Every SLO held (a campaign without SLOs passes when it sent requests without errors)."""
        return self.summary.passed


def default_report_dir(campaign: Campaign) -> Path:
    """``reports/loadtest/<campaign>-<UTC time>``."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("reports") / "loadtest" / f"{campaign.name}-{stamp}"


def preflight(grpc_url: str, campaign: Campaign, timeout_s: float = 10.0) -> None:
    """Check the server is live, each model ready, and one request of each kind succeeds."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    with grpc.insecure_channel(grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise TargetError(f"no Triton answers gRPC at {grpc_url} ({exc.code().name}); start one "
                              "(python -m tritonstack.server serve) or pass --model-repository DIR") from None
        infer = channel.unary_unary(payloads.INFER_METHOD)
        for traffic in campaign.traffic:
            request = service_pb2.ModelReadyRequest(name=traffic.model, version=traffic.version)
            ready = stub.ModelReady(request, timeout=timeout_s).ready
            if not ready:
                index = stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True),
                                             timeout=timeout_s)
                names = sorted(m.name for m in index.models)
                raise TargetError(f"model {traffic.model!r} is not ready on {grpc_url}; ready models: "
                                  f"{', '.join(names) or 'none'}")
            one = dataclasses.replace(traffic, pool=1)
            try:
                infer(payloads.build_pool(one)[0], timeout=max(timeout_s, 30.0))
            except grpc.RpcError as exc:
                raise TargetError(f"a test request to {traffic.model!r} failed: {exc.code().name}: "
                                  f"{exc.details()}; fix the campaign's inputs for this model") from None


def _locust_command(campaign: Campaign, out: Path, options: RunOptions) -> list[str]:
    run_time = int(campaign.duration_s + 10)
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
           "--csv", str(out / "locust"), "--csv-full-history", "--html", str(out / "locust.html"),
           "--run-time", f"{run_time}s", "--loglevel", "INFO", "--logfile", str(out / "locust.log"),
           "--exit-code-on-error", "0"]
    processes = options.processes or campaign.processes
    if options.master:
        cmd += ["--master", "--expect-workers", str(options.expect_workers),
                "--master-bind-host", options.master_bind_host,
                "--master-bind-port", str(options.master_bind_port)]
    elif options.workers:
        cmd += ["--master", "--expect-workers", str(options.workers),
                "--master-bind-host", "127.0.0.1",  # local workers only
                "--master-bind-port", str(options.master_bind_port)]
    elif processes > 1:
        cmd += ["--processes", str(processes)]
    return cmd


def _stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout_s)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run(campaign: Campaign, options: RunOptions = RunOptions()) -> RunResult:
    """Run ``campaign`` to the end and write its report; raise on errors, not on failed SLOs.

    A campaign whose rates are multiples of the capacity is sized first (campaign/sizing.py):
    with ``options.capacity``, else by measuring it on the target (reports in ``OUT/capacity/``).
    """
    out = (options.report_dir or default_report_dir(campaign)).resolve()
    if out.exists() and not out.is_dir():
        raise CampaignError(f"--out {out} is a file; pass a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CampaignError(f"cannot create the report folder {out} ({exc.strerror or exc}); "
                            "pass --out DIR somewhere writable") from None
    machine = detect_machine(options.model_repository)
    server = None
    try:
        grpc_url = options.grpc or campaign.target.grpc
        metrics_url = options.metrics_url if options.metrics_url is not None else campaign.target.metrics
        server_pid = options.server_pid
        if options.model_repository is not None:
            from tritonstack.server import ServerConfig, ServerError, TritonServer

            try:
                server = TritonServer(ServerConfig(model_repository=options.model_repository, http_port=0,
                                                   grpc_port=0, metrics_port=0,
                                                   log_file=out / "tritonserver.log",
                                                   nice=options.server_nice,
                                                   response_cache_bytes=campaign.response_cache_mb * 2**20
                                                   )).start()
            except ServerError as exc:
                raise TargetError(f"could not start Triton on {options.model_repository}: {exc}") from None
            grpc_url, metrics_url, server_pid = server.grpc_url, server.metrics_url, server.pid
        if server_pid is None:
            server_pid = metrics.server_pid_for_port(int(grpc_url.rsplit(":", 1)[-1]))
        if options.preflight:
            preflight(grpc_url, campaign, campaign.target.timeout_s)
        target = _Target(grpc_url, metrics_url, server_pid, machine)
        capacity = options.capacity
        if campaign.sized_by_capacity:
            if capacity is None:
                capacity = measure_capacity(campaign, options, out / "capacity", target)
            campaign = sizing.resolve(campaign, capacity.rps)
            options.say(f"capacity: {capacity.rps:,.1f} rps ({capacity.source}); rates: "
                        + ", ".join(f"{s.name} {s.rps:,.1f} rps" for s in campaign.stages if s.rps))
        raw = _run_locust(campaign, options, out, target)
        crosscheck = _crosscheck(campaign, raw, out, grpc_url) if options.crosscheck else None
        found = summary.analyse(campaign, raw.recorded, raw.generators, raw.before, raw.after, target=grpc_url,
                                started_at=raw.started_at, machine=machine, crosscheck=crosscheck,
                                capacity=capacity)
        found = report.write_all(campaign, found, out)
        return RunResult(summary=found, verdicts=raw.verdicts, report_dir=out, campaign=campaign)
    finally:
        if server is not None:
            server.close()


@dataclasses.dataclass(frozen=True)
class _Target:
    grpc_url: str
    metrics_url: str | None
    server_pid: int | None
    machine: Machine


def measure_capacity(campaign: Campaign, options: RunOptions, out: Path, target: _Target) -> Capacity:
    """The capacity of the target for the campaign's traffic: a closed-loop ceiling, then a short
    bounded find-max around it (campaign/sizing.py); both runs' reports go under ``out``."""
    probe = campaign.capacity_probe
    options.say(f"measuring capacity first (no --capacity or --capacity-from): closed loop with {probe.users} "
                f"users, then find-max of the same traffic with p99 < {probe.p99_ms:g} ms and nothing refused, "
                f"at most {probe.max_s:.0f} s; reports in {out}")
    quiet = dataclasses.replace(options, crosscheck=False, progress=False)
    ceiling = _run_locust(sizing.ceiling_probe(campaign), quiet, out / "ceiling", target)
    rows, _ = results.slo_window(ceiling.campaign, ceiling.recorded["windows"], None)
    top = rows.get(TOTAL, {})
    ceiling_rps = top.get("goodput_rps", 0.0)
    search = _run_locust(sizing.find_max_probe(campaign, ceiling_rps), quiet, out / "find-max", target)
    # a find-max report like any other: `--capacity-from OUT/capacity/find-max` reuses it next time
    report.write_all(search.campaign, summary.analyse(
        search.campaign, search.recorded, search.generators, search.before, search.after, target=target.grpc_url,
        started_at=search.started_at, machine=target.machine), out / "find-max")
    best = search.recorded["find_max"]
    if not best:
        raise TargetError(f"could not measure the capacity: no find-max step from 0.5x the closed-loop ceiling "
                          f"({ceiling_rps:,.0f} rps) met p99 < {probe.p99_ms:g} ms without refusals; see "
                          f"{out / 'find-max'}, or pass --capacity RPS")
    rps = best["stats"][TOTAL]["rps"]
    return Capacity(round(rps, 1), f"measured on {target.grpc_url}: find-max {rps:,.0f} rps with p99 "
                    f"{best['stats'][TOTAL]['p99_ms']:.0f} ms, closed-loop ceiling {ceiling_rps:,.0f} rps at "
                    f"{probe.users} users")


def _crosscheck(campaign: Campaign, raw: _Raw, out: Path, grpc_url: str) -> dict[str, Any]:
    """perf_analyzer on the same target, payloads and rate; its figures join the report."""
    from tritonstack.loadtest.bench import perf_analyzer

    stage = next((s for s in campaign.stages if s.measure and s.rps), None)
    users = stage.users if stage else (campaign.find_max.users if campaign.find_max else 16)
    rate = stage.rps if stage else (raw.recorded["find_max"] or {}).get("target_rps")
    pa = perf_analyzer.run(campaign.traffic[0], grpc_url, out, rate=rate, concurrency=users, duration_s=5.0)
    return {k: v for k, v in pa.items() if k != "command"}


@dataclasses.dataclass(frozen=True)
class _Raw:
    """What one Locust run recorded, before it is analysed."""

    campaign: Campaign
    recorded: dict[str, Any]
    generators: list[dict[str, Any]]
    before: summary.Sample
    after: summary.Sample
    started_at: str
    verdicts: list[Verdict]


def _sample(target: _Target) -> summary.Sample:
    triton, monitoring = metrics.scrape_both(target.metrics_url)
    return summary.Sample(t=time.monotonic(), server_cpu_s=metrics.tree_cpu_s(target.server_pid),
                          generator_cpu_s=metrics.children_cpu_s(), triton=triton, monitoring=monitoring)


def _run_locust(campaign: Campaign, options: RunOptions, out: Path, target: _Target) -> _Raw:
    if not campaign.resolved:
        raise CampaignError(f"campaign {campaign.name!r} has rates relative to the capacity; size it first "
                            "(campaign.sizing.resolve, or run it through loadtest run)")
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("generator-*.json"), out / "windows.json"]:
        stale.unlink(missing_ok=True)
    plan = {"campaign": campaign.to_dict(), "grpc": target.grpc_url, "metrics_url": target.metrics_url,
            "server_pid": target.server_pid, "report_dir": str(out)}
    plan_path = out / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=2))
    env = {**os.environ, "LOADTEST_PLAN": str(plan_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[3]),
                                                       os.environ.get("PYTHONPATH")]))}
    cmd = _locust_command(campaign, out, options)
    limit = campaign.duration_s + GRACE_S
    started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    before = _sample(target)
    workers: list[subprocess.Popen] = []
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        worker_cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-port",
                      str(options.master_bind_port), "--loglevel", "WARNING"]
        for _ in range(options.workers):
            workers.append(subprocess.Popen(worker_cmd, env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True))
        try:
            with LiveProgress(campaign, out / "locust_stats_history.csv", enabled=options.progress):
                output, _ = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise RunFailed(f"Locust ran past {limit:.0f} s (campaign {campaign.duration_s:.0f} s + "
                            f"{GRACE_S:.0f} s grace) and was killed; see {out / 'locust.log'}") from None
    except KeyboardInterrupt:
        _stop(proc)
        raise
    finally:
        for worker in workers:
            _stop(worker)
    time.sleep(DRIFT_PUBLISH_S)  # the runners publish drift scores at most once a second
    after = _sample(target)
    (out / "locust.stdout.txt").write_bytes(output or b"")
    windows_file = out / "windows.json"
    if not windows_file.exists():
        tail = (output or b"").decode("utf-8", "replace").strip().splitlines()[-15:]
        raise RunFailed(f"Locust exited with code {proc.returncode} without results; last output: "
                        + " | ".join(tail))
    recorded = json.loads(windows_file.read_text())
    generators = [json.loads(p.read_text()) for p in sorted(out.glob("generator-*.json"))]
    return _Raw(campaign, recorded, generators, before, after, started_at,
                results.verdicts(campaign, recorded["windows"], recorded["find_max"]))
