"""``python -m tritonstack.loadtest`` (``tritonstack-loadtest``): run campaigns, find the maximum RPS,
compare runs, price them, cross-check with perf_analyzer, bench the pipelines, drill a heal.

Built on the project's one command-line convention (:mod:`tritonstack.cli`): ``--url`` /
``--metrics-url`` / ``--model-repository`` / ``--out``, durations as ``90s`` or ``5m``, global
``--json`` / ``--verbose`` / ``--quiet`` before or after the command, and the shared exit codes:
0 ok; 1 an SLO failed, B regressed, a model did not recover, or no priced report met its SLO;
2 bad command line, campaign or report; 3 the target, Locust or perf_analyzer failed;
4 internal error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tritonstack.cli import (
    ExitCode,
    Tool,
    add_metrics_url,
    add_model_repository,
    add_out,
    add_url,
    exit_codes_epilog,
    positive_duration,
)
from tritonstack.loadtest.campaign import spec as campaigns
from tritonstack.loadtest.errors import CampaignError, LoadTestError

# The shared table under the names this module always had (tests/project/test_exit_codes.py).
EXIT_OK, EXIT_SLO_FAILED, EXIT_USAGE = ExitCode.OK, ExitCode.CHECK_FAILED, ExitCode.USAGE
EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED = ExitCode.ENVIRONMENT, ExitCode.INTERNAL, ExitCode.INTERRUPTED

PROG = "python -m tritonstack.loadtest"
EPILOG = exit_codes_epilog({
    ExitCode.CHECK_FAILED: "an SLO failed, compare found a regression past a bound, heal-drill saw a model "
                           "not recover, or cost found no report that met its SLO",
    ExitCode.USAGE: "a bad campaign file, report or option",
    ExitCode.ENVIRONMENT: "the server is unreachable or lacks a model, or Locust or perf_analyzer failed",
})
def _one_url(args: argparse.Namespace) -> str | None:
    """The one gRPC endpoint a load test drives (``--url`` given at most once)."""
    urls = args.url or []
    if len(urls) > 1:
        raise CampaignError(f"--url given {len(urls)} times; a campaign drives one server (for replicas, put "
                            "a load balancer in front, or run one campaign per replica)")
    return urls[0] if urls else None


def _campaign_command(tool: Tool, name: str, help: str, description: str) -> None:
    cmd = tool.command(name, help=help, json=True, description=description, epilog=EPILOG)
    cmd.add_argument("campaign", metavar="CAMPAIGN", help="campaign file (TOML/YAML) or bundled name (see `list`)")
    add_url(cmd, help="Triton's gRPC endpoint (default: the campaign's [target], 127.0.0.1:8001)")
    add_metrics_url(cmd, help="Triton's metrics URL ('' to skip; default: the campaign's [target])")
    add_model_repository(cmd, default=None, help="start a Triton of our own on DIR (free ports) for the run, "
                         "then stop it")
    add_out(cmd, default=None, help="where the reports go (default: reports/loadtest/CAMPAIGN-TIME)")
    sizing = cmd.add_argument_group(
        "capacity (campaigns with rates such as rps = \"3x capacity\")",
        "Without either option the capacity is measured first on the target: a closed-loop window, then a "
        "short find-max of the same traffic (the campaign's [capacity] bounds it).")
    sizing.add_argument("--capacity", type=float, metavar="RPS", help="the capacity in requests/s")
    sizing.add_argument("--capacity-from", type=Path, metavar="DIR",
                        help="a find-max report folder (or its summary.json): its highest passing rate")
    gen = cmd.add_argument_group("load generator")
    gen.add_argument("--processes", type=int, metavar="N",
                     help="Locust processes on this machine (forked workers; default: the campaign's)")
    gen.add_argument("--workers", type=int, default=0, metavar="N",
                     help="start a Locust master and N local worker processes")
    gen.add_argument("--master", action="store_true",
                     help=f"be a Locust master for remote workers (`{PROG} worker`)")
    gen.add_argument("--expect-workers", type=int, default=0, metavar="N", help="with --master: wait for N workers")
    gen.add_argument("--master-bind-port", type=int, default=5557, metavar="PORT")
    gen.add_argument("--master-bind-host", default="127.0.0.1", metavar="ADDR",
                     help="with --master: the address remote workers connect to; 0.0.0.0 exposes the master "
                          "on every interface (default: %(default)s)")
    cmd.add_argument("--server-nice", type=int, default=0, metavar="N",
                     help="with --model-repository: Unix nice (0-19) of the Triton it starts; > 0 lets a "
                          "generator on the same machine go first (default: %(default)s)")
    cmd.add_argument("--server-pid", type=int, metavar="PID",
                     help="pid of an already running server, for its CPU (default: found by port)")
    cmd.add_argument("--crosscheck", action="store_true",
                     help="then measure the first traffic entry with perf_analyzer at the same rate")
    cmd.add_argument("--no-preflight", action="store_true",
                     help="skip the readiness check and the test request per model")


def build_tool() -> Tool:
    """The loadtest command line: every command under the shared convention."""
    tool = Tool(PROG, "Locust load campaigns against Triton, with SLO gates; reports, comparison, cost.",
                epilog=EPILOG, hint="the old --grpc, --metrics and --report-dir are --url, --metrics-url "
                "and --out")
    _campaign_command(tool, "run", "run a campaign; exit 1 if an SLO fails",
                      "Run a campaign headless and write its report folder; exit 1 when an SLO fails, printing "
                      "which and by how much.")
    _campaign_command(tool, "find-max", "run a [find_max] campaign; print the highest RPS meeting its SLOs",
                      "Step the rate up, then bisect, and report the highest sustained RPS that met the SLOs.")

    validate = tool.command("validate", help="check campaign files without running them", json=True,
                            epilog=EPILOG)
    validate.add_argument("campaigns", nargs="+", metavar="CAMPAIGN")
    tool.command("list", help="list the bundled campaigns", json=True, epilog=EPILOG)

    worker = tool.command("worker", help="a Locust worker for `run --master` on another machine", epilog=EPILOG)
    worker.add_argument("campaign", metavar="CAMPAIGN")
    worker.add_argument("--master-host", default="127.0.0.1", metavar="HOST")
    worker.add_argument("--master-port", type=int, default=5557, metavar="PORT")
    add_url(worker, help="Triton's gRPC endpoint as seen from here (default: the campaign's)")
    worker.add_argument("--processes", type=int, default=1, metavar="N")
    worker.add_argument("--capacity", type=float, metavar="RPS",
                        help="the master's capacity, for a campaign with rates relative to it")

    pa = tool.command("perf-analyzer", help="measure a model with Triton's perf_analyzer (cross-check)", json=True,
                      epilog=EPILOG)
    pa.add_argument("target", metavar="CAMPAIGN|PIPELINE",
                    help="a campaign (its first traffic entry, at its first measured rate) or a demo pipeline name")
    add_url(pa, help="Triton's gRPC endpoint (default: the campaign's, else 127.0.0.1:8001)")
    add_model_repository(pa, default=None, help="start a Triton on DIR for it")
    add_out(pa, default=None, help="where perf_analyzer.csv and .json go (default: reports/loadtest/...)")
    pa.add_argument("--rate", type=float, metavar="RPS", help="fixed request rate (default: concurrency)")
    pa.add_argument("--concurrency", type=int, metavar="N",
                    help="fixed number of outstanding requests (default 16 when no rate applies)")
    pa.add_argument("--duration", type=positive_duration, default=10.0, metavar="DURATION",
                    help="measurement window: 10s, 1m or plain seconds (default: 10s)")

    from tritonstack.loadtest.cost import cloud

    cost = tool.command("cost", help="cost per million requests from a run's measured throughput", json=True,
                        description=cloud.DESCRIPTION, epilog=EPILOG)
    cloud.add_arguments(cost)

    cmp = tool.command(
        "compare", help="compare two runs side by side; exit 1 when B regressed past a bound", json=True,
        epilog=EPILOG,
        description="Compare the throughput and p99 of two runs' report folders (A, then B) per traffic entry, "
        "write compare.md and compare.html, and exit 1 when a bound is crossed. With repeated windows in both "
        "runs, changes get a 95% interval (bootstrap with 8 or more windows per run, Welch t with 2 to 7) and "
        "are marked when within noise; with one window per run a change is inconclusive. A warning says when "
        "A and B ran on different machines.")
    cmp.add_argument("run_a", metavar="RUN_A", help="report folder (or summary.json) of the baseline")
    cmp.add_argument("run_b", metavar="RUN_B", help="report folder (or summary.json) of the candidate")
    cmp.add_argument("--max-p99-regression", metavar="PCT", help="fail when B's p99 rose by more (e.g. 10%%)")
    cmp.add_argument("--max-rps-regression", metavar="PCT", help="fail when B's throughput fell by more (e.g. 5%%)")
    add_out(cmp, default=None, help="where the report goes (default: reports/compare/A-vs-B)")

    drill = tool.command(
        "heal-drill", help="kill each backend stub of a repository under load; measure failures and recovery",
        json=True, epilog=EPILOG,
        description="Serve DIR with a Triton of our own under the launcher's supervisor, call the pipelines from "
        "client threads on 127.0.0.1, SIGKILL one backend stub per model in turn and measure how long the "
        "launcher takes to recover and how many requests fail. Exit 0 when every model recovered within "
        "--timeout, 1 when one did not.")
    add_model_repository(drill, required=True)
    drill.add_argument("--model", action="append", default=[], metavar="NAME",
                       help="kill a stub of this model (repeatable; default: every model with a stub)")
    drill.add_argument("--pipeline", action="append", default=[], metavar="NAME",
                       help="pipeline to call under the drill: embed, classify_digit (repeatable; default: both)")
    drill.add_argument("--clients", type=int, default=2, metavar="N",
                       help="threads per pipeline and client kind, bare and with retries (default: %(default)s)")
    drill.add_argument("--timeout", type=positive_duration, default=60.0, metavar="DURATION",
                       help="longest wait for one recovery: 60s, 2m or plain seconds (default: 60s)")

    from tritonstack.loadtest.bench import pipeline

    bench = tool.command("bench-pipelines", help="served pipelines vs in-process ONNX Runtime", json=True,
                         description=(pipeline.__doc__ or "").strip(), epilog=EPILOG)
    pipeline.add_arguments(bench)
    return tool


def _run(args: argparse.Namespace, find_max: bool) -> int:
    from tritonstack.loadtest.campaign import sizing
    from tritonstack.loadtest.runner.run import RunOptions, run

    campaign = campaigns.load(args.campaign)
    if find_max and not campaign.find_max:
        raise CampaignError(f"campaign {campaign.name!r} has no [find_max] section; use `run` for it or "
                            "pick a find-max campaign (for example embed-find-max)")
    if args.metrics_url:
        campaigns.check_metrics_url(args.metrics_url, "--metrics-url")
    if args.capacity is not None and args.capacity_from is not None:
        raise CampaignError("give --capacity or --capacity-from, not both")
    capacity = (sizing.given(args.capacity) if args.capacity is not None else
                sizing.from_report(args.capacity_from) if args.capacity_from is not None else None)
    if capacity is not None and not campaign.sized_by_capacity:
        raise CampaignError(f"campaign {campaign.name!r} has no rate relative to the capacity; drop "
                            f"--capacity{'-from' if args.capacity is None else ''}")
    say = (lambda _line: None) if args.json else (lambda line: print(line, flush=True))
    options = RunOptions(report_dir=args.out, grpc=_one_url(args), metrics_url=args.metrics_url,
                         model_repository=args.model_repository, processes=args.processes,
                         workers=args.workers, master=args.master, expect_workers=args.expect_workers,
                         master_bind_port=args.master_bind_port, master_bind_host=args.master_bind_host,
                         progress=sys.stderr.isatty() and not args.quiet and not args.json,
                         server_pid=args.server_pid, server_nice=args.server_nice,
                         preflight=not args.no_preflight, crosscheck=args.crosscheck, capacity=capacity, say=say)
    say(f"campaign {campaign.name}: {campaign.duration_s:.0f} s{' at most' if campaign.find_max else ''}, "
        f"{len(campaign.traffic)} traffic kind(s)")
    result = run(campaign, options)
    summary = result.summary
    if args.json:
        print(json.dumps({"report": str(result.report_dir), **summary.to_dict()}, indent=2))
        return EXIT_OK if result.passed else EXIT_SLO_FAILED
    total = summary.total
    print(f"report: {result.report_dir}")
    print(f"machine: {summary.machine.label}; server commit {summary.machine.server_commit[:12]}")
    if total:
        print(f"measured {summary.slo_window_s:.1f} s: {total['requests']:.0f} requests, "
              f"{total['rps']:.1f} rps, p50 {total['p50_ms']:.0f} ms, p95 {total['p95_ms']:.0f} ms, "
              f"p99 {total['p99_ms']:.0f} ms, errors {total['errors']:.0f}"
              + (f" (shed {total['shed']:.0f}, answered in p99 {total['shed_p99_ms']:.0f} ms)"
                 if total.get("shed") else ""))
    gen = summary.generator
    if gen.cpu_us_per_request:
        print(f"generator: {gen.cpu_us_per_request:.0f} µs CPU per request; "
              f"server CPU {summary.server.cpu_pct or 0:.0f} % of a core")
    if sweep := summary.concurrency:
        _print_levels(sweep)
    if campaign.find_max:
        fm = summary.find_max
        print(f"find-max: {fm.max_rps:.0f} rps sustained with p99 {fm.p99_ms:.0f} ms" if fm
              else "find-max: no step met the SLOs")
    if summary.crosscheck:
        pa = summary.crosscheck
        print(f"perf_analyzer ({pa['mode']}): {pa['rps']:.1f} infer/s, p50 {pa['p50_ms']:.1f} ms, "
              f"p99 {pa['p99_ms']:.1f} ms")
    for verdict in summary.verdicts:
        print(verdict.text)
    if not result.passed:
        failed = [v for v in summary.verdicts if not v.passed]
        if not failed:
            print("FAIL: no requests completed" if not total.get("requests") else "FAIL: requests failed")
        print(f"SLO verdict: FAIL ({len(failed)} of {len(summary.verdicts)} SLOs failed)")
        return EXIT_SLO_FAILED
    print(f"SLO verdict: PASS ({len(summary.verdicts)} SLOs)")
    return EXIT_OK


def _print_levels(sweep: dict[str, Any]) -> None:
    """summary.json's ``concurrency``: one line per level, then where the highest level stands."""
    for level in sweep["levels"]:
        cpu = level["server_cpu_pct"]
        print(f"  {level['users']:>5} users: offered {level['offered_rps']:7.1f}/s, goodput "
              f"{level['goodput_rps']:7.1f}/s ({100 * (level['ratio'] or 0):5.1f} % of peak), refused "
              f"{level['refused_rps']:7.1f}/s, other errors {level['other_errors']}, p50 "
              f"{level['p50_ms']:.0f} ms, p99 {level['p99_ms']:.0f} ms, server CPU "
              + ("–" if cpu is None else f"{cpu:.0f} %"))
    print(f"saturating level: {sweep['saturating_users']} users (peak goodput "
          f"{sweep['peak_goodput_rps']:.1f}/s at {sweep['peak_users']}); highest level "
          f"{sweep['highest_users']} users = {sweep['highest_multiple']:.2g}x it, goodput "
          f"{100 * (sweep['highest_ratio'] or 0):.1f} % of the peak")


