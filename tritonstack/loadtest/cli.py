"""``python -m tritonstack.loadtest``: run campaigns, find the maximum RPS, cross-check with perf_analyzer.

Exit codes (decided here only; the project's convention): 0 every SLO held; 1 an SLO failed (each
failure printed with its margin); 2 bad command line or campaign file; 3 the target, Locust or
perf_analyzer failed; 4 internal error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path

from tritonstack.loadtest import campaign as campaigns
from tritonstack.loadtest.errors import CampaignError, LoadTestError

EXIT_OK, EXIT_SLO_FAILED, EXIT_USAGE, EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


def _target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("campaign", help="campaign file (TOML/YAML) or bundled name (see `list`)")
    parser.add_argument("--grpc", metavar="HOST:PORT", help="Triton gRPC endpoint (default: the campaign's)")
    parser.add_argument("--metrics", metavar="URL", help="Triton metrics URL ('' to skip)")
    parser.add_argument("--model-repository", type=Path, metavar="DIR",
                        help="start a Triton of our own on DIR (free ports) for the run, then stop it")
    parser.add_argument("--report-dir", type=Path, metavar="DIR",
                        help="where reports go (default: reports/loadtest/CAMPAIGN-TIME)")
    parser.add_argument("--processes", type=int, metavar="N",
                        help="Locust processes on this machine (forked workers; default: the campaign's)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="start a Locust master and N local worker processes")
    parser.add_argument("--master", action="store_true",
                        help="be a Locust master for remote workers (`python -m tritonstack.loadtest worker`)")
    parser.add_argument("--expect-workers", type=int, default=0, metavar="N",
                        help="with --master: wait for N workers")
    parser.add_argument("--master-bind-port", type=int, default=5557, metavar="PORT")
    parser.add_argument("--master-bind-host", default="127.0.0.1", metavar="ADDR",
                        help="with --master: the address remote workers connect to; 0.0.0.0 exposes "
                             "the master on every interface (default: %(default)s)")
    parser.add_argument("--server-nice", type=int, default=0, metavar="N",
                        help="with --model-repository: Unix nice (0-19) of the Triton it starts; > 0 "
                             "lets a generator on the same machine go first (default: %(default)s)")
    parser.add_argument("--server-pid", type=int, metavar="PID",
                        help="pid of an already running server, for its CPU (default: found by port)")
    parser.add_argument("--crosscheck", action="store_true",
                        help="then measure the first traffic entry with perf_analyzer at the same rate")
    parser.add_argument("--no-preflight", action="store_true",
                        help="skip the readiness check and the test request per model")
    parser.add_argument("--quiet", action="store_true",
                        help="no live progress on stderr (it is off anyway when stderr is not a terminal)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tritonstack.loadtest",
                                     description="Locust load campaigns against Triton, with SLO gates.")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _target_args(sub.add_parser("run", help="run a campaign; exit 1 if an SLO fails"))
    _target_args(sub.add_parser("find-max", help="run a [find_max] campaign; print the highest RPS "
                                                 "meeting its SLOs"))
    drill = sub.add_parser(
        "heal-drill", help="kill each backend stub of a repository under load; measure failures and recovery",
        description="Serve DIR with a Triton of our own under the launcher's supervisor, call the "
        "pipelines from client threads on 127.0.0.1, SIGKILL one backend stub per model in turn and "
        "measure how long the launcher takes to recover and how many requests fail. Exit 0 when every "
        "model recovered within --timeout, 1 when one did not.")
    drill.add_argument("--model-repository", type=Path, required=True, metavar="DIR")
    drill.add_argument("--model", action="append", default=[], metavar="NAME",
                       help="kill a stub of this model (repeatable; default: every model with a stub)")
    drill.add_argument("--pipeline", action="append", default=[], metavar="NAME",
                       help="pipeline to call under the drill: embed, classify_digit (default: both)")
    drill.add_argument("--clients", type=int, default=2, metavar="N",
                       help="threads per pipeline and client kind, bare and with retries "
                       "(default: %(default)s)")
    drill.add_argument("--timeout", type=float, default=60.0, metavar="S",
                       help="longest wait for one recovery (default: %(default)s)")
    drill.add_argument("--json", action="store_true", help="print the results as JSON")
    cmp = sub.add_parser(
        "compare", help="compare two runs side by side; exit 1 when B regressed past a bound",
        description="Compare the throughput and p99 of two runs' report folders (A, then B) per traffic "
        "entry, write compare.md and compare.html, and exit 1 when a bound is crossed. With repeated "
        "windows in both runs, changes get a 95%% bootstrap interval and are marked when within noise.")
    cmp.add_argument("run_a", metavar="RUN_A", help="report folder (or summary.json) of the baseline")
    cmp.add_argument("run_b", metavar="RUN_B", help="report folder (or summary.json) of the candidate")
    cmp.add_argument("--max-p99-regression", metavar="PCT", help="fail when B's p99 rose by more (e.g. 10%%)")
    cmp.add_argument("--max-rps-regression", metavar="PCT",
                     help="fail when B's throughput fell by more (e.g. 5%%)")
    cmp.add_argument("--out", type=Path, metavar="DIR", help="where the report goes "
                     "(default: reports/compare/A-vs-B)")
    cmp.add_argument("--json", action="store_true", help="print the changes as JSON")
    validate = sub.add_parser("validate", help="check campaign files without running them")
    validate.add_argument("campaigns", nargs="+", metavar="CAMPAIGN")
    sub.add_parser("list", help="list the bundled campaigns")
    worker = sub.add_parser("worker", help="a Locust worker for `run --master` on another machine")
    worker.add_argument("campaign")
    worker.add_argument("--master-host", default="127.0.0.1")
    worker.add_argument("--master-port", type=int, default=5557)
    worker.add_argument("--grpc", metavar="HOST:PORT", help="Triton gRPC endpoint as seen from here")
    worker.add_argument("--processes", type=int, default=1, metavar="N")
    pa = sub.add_parser("perf-analyzer", help="measure a model with Triton's perf_analyzer (cross-check)")
    pa.add_argument("target", help="a campaign (its first traffic entry, at its first measured rate) "
                    "or a demo pipeline name")
    pa.add_argument("--grpc", metavar="HOST:PORT", default=None)
    pa.add_argument("--model-repository", type=Path, metavar="DIR", help="start a Triton on DIR for it")
    pa.add_argument("--rate", type=float, metavar="RPS", help="fixed request rate (default: concurrency)")
    pa.add_argument("--concurrency", type=int, metavar="N",
                    help="fixed number of outstanding requests (default 16 when no rate applies)")
    pa.add_argument("--duration", type=float, default=10.0, metavar="S", help="measurement window")
    pa.add_argument("--report-dir", type=Path, metavar="DIR",
                    help="where to write perf_analyzer.csv and .json (default: reports/loadtest/...)")
    sub.add_parser("cost", help="cost per million requests (see `python -m tritonstack.loadtest cost --help`)",
                   add_help=False)
    sub.add_parser("bench-pipelines", add_help=False,
                   help="served pipelines vs in-process ONNX Runtime (see `... bench-pipelines --help`)")
    return parser


def _run(args: argparse.Namespace, find_max: bool) -> int:
    from tritonstack.loadtest.runner import RunOptions, run

    campaign = campaigns.load(args.campaign)
    if find_max and not campaign.find_max:
        raise CampaignError(f"campaign {campaign.name!r} has no [find_max] section; use `run` for it or "
                            "pick a find-max campaign (for example embed-find-max)")
    if args.metrics:
        campaigns.check_metrics_url(args.metrics)
    options = RunOptions(report_dir=args.report_dir, grpc=args.grpc, metrics_url=args.metrics,
                         model_repository=args.model_repository, processes=args.processes,
                         workers=args.workers, master=args.master, expect_workers=args.expect_workers,
                         master_bind_port=args.master_bind_port, master_bind_host=args.master_bind_host,
                         progress=sys.stderr.isatty() and not args.quiet,
                         server_pid=args.server_pid,
                         server_nice=args.server_nice, preflight=not args.no_preflight,
                         crosscheck=args.crosscheck)
    print(f"campaign {campaign.name}: {campaign.duration_s:.0f} s"
          f"{' at most' if campaign.find_max else ''}, {len(campaign.traffic)} traffic kind(s)", flush=True)
    result = run(campaign, options)
    summary = result.summary
    total = summary["slo_window"]["stats"].get("Aggregated", {})
    print(f"report: {result.report_dir}")
    if total:
        print(f"measured {summary['slo_window']['duration_s']:.1f} s: {total['requests']:.0f} requests, "
              f"{total['rps']:.1f} rps, p50 {total['p50_ms']:.0f} ms, p95 {total['p95_ms']:.0f} ms, "
              f"p99 {total['p99_ms']:.0f} ms, errors {total['errors']:.0f}"
              + (f" (shed {total['shed']:.0f}, answered in p99 {total['shed_p99_ms']:.0f} ms)"
                 if total.get("shed") else ""))
    gen = summary["generator"]
    if gen["cpu_us_per_request"]:
        print(f"generator: {gen['cpu_us_per_request']:.0f} µs CPU per request; "
              f"server CPU {summary['server']['cpu_pct'] or 0:.0f} % of a core")
    if sweep := summary.get("concurrency"):
        _print_levels(sweep)
    if campaign.find_max:
        fm = summary["find_max"]
        print(f"find-max: {fm['max_rps']:.0f} rps sustained with p99 {fm['p99_ms']:.0f} ms" if fm
              else "find-max: no step met the SLOs")
    if summary.get("crosscheck"):
        pa = summary["crosscheck"]
        print(f"perf_analyzer ({pa['mode']}): {pa['rps']:.1f} infer/s, p50 {pa['p50_ms']:.1f} ms, "
              f"p99 {pa['p99_ms']:.1f} ms")
    for verdict in result.verdicts:
        print(verdict.describe())
    if not result.passed:
        failed = [v for v in result.verdicts if not v.passed]
        if not failed:
            print("FAIL: no requests completed" if not total.get("requests") else "FAIL: requests failed")
        print(f"SLO verdict: FAIL ({len(failed)} of {len(result.verdicts)} SLOs failed)")
        return EXIT_SLO_FAILED
    print(f"SLO verdict: PASS ({len(result.verdicts)} SLOs)")
    return EXIT_OK


def _print_levels(sweep: dict) -> None:
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


def _validate(args: argparse.Namespace) -> int:
    for ref in args.campaigns:
        c = campaigns.load(ref)
        slos = ", ".join(str(s) for s in c.slos) or "none"
        plan = ("find-max" if c.find_max else f"{len(c.stages)} concurrency levels" if c.concurrency
                else f"{len(c.stages)} stage(s)")
        print(f"{c.name}: OK ({plan}, {c.duration_s:.0f} s, SLOs: {slos})")
    return EXIT_OK


def _list() -> int:
    for path in sorted(campaigns.CAMPAIGNS_DIR.glob("*.toml")):
        c = campaigns.load(path)
        print(f"{path.stem:18} {c.duration_s:6.0f} s  {c.description}")
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    import json
    import os
    import subprocess
    import tempfile

    from tritonstack.loadtest.runner import LOCUSTFILE

    campaign = campaigns.load(args.campaign)
    folder = Path(tempfile.mkdtemp(prefix="loadtest-worker-"))
    plan = folder / "plan.json"
    plan.write_text(json.dumps({"campaign": campaign.to_dict(), "grpc": args.grpc or campaign.target.grpc,
                                "metrics_url": None, "server_pid": None, "report_dir": str(folder)}))
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--master-host",
           args.master_host, "--master-port", str(args.master_port)]
    if args.processes > 1:
        cmd += ["--processes", str(args.processes)]
    return subprocess.call(cmd, env={**os.environ, "LOADTEST_PLAN": str(plan)})


def _heal_drill(args: argparse.Namespace) -> int:
    import json

    from tritonstack.loadtest.heal_drill import run_drill

    if not 1 <= args.clients <= 16:
        raise CampaignError(f"--clients must be 1..16, got {args.clients}")
    if not 1 <= args.timeout <= 600:
        raise CampaignError(f"--timeout must be 1..600 seconds, got {args.timeout}")
    if not args.model_repository.is_dir():
        raise CampaignError(f"model repository {args.model_repository} does not exist; build it first "
                            "(make repository)")
    try:
        results = run_drill(args.model_repository, models=tuple(args.model),
                            pipelines=tuple(args.pipeline) or ("embed", "classify_digit"),
                            threads_per_kind=args.clients, timeout_s=args.timeout,
                            log=(lambda _: None) if args.json else print)
    except ValueError as exc:
        raise CampaignError(str(exc)) from None
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    return EXIT_OK if results and all(r.recovered for r in results) else EXIT_SLO_FAILED


def _cost(argv: list[str]) -> int:
    try:
        cost = importlib.import_module("tritonstack.loadtest.cost")
    except ModuleNotFoundError as exc:
        if exc.name != "tritonstack.loadtest.cost":
            raise
        print("Error: the cost command is not installed (loadtest/cost.py is missing)", file=sys.stderr)
        return EXIT_USAGE
    return int(cost.main(argv))


def main(argv: list[str] | None = None) -> int:
    """Parse, run one command, print ``Type: message`` on errors; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = [a for a in argv if a != "--verbose"]
    if rest and rest[0] == "cost":
        return _cost(rest[1:])
    if rest and rest[0] == "bench-pipelines":
        from tritonstack.loadtest import pipeline_bench
        return pipeline_bench.main(rest[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command in ("run", "find-max"):
            return _run(args, find_max=args.command == "find-max")
        if args.command == "validate":
            return _validate(args)
        if args.command == "heal-drill":
            return _heal_drill(args)
        if args.command == "compare":
            from tritonstack.loadtest import compare

            return compare.main(args)
        if args.command == "list":
            return _list()
        if args.command == "worker":
            return _worker(args)
        if args.command == "perf-analyzer":
            from tritonstack.loadtest import crosscheck

            args.concurrency_given = args.concurrency is not None
            args.concurrency = args.concurrency or 16
            return crosscheck.main(args)
        raise AssertionError(args.command)
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LoadTestError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, CampaignError) else EXIT_FAILED
    except Exception as exc:  # a bug: one line, the traceback with --verbose
        if args.verbose:
            traceback.print_exc()
        print(f"InternalError: {type(exc).__name__}: {exc} (a bug in the load tester; rerun with "
              "--verbose for the traceback and report it)", file=sys.stderr)
        return EXIT_INTERNAL
