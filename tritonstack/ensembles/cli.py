"""``python -m tritonstack.ensembles build``: build the demo model repository from scratch, idempotently.
``python -m tritonstack.ensembles add NAME --model MODEL``: serve an exported text model as a pipeline.
``python -m tritonstack.ensembles serve FOLDER --name NAME``: export, add and load on a running Triton.

Exit codes: the project's table (``tritonstack.cli.ExitCode``); 1 is an export or gate that failed
(``serve``: also a model Triton refused to load); 3 (``serve``) no Triton answers, it does not load
on request, or it refuses this process's token.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tritonstack.cli import ExitCode, Tool, add_model_repository, add_url, exit_codes_epilog, positive_duration
from tritonstack.converters.cli import add_export_options, export_spec

EXIT_OK, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = (ExitCode.OK, ExitCode.USAGE, ExitCode.INTERNAL,
                                                       ExitCode.INTERRUPTED)


def build_tool() -> Tool:
    tool = Tool(
        "python -m tritonstack.ensembles",
        "Pre/post-processing steps and ensembles: the demo repository, and a pipeline for any exported "
        "text model.",
        epilog=exit_codes_epilog({ExitCode.CHECK_FAILED: "an export or gate failed; serve: a model Triton "
                                  "refused to load",
                                  ExitCode.ENVIRONMENT: "repository not writable, no GPU; serve: no Triton "
                                  "answering, no explicit model control, no access token"}))
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
    _serve_command(tool)
    return tool


def _serve_command(tool: Tool) -> None:
    serve = tool.command(
        "serve", json=True,
        help="one command from a Hugging Face folder to a served pipeline: export, add, and load it on "
        "a running Triton",
        description="Against a running Triton (python -m tritonstack.server serve, explicit model control): "
        "check the server, export FOLDER with the converters' checks (parity, and the INT8 gate), add the "
        "pipeline NAME as `add` does, load the model, its steps and NAME through the repository API "
        "(TRITON_ACCESS_TOKEN on a restricted server), wait until NAME answers, and print the gRPC and "
        "HTTP calls that reach it. Nothing is exported when the server or a name would refuse it.",
        epilog=exit_codes_epilog({
            ExitCode.CHECK_FAILED: "parity or the INT8 gate failed (nothing written), or Triton refused to "
            "load a model",
            ExitCode.USAGE: "a bad folder or option, a name already served or taken, a --model-repository "
            "the server does not serve",
            ExitCode.ENVIRONMENT: "no Triton answering at --url, one that does not load on request, a "
            "missing or wrong TRITON_ACCESS_TOKEN, a repository not writable"})
        + "\n\nexample: python -m tritonstack.ensembles serve ./my-encoder --name my_embed "
        "--model-repository model_repository")
    serve.add_argument("folder", type=Path, metavar="FOLDER",
                       help="a Hugging Face model folder (config.json, weights, tokenizer files)")
    serve.add_argument("--name", required=True, metavar="NAME", help="the pipeline callers will use")
    serve.add_argument("--task", choices=["feature-extraction", "text-classification", "rerank"],
                       help="default: the folder's (a sequence-classification head is text-classification, "
                       "one with a single logit rerank; else feature-extraction)")
    serve.add_argument("--model", metavar="MODEL", help="the exported model's name (default: NAME_model)")
    add_model_repository(serve, help="the repository the running Triton serves")
    add_url(serve)
    serve.add_argument("--timeout", type=positive_duration, default=300.0, metavar="DURATION",
                       help="how long loading one model may take (default: 5m)")
    serve.add_argument("--max-length", type=int, metavar="N",
                       help="truncate texts at N tokens (default: the model's own maximum)")
    serve.add_argument("--http-front", metavar="HOST:PORT",
                       help="where the HTTP front (python -m tritonstack.http serve) listens, for the "
                       "printed calls (default: the front's own, 127.0.0.1:8080)")
    add_export_options(serve, default_precision="int8")


def main(argv: list[str] | None = None) -> int:
    args = build_tool().parse(argv)
    from tritonstack.converters.errors import ConverterError

    try:
        if args.command == "add":
            return _add(args)
        if args.command == "serve":
            return _serve(args)
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


def _serve(args: argparse.Namespace) -> int:
    from tritonstack.converters import progress
    from tritonstack.ensembles.add import AddSpec
    from tritonstack.ensembles.serve import ServeSpec, serve

    progress.set_enabled(sys.stderr.isatty() and not args.quiet and not args.json)
    model = args.model or f"{args.name}_model"
    AddSpec(args.name, model, args.model_repository, args.task)  # NAME first: MODEL derives from it
    spec = ServeSpec(
        name=args.name, task=args.task, urls=tuple(args.url or ()), max_length=args.max_length,
        timeout_s=args.timeout, **({"http_front": args.http_front} if args.http_front else {}),
        export=export_spec(args, source=str(args.folder), name=model, task=None))
    report = serve(spec, progress=None if args.quiet else _stderr)
    calls = report.calls()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return EXIT_OK
    model = report.exported.models[0]
    gate = ("INT8 gate passed" if report.exported.accuracy and report.exported.accuracy.get("passed")
            else "parity passed")
    print(f"served {spec.name} ({report.task}) from {spec.export.source} on {', '.join(report.urls)} "
          f"in {report.seconds:.0f}s: {model.name} v{model.version} ({model.precision}, {gate}), "
          f"{', '.join(report.loaded[1:])}")
    print("\ngRPC, from Python (the client extra):\n" + _indent(calls["python"]))
    print("\ngRPC, from the shell:\n" + _indent(calls["cli"]))
    print("\nHTTP: start the front once (the http extra), then curl it:\n"
          + _indent(calls["http_front"]) + "\n" + _indent(calls["curl"]))
    if "openai" in calls:
        print("\nHTTP, with OpenAI's SDK:\n" + _indent(calls["openai"]))
    return EXIT_OK


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" if line else "" for line in text.splitlines())


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _fail(args: argparse.Namespace, exc: Exception, code: int, prefix: str = "") -> int:
    if args.verbose:
        import traceback
        traceback.print_exception(exc)
    print(f"{prefix}{type(exc).__name__}: {exc}", file=sys.stderr)
    return code
