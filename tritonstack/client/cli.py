"""``python -m tritonstack.client``: query a Triton server from the shell.

    python -m tritonstack.client COMMAND ... [--url HOST:PORT]... [--protocol grpc|http] [--timeout DURATION] [--json]

Commands: health, models, model NAME, embed TEXT..., classify IMAGE...|TEXT..., rerank QUERY
TEXT... --model M, infer MODEL --input NAME=FILE.npy, load/unload/reload NAME.
The access token for restricted protocols is read from TRITON_ACCESS_TOKEN; the default
replica list from TRITON_GRPC_URLS (comma-separated), else 127.0.0.1:8001; with ``--protocol
http`` (Triton's HTTP / KServe v2 front end, e.g. a Modal deployment) from TRITON_HTTP_URLS,
else 127.0.0.1:8000.

Exit codes (decided in ``exit_code`` only):
    0  success (health: every replica live and ready)
    1  the server or model failed the request, or a replica is not ready
    2  bad command line or input: invalid argument, unknown model, bad file, access denied
    3  no answer: every replica unavailable, overloaded, or the deadline passed
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tritonstack.cli import ExitCode, Tool, add_out, add_url, exit_codes_epilog, positive_duration
from tritonstack.client._config import DEFAULT_URLS, PROTOCOLS, URLS_ENV, ClientConfig
from tritonstack.client._errors import ClientError, Status
from tritonstack.client._images import load_digit
from tritonstack.client._sync import Client

# The project's one table (tritonstack.cli.ExitCode): 3 = the environment lacks something, here
# an answering server.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_ANSWER, EXIT_INTERNAL, EXIT_INTERRUPTED = (
    ExitCode.OK, ExitCode.CHECK_FAILED, ExitCode.USAGE, ExitCode.ENVIRONMENT, ExitCode.INTERNAL, ExitCode.INTERRUPTED)
_USAGE = {Status.INVALID_ARGUMENT, Status.NOT_FOUND, Status.CONFIG, Status.PERMISSION_DENIED,
          Status.UNAUTHENTICATED, Status.MESSAGE_TOO_LARGE}
_NO_ANSWER = {Status.UNAVAILABLE, Status.OVERLOADED, Status.RESOURCE_EXHAUSTED,
              Status.DEADLINE_EXCEEDED}


def exit_code(status: Status) -> int:
    """The CLI's exit code for a failed call."""
    if status in _USAGE:
        return EXIT_USAGE
    if status in _NO_ANSWER:
        return EXIT_NO_ANSWER
    return EXIT_FAILED


def _connection(parser: argparse.ArgumentParser) -> None:
    add_url(parser, help=f"Triton's address, repeatable: gRPC HOST:PORT (default: ${URLS_ENV['grpc']} or "
            f"{DEFAULT_URLS['grpc']}); with --protocol http HOST:PORT or http(s)://HOST[:PORT][/PATH] "
            f"(default: ${URLS_ENV['http']} or {DEFAULT_URLS['http']})")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="grpc",
                        help="Triton's gRPC front end, or its HTTP / KServe v2 one, e.g. a Modal deployment's "
                        "web endpoint (default: %(default)s)")
    parser.add_argument("--timeout", type=positive_duration, default=10.0, metavar="DURATION",
                        help="deadline per call, retries included (default: 10s)")
    parser.add_argument("--retries", type=int, default=3, metavar="N",
                        help="retries on UNAVAILABLE (default: %(default)s)")