def _plan(c: campaigns.Campaign) -> str:
    plan = ("find-max" if c.find_max else f"{len(c.stages)} concurrency levels" if c.concurrency
            else f"{len(c.stages)} stage(s)")
    if c.sized_by_capacity:
        plan += ", rates relative to the capacity"
    return plan


def _validate(args: argparse.Namespace) -> int:
    checked = []
    for ref in args.campaigns:
        c = campaigns.load(ref)
        slos = [str(s) for s in c.slos] + [f"{head}{factor:g}x capacity" for head, factor in c.capacity_slos]
        checked.append({"campaign": c.name, "plan": _plan(c), "duration_s": c.duration_s, "slos": slos,
                        "sized_by_capacity": c.sized_by_capacity})
        if not args.json:
            print(f"{c.name}: OK ({_plan(c)}, {c.duration_s:.0f} s, SLOs: {', '.join(slos) or 'none'})")
    if args.json:
        print(json.dumps(checked, indent=2))
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    found = []
    for path in sorted(campaigns.CAMPAIGNS_DIR.glob("*.toml")):
        c = campaigns.load(path)
        found.append({"name": path.stem, "duration_s": c.duration_s, "description": c.description,
                      "sized_by_capacity": c.sized_by_capacity})
        if not args.json:
            print(f"{path.stem:18} {c.duration_s:6.0f} s  {c.description}")
    if args.json:
        print(json.dumps(found, indent=2))
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    import os
    import subprocess
    import tempfile

    from tritonstack.loadtest.campaign import sizing
    from tritonstack.loadtest.runner.run import LOCUSTFILE

    campaign = campaigns.load(args.campaign)
    if campaign.sized_by_capacity:
        if args.capacity is None:
            raise CampaignError(f"campaign {campaign.name!r} has rates relative to the capacity; give the "
                                "worker the master's --capacity RPS (the master prints it)")
        campaign = sizing.resolve(campaign, sizing.given(args.capacity).rps)
    folder = Path(tempfile.mkdtemp(prefix="loadtest-worker-"))
    plan = folder / "plan.json"
    plan.write_text(json.dumps({"campaign": campaign.to_dict(), "grpc": _one_url(args) or campaign.target.grpc,
                                "metrics_url": None, "server_pid": None, "report_dir": str(folder)}))
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host",
           args.master_host, "--master-port", str(args.master_port)]
    if args.processes > 1:
        cmd += ["--processes", str(args.processes)]
    return subprocess.call(cmd, env={**os.environ, "LOADTEST_PLAN": str(plan)})


