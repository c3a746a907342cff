"""``python -m tritonstack.http``: the OpenAI- and TEI-compatible HTTP front over Triton.

    python -m tritonstack.http serve --url 127.0.0.1:8001 --host 127.0.0.1 --port 8080 \\
        --model-repository model_repository

Binds 127.0.0.1 unless ``--host`` says otherwise. Every route but ``/health`` asks for
``Authorization: Bearer <token>`` when ``TRITONSTACK_HTTP_TOKEN`` (or ``--token``) is set.
Triton's address comes from ``--url``, else ``TRITON_GRPC_URLS``, else 127.0.0.1:8001; its own
access token from ``TRITON_ACCESS_TOKEN``.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from collections.abc import Sequence

from tritonstack.cli import (
    ExitCode,
    Tool,
    add_model_repository,
    add_url,
    duration,
    exit_codes_epilog,
    int_in,
    positive_duration,
)
from tritonstack.client import ClientConfig, ClientError
from tritonstack.http.settings import DEFAULT_HOST, DEFAULT_PORT, TOKEN_ENV, Settings, token_from_env

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _connection(parser: argparse.ArgumentParser) -> None:
    add_url(parser)
    parser.add_argument("--timeout", type=positive_duration, default=10.0, metavar="DURATION",
                        help="deadline of one call to Triton, retries included (default: 10s)")
    parser.add_argument("--retries", type=int_in(0, 100), default=3, metavar="N",
                        help="retries of a call on UNAVAILABLE (default: %(default)s)")


def build_tool() -> Tool:
    tool = Tool(
        "python -m tritonstack.http",
        "An OpenAI- and TEI-compatible HTTP front for the served pipelines, calling Triton over gRPC. "
        f"Bearer token: {TOKEN_ENV}; Triton's address: --url or TRITON_GRPC_URLS.",
        epilog=exit_codes_epilog({ExitCode.USAGE: "also a bad setting",
                                  ExitCode.ENVIRONMENT: "cannot listen on --host/--port"}),
    )
    tool.shared(_connection)
    serve = tool.command("serve", help="serve the HTTP front until Ctrl-C or SIGTERM")
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help="address to bind; anything but loopback is reachable by others (default: %(default)s)")
    serve.add_argument("--port", type=int_in(0, 65535), default=DEFAULT_PORT,
                       help="port to bind; 0 picks a free one and prints it (default: %(default)s)")
    serve.add_argument("--token", default=None, metavar="TOKEN",
                       help=f"bearer token every route but /health requires (default: ${TOKEN_ENV}; none: no auth)")
    serve.add_argument("--embed-model", default="embed", metavar="NAME",
                       help="the pipeline TEI's /embed serves (default: %(default)s); /v1/embeddings serves "
                       "any embedding pipeline by its 'model'")
    serve.add_argument("--rerank-model", default=None, metavar="NAME", help="the cross-encoder pipeline behind /rerank")
    serve.add_argument("--classify-model", default=None, metavar="NAME",
                       help="the text-classification pipeline behind /predict")
    add_model_repository(serve, default=None,
                         help="the repository Triton serves, read for the pipelines' tokenizers (usage token "
                         "counts, length checks) and label names; without it usage is null")
    serve.add_argument("--max-inputs", type=int_in(1, 100_000), default=64, metavar="N",
                       help="the most texts one request may hold (default: %(default)s)")
    serve.add_argument("--max-body-bytes", type=int_in(1024, 2**31 - 1), default=4 * 1024 * 1024, metavar="N",
                       help="the largest request body (default: %(default)s)")
    serve.add_argument("--retry-after", type=duration, default=1.0, metavar="DURATION",
                       help="Retry-After sent with 429 and 503 (default: 1s)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    return tool


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    # without it a response's headers and body, written apart, wait out the caller's delayed
    # ACK (40 ms a request on a kept-alive connection; measured, docs/benchmarks.md).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    args = build_tool().parse(argv)
    try:
        client = ClientConfig.from_env(timeout_s=args.timeout, retries=args.retries,
                                       **({"urls": tuple(args.url)} if args.url else {}))
        settings = Settings(client=client, token=args.token or token_from_env(), embed_model=args.embed_model,
                            rerank_model=args.rerank_model, classify_model=args.classify_model,
                            model_repository=args.model_repository, max_inputs=args.max_inputs,
                            max_body_bytes=args.max_body_bytes, retry_after_s=args.retry_after)
    except (ClientError, ValueError) as exc:
        print(f"python -m tritonstack.http: error: {exc} (see --help)", file=sys.stderr)
        return ExitCode.USAGE
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        print(f"python -m tritonstack.http: cannot listen on {args.host}:{args.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return ExitCode.ENVIRONMENT
    try:
        return _serve(settings, sock, args)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback with --verbose
        if args.verbose:
            import traceback
            traceback.print_exception(exc)
        print(f"InternalError: {type(exc).__name__}: {exc} (a bug in the HTTP front; rerun with --verbose "
              "for the traceback and report it)", file=sys.stderr)
        return ExitCode.INTERNAL
    finally:
        sock.close()


def _serve(settings: Settings, sock: socket.socket, args: argparse.Namespace) -> int:
    # uvicorn drains in-flight requests on SIGTERM, then raises the signal again under the handler
    # it found: this one, so that a stop asked for by compose or Kubernetes exits 0 (not 143),
    # as does one that comes before uvicorn has started.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        return _run(settings, sock, args)
    except _Stopped:
        return ExitCode.OK
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Stopped(Exception):
    """SIGTERM arrived (and uvicorn, if it had started, has drained)."""


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped


def _run(settings: Settings, sock: socket.socket, args: argparse.Namespace) -> int:
    import uvicorn

    from tritonstack.http.app import create_app

    host, port = sock.getsockname()[:2]
    if settings.token is None and args.host not in LOOPBACK and not args.quiet:
        print(f"warning: listening on {host} without a bearer token: anyone who reaches it can call the "
              f"models; set {TOKEN_ENV}", file=sys.stderr)
    where = f"[{host}]" if ":" in host else host
    if not args.quiet:
        print(f"tritonstack.http: listening on http://{where}:{port} (Triton at "
              f"{', '.join(settings.client.urls)}{'; bearer token required' if settings.token else ''})",
              flush=True)
    config = uvicorn.Config(create_app(settings), lifespan="on", access_log=args.access_log,
                            log_level="debug" if args.verbose else "warning", server_header=False)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return ExitCode.OK if server.started else ExitCode.ENVIRONMENT