def build_tool() -> Tool:
    tool = Tool(
        "python -m tritonstack.client",
        "Call a Triton Inference Server over gRPC or HTTP (--protocol; several --url: round-robin with "
        "failover). "
        "Token for restricted protocols: TRITON_ACCESS_TOKEN.",
        epilog=exit_codes_epilog({ExitCode.CHECK_FAILED: "the request failed, or a replica is not ready",
                                  ExitCode.USAGE: "also an unknown model or access denied",
                                  ExitCode.ENVIRONMENT: "no answer: unavailable, overloaded or deadline"}),
    )
    tool.shared(_connection)
    tool.command("health", help="liveness and readiness of every replica", json=True)
    tool.command("models", help="models in the repository and their state", json=True)
    tool.command("repository", help="the model repository: every model, version and state (as models)", json=True)
    for name, text in (("load", "load NAME (or its new versions) on every replica"),
                       ("unload", "unload NAME on every replica"),
                       ("reload", "build new instances of NAME on every replica (e.g. after its backend died "
                                  "or its config.pbtxt changed), switching traffic once they are ready")):
        manage = tool.command(name, help=text + "; needs explicit model control and, on a "
                              "restricted server, TRITON_ACCESS_TOKEN", json=True)
        manage.add_argument("name", metavar="NAME")
        if name == "unload":
            manage.add_argument("--dependents", action="store_true",
                                help="also unload the ensembles that use NAME")
    model = tool.command("model", help="a model's inputs, outputs, max_batch_size and readiness", json=True)
    model.add_argument("name", metavar="NAME")
    embed = tool.command("embed", help="sentence embeddings (float32 [n, d]) from a text pipeline", json=True)
    embed.add_argument("texts", nargs="+", metavar="TEXT")
    embed.add_argument("--model", default="embed",
                       help="the pipeline: the demo's embed (default) or one `tritonstack-ensembles add` wrote")
    classify = tool.command(
        "classify", help="labels from the classify_digit pipeline (images), or from a text-classification "
        "pipeline (texts) with --model", json=True)
    classify.add_argument("items", nargs="+", metavar="IMAGE|TEXT",
                          help="images: a PNG (any size; shrunk to 8x8) or a .npy [8,8]/[n,8,8] on the 0..16 "
                          "scale; texts when --model is a text pipeline (its input is TEXT)")
    classify.add_argument("--model", default="classify_digit", help="default: %(default)s")
    rerank = tool.command("rerank", help="score passages against a query with a cross-encoder pipeline, "
                          "best first", json=True)
    rerank.add_argument("query", metavar="QUERY")
    rerank.add_argument("texts", nargs="+", metavar="TEXT")
    rerank.add_argument("--model", required=True, help="a rerank pipeline `python -m tritonstack.ensembles add` wrote")
    infer = tool.command("infer", help="run any model on .npy inputs", json=True)
    infer.add_argument("model", metavar="MODEL")
    infer.add_argument("--input", action="append", required=True, metavar="NAME=FILE.npy",
                       help="an input tensor, repeatable")
    infer.add_argument("--output", action="append", metavar="NAME",
                       help="only these outputs (repeatable; default: all)")
    add_out(infer, default=None, help="also write each output to DIR/NAME.npy")
    return tool


def main(argv: Sequence[str] | None = None) -> int:
    args = build_tool().parse(argv)
    try:
        config = ClientConfig.from_env(protocol=args.protocol, timeout_s=args.timeout, retries=args.retries,
                                       **({"urls": tuple(args.url)} if args.url else {}))
        with Client(config) as client:
            return _COMMANDS[args.command](client, args)
    except ClientError as exc:
        if args.verbose:
            import traceback
            traceback.print_exception(exc)
        message = str(exc)
        if exc.status is Status.NOT_FOUND and exc.model:
            message += _did_you_mean(config, exc.model)
        print(f"ClientError: {message}", file=sys.stderr)
        return exit_code(exc.status)
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback with --verbose
        if args.verbose:
            import traceback
            traceback.print_exception(exc)
        print(f"InternalError: {type(exc).__name__}: {exc} (a bug in the client; rerun with --verbose "
              "for the traceback and report it)", file=sys.stderr)
        return EXIT_INTERNAL