def _heal_drill(args: argparse.Namespace) -> int:
    from tritonstack.loadtest.drills.heal import run_drill

    if not 1 <= args.clients <= 16:
        raise CampaignError(f"--clients must be 1..16, got {args.clients}")
    if not 1 <= args.timeout <= 600:
        raise CampaignError(f"--timeout must be 1s..10m, got {args.timeout:g} s")
    if not args.model_repository.is_dir():
        raise CampaignError(f"model repository {args.model_repository} does not exist; build it first "
                            "(make repository)")
    try:
        results = run_drill(args.model_repository, models=tuple(args.model),
                            pipelines=tuple(args.pipeline) or ("embed", "classify_digit"),
                            threads_per_kind=args.clients, timeout_s=args.timeout,
                            log=(lambda _: None) if args.json or args.quiet else print)
    except ValueError as exc:
        raise CampaignError(str(exc)) from None
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    return EXIT_OK if results and all(r.recovered for r in results) else EXIT_SLO_FAILED


def _perf_analyzer(args: argparse.Namespace) -> int:
    from tritonstack.loadtest.bench import perf_analyzer

    args.target_url = _one_url(args)
    args.concurrency_given = args.concurrency is not None
    args.concurrency = args.concurrency or 16
    return perf_analyzer.main(args)


