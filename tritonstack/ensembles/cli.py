"""``python -m tritonstack.ensembles build``: build the demo model repository from scratch, idempotently.
``python -m tritonstack.ensembles add NAME --model MODEL``: serve an exported text model as a pipeline.

Exit codes: the project's table (``tritonstack.cli.ExitCode``); 1 is an export or gate that failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tritonstack.cli import ExitCode, Tool, add_model_repository, exit_codes_epilog

EXIT_OK, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = (ExitCode.OK, ExitCode.USAGE, ExitCode.INTERNAL,
                                                       ExitCode.INTERRUPTED)


def build_tool() -> Tool:
    tool = Tool(
        "python -m tritonstack.ensembles",
        "Pre/post-processing steps and ensembles: the demo repository, and a pipeline for any exported "
        "text model.",
        epilog=exit_codes_epilog({ExitCode.CHECK_FAILED: "an export or gate failed",
                                  ExitCode.ENVIRONMENT: "repository not writable, no GPU"}))
    build = tool.command(
        "build", help="export, quantize, gate and assemble the demo repository",
        description="Export MiniLM and the digits CNN (FP32 + INT8, parity and accuracy gates), "
        "let MiniLM take text (its runner tokenizes) and write both ensembles, one step each. Models "
        "already exported with the same settings are kept unless --force.")
    add_model_repository(build, help="model repository to write")
    build.add_argument("--force", action="store_true", help="re-export models that are already there")
    add = tool.command(
        "add", help="serve an exported text model: its tokenizer step and an ensemble named NAME",
        description="Write the tokenizer step (the model's own tokenizer, pad token, maximum length "
        "and inputs), a labels step for classifiers, and the ensemble NAME next to a model exported "
        "with `python -m tritonstack.converters export`. Tasks: feature-extraction (TEXT -> EMBEDDING), "
        "text-classification (TEXT -> LABEL, PROBABILITIES), rerank (QUERY, TEXT -> SCORE).",
        epilog="example: python -m tritonstack.converters export ./my-bert --name my_bert --precision int8 "
        "--precision fp32 && python -m tritonstack.ensembles add my_bert_embed --model my_bert")
    add.add_argument("name", metavar="NAME", help="the ensemble callers will use")
    add.add_argument("--model", required=True, metavar="MODEL",
                     help="the exported model in the repository (its --name at export)")
    add_model_repository(add)
    add.add_argument("--task", choices=["feature-extraction", "text-classification", "rerank"],
                     help="default: the export's (a classifier with one logit is a reranker)")
    add.add_argument("--tokenizer", type=Path, metavar="DIR",
                     help="the model's Hugging Face folder (default: the one it was exported from)")
    add.add_argument("--max-length", type=int, metavar="N",
                     help="truncate texts at N tokens (default: the model's own maximum)")
    return tool


def main(argv: list[str] | None = None) -> int:
    args = build_tool().parse(argv)
    from tritonstack.converters.errors import ConverterError

    try:
        if args.command == "add":
            return _add(args)
        from tritonstack.ensembles.build import build

        report = build(args.model_repository, force=args.force)
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
    print(f"serve it: python -m tritonstack.server serve --model-repository {args.model_repository}")
    return EXIT_OK


def _add(args: argparse.Namespace) -> int:
    from tritonstack.ensembles.add import AddSpec, add

    report = add(AddSpec(args.name, args.model, args.model_repository, args.task, args.tokenizer,
                         args.max_length))
    m = report.model
    print(f"  {report.ensemble:<20} {report.task}: {m.name} ({', '.join(m.inputs)}; "
          f"max {m.max_length} tokens, batches of <= {m.max_batch_size})")
    for name in report.written[:-1]:
        print(f"  {name:<20} written")
    call = {"feature-extraction": f"python -m tritonstack.client embed --model {report.ensemble} \"some text\"",
            "text-classification": f"python -m tritonstack.client classify --model {report.ensemble} \"some text\"",
            "rerank": f"python -m tritonstack.client rerank --model {report.ensemble} \"a query\" \"passage 1\" "
                      "\"passage 2\""}[report.task]
    print(f"serve it: python -m tritonstack.server serve --model-repository {args.model_repository} "
          f"(on a running server: python -m tritonstack.client load {report.ensemble})")
    print(f"call it:  {call}")
    return EXIT_OK


def _fail(args: argparse.Namespace, exc: Exception, code: int, prefix: str = "") -> int:
    if args.verbose:
        import traceback
        traceback.print_exception(exc)
    print(f"{prefix}{type(exc).__name__}: {exc}", file=sys.stderr)
    return code
