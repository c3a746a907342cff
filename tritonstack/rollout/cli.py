"""``python -m tritonstack.rollout``: versions side by side, A/B and canary splits, shadow traffic, rollback.

Exit codes (the project's convention): 0 done (promoted, split set, report written), 1 a check
failed (the candidate did not load or missed its golden check, an SLO broke and the canary rolled
back), 2 bad command line or input, 3 no server, 4 internal error, 130 interrupted (the split stays
as it was: run ``status``, then ``canary`` again to resume or ``rollback``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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

EXIT_OK, EXIT_CHECK, EXIT_USAGE, EXIT_ENV, EXIT_INTERNAL, EXIT_INTERRUPTED = (
    ExitCode.OK, ExitCode.CHECK_FAILED, ExitCode.USAGE, ExitCode.ENVIRONMENT, ExitCode.INTERNAL, ExitCode.INTERRUPTED)


def percent(text: str) -> float:
    """A number, ``%`` allowed; the range is checked where the split is made (one line, exit 2)."""
    try:
        return float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage (0..100)") from None


def build_tool() -> Tool:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", metavar="MODEL", help="the model to roll out (e.g. digits_cnn, minilm)")
    add_model_repository(common, help="the model repository Triton serves")
    add_url(common, help="Triton gRPC address; repeat for replicas (default: 127.0.0.1:8001)")
    add_metrics_url(common, repeatable=True, help="Triton metrics endpoint, one per replica "
                    "(default: http://127.0.0.1:8002/metrics)")
    add_out(common, default=Path("reports/rollout"), help="where reports go")

    margins = argparse.ArgumentParser(add_help=False)
    margins.add_argument("--margin-p99-ms", type=float, default=5.0, metavar="MS",
                         help="'not worse' allows the candidate this much more p99 (default: %(default)s)")
    margins.add_argument("--margin-error-rate", type=float, default=0.005, metavar="F",
                         help="... and this much more error rate (default: %(default)s)")

    tool = Tool(
        "python -m tritonstack.rollout",
        "Roll a new version of a model out safely: served beside the current one, a "
        "weighted split sticky by the request parameter rollout_key, shadow traffic with agreement "
        "metrics, a canary that advances while every SLO holds and rolls back when one breaks, and "
        "A/B reports with confidence intervals. The split lives in REPO/MODEL/rollout.json; every "
        "move is logged to REPO/MODEL/rollout.jsonl.",
        epilog=exit_codes_epilog({ExitCode.CHECK_FAILED: "candidate refused at load, canary rolled back",
                                  ExitCode.ENVIRONMENT: "no server",
                                  ExitCode.INTERRUPTED: "the split stays as it was"}))

    canary = tool.command("canary", parents=[common, margins],
                            help="advance the candidate step by step while every SLO holds",
                            description="Serve the candidate beside the primary and give it each step's "
                            "share of traffic for --hold; a breached SLO (error rate, p99, p99 against the "
                            "primary, agreement) rolls back at once, naming the SLO, the measure and the "
                            "evidence. After the last step (100) the candidate is promoted. Run again after "
                            "an interruption to resume at the step reached.",
                            epilog="example: python -m tritonstack.rollout canary digits_cnn --candidate 5 "
                            "--steps 5,25,50,100 --hold 60s")
    canary.add_argument("--candidate", type=int, required=True, metavar="VERSION")
    canary.add_argument("--steps", default="5,25,50,100",
                        help="candidate shares in %% (default: %(default)s)")
    canary.add_argument("--hold", type=positive_duration, default=60.0, metavar="DURATION",
                        help="time at each step (default: 60s)")
    canary.add_argument("--max-hold", type=positive_duration, metavar="DURATION",
                        help="a step with too little traffic to judge waits up to this long for it, "
                        "then rolls back (default: 5 x --hold)")
    canary.add_argument("--compare", type=percent, default=20.0, metavar="PCT",
                        help="%% of requests also answered by the other arm, for agreement (default: 20)")
    canary.add_argument("--max-error-rate", type=float, default=0.01, metavar="F")
    canary.add_argument("--max-p99-ms", type=float, default=100.0, metavar="MS")
    canary.add_argument("--max-p99-ratio", type=float, default=1.5, metavar="X",
                        help="candidate p99 / primary p99 (and more than 5 ms apart) (default: 1.5)")
    canary.add_argument("--min-agreement", type=float, metavar="A",
                        help="default by output: 0.99 mean cosine (embeddings), 0.95 same top class "
                        "(classifiers), 0.95 scores within 5%% (rerankers)")
    canary.add_argument("--min-requests", type=int, default=100, metavar="N",
                        help="requests an arm needs before its error rate and p99 count (default: 100)")
    canary.add_argument("--min-compared", type=int, default=50, metavar="N",
                        help="compared rows before agreement counts (default: 50)")

    split = tool.command("split", parents=[common], help="serve a fixed share from the candidate (A/B)",
                           description="Start or change a split: the candidate answers --weight % of "
                           "requests (sticky per rollout_key when callers send one). Live: no reload, "
                           "no failed request.")
    split.add_argument("--candidate", type=int, required=True, metavar="VERSION")
    split.add_argument("--weight", type=percent, required=True, metavar="PCT")
    split.add_argument("--compare", type=percent, default=0.0, metavar="PCT",
                       help="%% of requests also answered by the other arm (default: 0)")

    shadow = tool.command("shadow", parents=[common, margins],
                            help="copy traffic to the candidate and report its agreement",
                            description="The primary answers every request; --share % of them are also "
                            "sent to the candidate, whose answer is compared and dropped. Writes the "
                            "agreement and A/B report, then serves the primary alone again (unless --keep).")
    shadow.add_argument("--candidate", type=int, required=True, metavar="VERSION")
    shadow.add_argument("--share", type=percent, default=100.0, metavar="PCT", help="default: 100")
    shadow.add_argument("--duration", type=positive_duration, default=60.0, metavar="DURATION", help="default: 60s")
    shadow.add_argument("--keep", action="store_true", help="keep the candidate loaded afterwards")

    report = tool.command("report", parents=[common, margins],
                            help="write the A/B report of the live split over a window")
    report.add_argument("--duration", type=positive_duration, default=60.0, metavar="DURATION", help="default: 60s")

    tool.command("pin", parents=[common],
                   help="keep serving the version served now, whatever is exported later",
                   description="Write the served version into the model's version policy, so that a "
                   "new export (or a restart of Triton) does not put the newest version live before "
                   "a rollout does. Every rollout pins its versions itself.")
    tool.command("status", parents=[common], json=True, help="the split, the versions served and the last events")
    tool.command("promote", parents=[common], help="serve the candidate alone")
    tool.command("rollback", parents=[common], help="serve the primary alone")
    return tool


def main(argv: list[str] | None = None) -> int:
    args = build_tool().parse(argv)
    from tritonstack.rollout.errors import BadRequest, RolloutError
    from tritonstack.serving.errors import InvalidSplit

    try:
        return _run(args)
    except RolloutError as exc:
        return _fail(args, exc, exc.exit_code)
    except InvalidSplit as exc:  # the split file's schema, checked where the router reads it too
        return _fail(args, exc, BadRequest.exit_code)
    except KeyboardInterrupt:
        print("Interrupted: the split stays as it was; python -m tritonstack.rollout status "
              f"{args.model} shows it (canary again resumes, rollback ends it)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug, or a server error this tool does not expect
        from tritonstack.client import ClientError
        from tritonstack.client.cli import exit_code

        if isinstance(exc, ClientError):  # the client's table: a bad --url is usage (2), not a check
            return _fail(args, exc, exit_code(exc.status))
        return _fail(args, exc, EXIT_INTERNAL, prefix="InternalError: ")


def _run(args: argparse.Namespace) -> int:
    from tritonstack.rollout.controller import Rollout, Target, parse_steps
    from tritonstack.rollout.report import Margins
    from tritonstack.rollout.slo import Slo
    from tritonstack.serving.split import percentage

    target = Target(repository=args.model_repository, urls=tuple(args.url or ["127.0.0.1:8001"]),
                    metrics_urls=tuple(args.metrics_url or ["http://127.0.0.1:8002/metrics"]),
                    reports=args.out)
    margins = (Margins(args.margin_p99_ms, args.margin_error_rate)
               if hasattr(args, "margin_p99_ms") else Margins())
    if args.command == "canary":
        steps = parse_steps(args.steps)
        slo = Slo(max_error_rate=args.max_error_rate, max_p99_ms=args.max_p99_ms,
                  max_p99_ratio=args.max_p99_ratio, min_agreement=args.min_agreement,
                  min_requests=args.min_requests, min_compared=args.min_compared)
    for name in ("weight", "compare", "share"):  # before anything moves
        if getattr(args, name, None) is not None:
            percentage(f"--{name}", getattr(args, name))
    rollout = Rollout(target, args.model)
    if args.command == "canary":
        if args.max_hold is not None and args.max_hold < args.hold:
            from tritonstack.rollout.errors import BadRequest

            raise BadRequest("--max-hold must be at least --hold")
        outcome = rollout.canary(args.candidate, steps, args.hold, slo, args.compare, margins=margins,
                                 max_hold_s=args.max_hold)
        print(f"report: {outcome.report}")
        if outcome.promoted:
            print(f"promoted: {args.model} v{args.candidate} serves all traffic")
            return EXIT_OK
        print(f"RolledBack: {outcome.breaches[0]}; v{args.candidate} unloaded, the primary serves alone",
              file=sys.stderr)
        return EXIT_CHECK
    if args.command == "split":
        from tritonstack.rollout.errors import BadRequest

        existing = rollout.split()
        if existing is not None and existing.candidate not in (None, args.candidate):
            raise BadRequest(f"a rollout of {args.model} v{existing.candidate} is under way; finish it "
                             "first (promote or rollback)")
        rollout.start(args.candidate, "split")
        split = rollout.set_split(weight=args.weight, compare=args.compare, mode="split")
        print(f"{args.model}: v{split.candidate} answers {split.weight:g} %, v{split.primary} the rest "
              f"(sticky by the request parameter {split.key}); {split.compare:g} % compared")
        return EXIT_OK
    if args.command == "shadow":
        path = rollout.shadow(args.candidate, args.share, args.duration, margins, keep=args.keep)
        print(f"report: {path}")
        return EXIT_OK
    if args.command == "report":
        print(f"report: {rollout.measure(args.duration, margins)}")
        return EXIT_OK
    if args.command == "pin":
        print(f"{args.model}: v{rollout.pin()} pinned (version_policy specific)")
        return EXIT_OK
    if args.command == "status":
        print(json.dumps(rollout.status(), indent=2, default=str))
        return EXIT_OK
    winner = rollout.finish(promote=args.command == "promote", reason=f"by hand ({args.command})")
    print(f"{args.model}: v{winner} serves alone")
    return EXIT_OK


def _fail(args: argparse.Namespace, exc: Exception, code: int, prefix: str = "") -> int:
    if args.verbose:
        import traceback
        traceback.print_exception(exc)
    print(f"{prefix}{type(exc).__name__}: {exc}", file=sys.stderr)
    return code