def _cost(args: argparse.Namespace) -> int:
    from tritonstack.loadtest.cost import cloud

    return cloud.run(args)


def _compare(args: argparse.Namespace) -> int:
    from tritonstack.loadtest.report import compare

    return compare.run(args.run_a, args.run_b, max_p99=args.max_p99_regression, max_rps=args.max_rps_regression,
                       out=args.out, as_json=args.json)


def _bench(args: argparse.Namespace) -> int:
    from tritonstack.loadtest.bench import pipeline

    return pipeline.run(args)


COMMANDS = {"run": lambda a: _run(a, find_max=False), "find-max": lambda a: _run(a, find_max=True),
            "validate": _validate, "list": _list, "worker": _worker, "perf-analyzer": _perf_analyzer,
            "cost": _cost, "compare": _compare, "heal-drill": _heal_drill, "bench-pipelines": _bench}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run one command, print ``Type: message`` on errors; return the exit code."""
    args = build_tool().parse(argv)
    try:
        return int(COMMANDS[args.command](args))
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LoadTestError as exc:
        if args.verbose:
            traceback.print_exc()
        message = " ".join(str(exc).split()) if not args.verbose else str(exc)  # one line
        print(f"{type(exc).__name__}: {message}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, CampaignError) else EXIT_FAILED
    except Exception as exc:  # a bug: one line, the traceback with --verbose
        if args.verbose:
            traceback.print_exc()
        print(f"InternalError: {type(exc).__name__}: {exc} (a bug in the load tester; rerun with "
              "--verbose for the traceback and report it)", file=sys.stderr)
        return EXIT_INTERNAL