def _did_you_mean(config: ClientConfig, model: str) -> str:
    try:
        with Client(config, timeout_s=2.0, retries=0) as client:
            names = sorted({m.name for m in client.list_models()})
    except ClientError:
        return ""
    close = difflib.get_close_matches(model, names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _health(client: Client, args: argparse.Namespace) -> int:
    replicas = client.health(timeout_s=min(args.timeout, 5.0))
    lines = [f"{r.url}  live={'yes' if r.live else 'no'}  ready={'yes' if r.ready else 'no'}"
             + (f"  ({r.error})" if r.error else "") for r in replicas]
    _emit(args, [r.__dict__ for r in replicas], "\n".join(lines))
    return EXIT_OK if all(r.ready for r in replicas) else EXIT_FAILED


def _models(client: Client, args: argparse.Namespace) -> int:
    models = client.list_models()
    width = max((len(m.name) for m in models), default=4)
    lines = [f"{m.name:<{width}}  {m.version or '-':>3}  {m.state or '-'}"
             + (f"  {m.reason}" if m.reason else "") for m in models]
    _emit(args, [m.__dict__ for m in models], "\n".join(lines) or "(no models)")
    return EXIT_OK


def _manage(client: Client, args: argparse.Namespace) -> int:
    """load / unload / reload NAME on every replica."""
    if args.name not in {m.name for m in client.list_models()}:  # Triton unloads a stranger "fine"
        raise ClientError(Status.NOT_FOUND, f"no model '{args.name}' in the server's repository",
                          model=args.name, origin="client")
    if args.command == "load":
        done = client.load_model(args.name)
    elif args.command == "unload":
        done = client.unload_model(args.name, unload_dependents=args.dependents)
    else:
        done = client.reload_model(args.name)
    past = {"load": "loaded", "unload": "unloaded", "reload": "reloaded with new instances"}[args.command]
    _emit(args, {"model": args.name, "action": args.command, "replicas": done},
          "\n".join(f"{url}: {args.name} {past}" for url in done))
    return EXIT_OK


def _model(client: Client, args: argparse.Namespace) -> int:
    info = client.model_info(args.name)
    ready = client.model_ready(args.name)
    data = {"name": info.name, "platform": info.platform, "max_batch_size": info.max_batch_size,
            "ready": ready,
            "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in info.inputs],
            "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                        for t in info.outputs]}
    lines = [f"{info.name} ({info.platform}) max_batch_size={info.max_batch_size} "
             f"ready={'yes' if ready else 'no'}"]
    lines += [f"  input  {t.name} {t.datatype} {list(t.shape)}" for t in info.inputs]
    lines += [f"  output {t.name} {t.datatype} {list(t.shape)}" for t in info.outputs]
    _emit(args, data, "\n".join(lines))
    return EXIT_OK


def _embed(client: Client, args: argparse.Namespace) -> int:
    vectors = client.embed(args.texts, model=args.model)
    lines = [f"{text!r}: [{', '.join(f'{v:.4f}' for v in vec[:4])}, ...] ({vec.size} dims)"
             for text, vec in zip(args.texts, vectors, strict=True)]
    _emit(args, {"texts": args.texts, "embeddings": vectors.tolist()}, "\n".join(lines))
    return EXIT_OK


def _classify(client: Client, args: argparse.Namespace) -> int:
    # the demo's digits pipeline is checked locally first; another model says what it takes
    if args.model != "classify_digit" and any(t.name == "TEXT" for t in client.model_info(args.model).inputs):
        return _classify_texts(client, args)
    names, images = [], []
    for path in map(Path, args.items):
        batch = load_digit(path)
        images.append(batch)
        names += [str(path)] if len(batch) == 1 else [f"{path}[{i}]" for i in range(len(batch))]
    labels, probabilities = client.classify_digits(np.concatenate(images), model=args.model)
    rows = [{"image": name, "label": int(label), "probability": float(p[label]),
             "probabilities": p.tolist()}
            for name, label, p in zip(names, labels, probabilities, strict=True)]
    lines = [f"{r['image']}: {r['label']} (p={r['probability']:.3f})" for r in rows]
    _emit(args, rows, "\n".join(lines))
    return EXIT_OK


def _classify_texts(client: Client, args: argparse.Namespace) -> int:
    labels, probabilities = client.classify_texts(args.items, model=args.model)
    rows = [{"text": text, "label": label, "probability": float(p.max()), "probabilities": p.tolist()}
            for text, label, p in zip(args.items, labels, probabilities, strict=True)]
    _emit(args, rows, "\n".join(f"{r['text']!r}: {r['label']} (p={r['probability']:.3f})" for r in rows))
    return EXIT_OK


def _rerank(client: Client, args: argparse.Namespace) -> int:
    scores = client.rerank(args.query, args.texts, model=args.model)
    order = np.argsort(-scores, kind="stable")
    rows = [{"index": int(i), "text": args.texts[i], "score": float(scores[i])} for i in order]
    _emit(args, {"query": args.query, "ranking": rows},
          "\n".join(f"{r['score']:+.4f}  [{r['index']}] {r['text']!r}" for r in rows))
    return EXIT_OK


def _infer(client: Client, args: argparse.Namespace) -> int:
    inputs = {}
    for item in args.input:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise ClientError(Status.INVALID_ARGUMENT, f"--input {item!r}: expected NAME=FILE.npy",
                              origin="client")
        inputs[name] = _load_npy(Path(file))
    if args.out:  # before the call: a bad folder costs no inference
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClientError(Status.INVALID_ARGUMENT, f"--out {args.out}: cannot be a folder for the "
                              f"outputs ({exc.strerror}); pass a folder", origin="client") from None
    outputs = client.infer(args.model, inputs, args.output)
    if args.out:
        for name, array in outputs.items():
            np.save(args.out / f"{name}.npy", array)
    data = {name: {"datatype": str(a.dtype), "shape": list(a.shape), "data": _jsonable(a)}
            for name, a in outputs.items()}
    lines = [f"{name} {a.dtype} {list(a.shape)}\n{np.array2string(a, threshold=50, precision=4)}"
             for name, a in outputs.items()]
    _emit(args, data, "\n".join(lines))
    return EXIT_OK


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise ClientError(Status.INVALID_ARGUMENT, f"input file {path} does not exist", origin="client")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ClientError(Status.INVALID_ARGUMENT, f"{path} is not a .npy array: {exc}",
                          origin="client") from None


def _jsonable(array: np.ndarray) -> Any:
    if array.dtype == object:
        def decode(x: object) -> object:
            return x.decode("utf-8", "replace") if isinstance(x, bytes) else x
        return np.vectorize(decode, otypes=[object])(array).tolist()
    return array.tolist()


_COMMANDS = {"health": _health, "models": _models, "repository": _models, "model": _model,
             "embed": _embed, "classify": _classify, "rerank": _rerank, "infer": _infer,
             "load": _manage, "unload": _manage, "reload": _manage}
