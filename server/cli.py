"""``python -m server``: run Triton on a model repository in the foreground.

Exit codes: 0 stopped cleanly, 1 Triton failed (start-up or exit), 2 bad command line or
configuration, 3 tritonserver not installed, 130 interrupted before ready.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from server.config import GrpcTls, ModelControl, ServerConfig
from server.errors import BinaryNotFound, ConfigError, ServerError
from server.locate import find_tritonserver
from server.process import TritonServer

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_BINARY, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="Start NVIDIA Triton Inference Server on a model repository "
        "(the tritonserver binary from the nvidia-pytriton wheel, or one on PATH).",
    )
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve", help="run Triton in the foreground until Ctrl-C or SIGTERM",
        description="Run Triton in the foreground. Ctrl-C (or SIGTERM) stops it gracefully: "
        "in-flight requests drain, then it exits.",
    )
    serve.add_argument("--model-repository", type=Path, default=Path("model_repository"),
                       metavar="DIR", help="model repository to serve (default: %(default)s)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind all endpoints; 0.0.0.0 exposes them (default: %(default)s)")
    serve.add_argument("--http-port", type=int, default=8000, metavar="N", help="default: %(default)s")
    serve.add_argument("--grpc-port", type=int, default=8001, metavar="N", help="default: %(default)s")
    serve.add_argument("--metrics-port", type=int, default=8002, metavar="N", help="default: %(default)s")
    serve.add_argument("--model-control", choices=[m.value for m in ModelControl], default="none",
                       help="none: load all at start; poll: follow repository changes; "
                       "explicit: load/unload through the API (default: %(default)s)")
    serve.add_argument("--load-model", action="append", default=[], metavar="NAME",
                       help="with --model-control explicit: load NAME at start (repeatable; '*' for all)")
    serve.add_argument("--poll-interval", type=int, default=5, metavar="S",
                       help="with --model-control poll: seconds between scans (default: %(default)s)")
    serve.add_argument("--log-file", type=Path, metavar="FILE",
                       help="write Triton's log here (default: a temporary file, printed at start)")
    serve.add_argument("--log-verbose", type=int, default=0, metavar="N",
                       help="Triton log verbosity, 0 = info only (default: %(default)s)")
    serve.add_argument("--nice", type=int, default=0, metavar="N",
                       help="run Triton at a lower CPU priority (Unix nice 0-19), for example beside a "
                            "load generator on the same machine (default: %(default)s)")
    serve.add_argument("--tritonserver", type=Path, metavar="PATH",
                       help="tritonserver binary to use (default: the pytriton wheel's, else PATH)")
    serve.add_argument("--ready-timeout", type=float, default=180.0, metavar="S",
                       help="seconds to wait for readiness (default: %(default)s)")
    serve.add_argument("--exit-timeout", type=int, default=30, metavar="S",
                       help="seconds in-flight requests may drain on shutdown (default: %(default)s)")
    serve.add_argument("--restrict", action="append", default=[], metavar="GROUP",
                       help="protect a protocol group (model-repository, model-config, shared-memory, "
                       "statistics, trace, logging) with the TRITON_ACCESS_TOKEN header")

    serve.add_argument("--grpc-tls-cert", type=Path, metavar="PEM",
                       help="serve gRPC over TLS with this certificate (needs --grpc-tls-key)")
    serve.add_argument("--grpc-tls-key", type=Path, metavar="PEM", help="the certificate's private key")
    serve.add_argument("--grpc-tls-client-ca", type=Path, metavar="PEM",
                       help="require client certificates signed by this CA (mutual TLS)")

    sub.add_parser("locate", help="print which tritonserver would run, and exit")
    return parser


def _tls(args: argparse.Namespace) -> GrpcTls | None:
    if not (args.grpc_tls_cert or args.grpc_tls_key or args.grpc_tls_client_ca):
        return None
    if not (args.grpc_tls_cert and args.grpc_tls_key):
        raise ConfigError("gRPC TLS needs both --grpc-tls-cert and --grpc-tls-key")
    return GrpcTls(args.grpc_tls_cert, args.grpc_tls_key, args.grpc_tls_client_ca)


def _serve(args: argparse.Namespace) -> int:
    config = ServerConfig(
        model_repository=args.model_repository, host=args.host, http_port=args.http_port,
        grpc_port=args.grpc_port, metrics_port=args.metrics_port,
        model_control=ModelControl(args.model_control), load_models=tuple(args.load_model),
        poll_interval_s=args.poll_interval, log_file=args.log_file, log_verbose=args.log_verbose,
        nice=args.nice,
        tritonserver=args.tritonserver, exit_timeout_s=args.exit_timeout,
        restricted_apis=tuple(args.restrict),
        restricted_value=os.environ.get("TRITON_ACCESS_TOKEN") if args.restrict else None,
        grpc_tls=_tls(args),
    )
    server = TritonServer(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"starting {server.install.binary} (log: {server.log_path})", flush=True)
    try:
        server.start(args.ready_timeout)
    except KeyboardInterrupt:
        server.close()
        return EXIT_INTERRUPTED
    print(f"Triton ready: gRPC {server.grpc_url}  HTTP {server.http_url}  metrics {server.metrics_url}",
          flush=True)
    print("Ctrl-C stops it (in-flight requests drain first).", flush=True)
    while not stop.wait(0.5):
        if server.poll() is not None:
            print(f"Error: tritonserver exited with code {server.poll()}; last log lines:\n"
                  f"{server.log_tail()}", file=sys.stderr)
            server.close()
            return EXIT_FAILED
    print("stopping Triton (draining in-flight requests)...", flush=True)
    code = server.stop()
    server.close()
    print(f"Triton stopped (exit code {code})", flush=True)
    return EXIT_OK if code == 0 else EXIT_FAILED


def _locate(_: argparse.Namespace) -> int:
    install = find_tritonserver()
    print(f"tritonserver: {install.binary}")
    print(f"backends:     {install.backends}")
    if install.lib_dirs:
        print(f"libraries:    {', '.join(map(str, install.lib_dirs))}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _serve(args) if args.command == "serve" else _locate(args)
    except BinaryNotFound as exc:
        return _fail(args, exc, EXIT_NO_BINARY)
    except ConfigError as exc:
        return _fail(args, exc, EXIT_USAGE)
    except ServerError as exc:  # start-up failures (model load, early exit, timeout) included
        return _fail(args, exc, EXIT_FAILED)


def _fail(args: argparse.Namespace, exc: Exception, code: int) -> int:
    if args.verbose:
        import traceback
        traceback.print_exception(exc)
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return code
