"""``python -m ensembles build``: build the demo model repository from scratch, idempotently.

Exit codes (the project's convention): 0 built, 1 an export or gate failed, 2 bad command line or
input, 3 environment (repository not writable, no GPU), 4 internal error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_CHECK, EXIT_USAGE, EXIT_ENV, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ensembles",
        description="Pre/post-processing steps and the embed / classify_digit ensembles.")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = sub.add_parser(
        "build", help="export, quantize, gate and assemble the demo repository",
        description="Export MiniLM and the digits CNN (FP32 + INT8, parity and accuracy gates), "
        "then write the tokenizer, digits pre/post-processing and both ensembles. Models "
        "already exported with the same settings are kept unless --force.")
    build.add_argument("--repository", type=Path, default=Path("model_repository"), metavar="DIR",
                       help="model repository to write (default: %(default)s)")
    build.add_argument("--force", action="store_true", help="re-export models that are already there")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from converters.errors import ConverterError
    from ensembles.build import build

    try:
        report = build(args.repository, force=args.force)
    except ConverterError as exc:
        return _fail(args, exc, exc.exit_code)
    except KeyboardInterrupt:
        print("Interrupted: rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, ValueError) as exc:
        return _fail(args, exc, EXIT_USAGE)
    except Exception as exc:  # a bug
        return _fail(args, exc, EXIT_INTERNAL, prefix="InternalError: ")
    for name, what in report.models.items():
        print(f"  {name:<20} {what}")
    print(f"repository ready: {report.repository} ({report.seconds:.0f}s)")
    print(f"serve it: python -m server serve --model-repository {args.repository}")
    return EXIT_OK


def _fail(args: argparse.Namespace, exc: Exception, code: int, prefix: str = "") -> int:
    if args.verbose:
        import traceback
        traceback.print_exception(exc)
    print(f"{prefix}{type(exc).__name__}: {exc}", file=sys.stderr)
    return code
