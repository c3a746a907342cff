"""``python -m tritonstack.server``: run Triton on a model repository in the foreground, and keep it healthy.

Exit codes: 0 stopped cleanly, 1 Triton failed (start-up, exit, or a model it could not recover),
2 bad command line or configuration, 3 tritonserver not installed, 4 internal error (a bug),
130 interrupted before ready.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from tritonstack.cli import (
    ExitCode,
    Tool,
    add_model_repository,
    add_out,
    exit_codes_epilog,
    positive_duration,
    whole_seconds,
)
from tritonstack.server.config import GrpcTls, ModelControl, ServerConfig, control_plane_groups
from tritonstack.server.errors import BinaryNotFound, ConfigError, ServerError
from tritonstack.server.locate import find_tritonserver
from tritonstack.server.process import TritonServer
from tritonstack.server.supervise import Supervisor, SupervisorConfig

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_BINARY, EXIT_INTERNAL, EXIT_INTERRUPTED = (
    ExitCode.OK, ExitCode.CHECK_FAILED, ExitCode.USAGE, ExitCode.ENVIRONMENT, ExitCode.INTERNAL, ExitCode.INTERRUPTED)


PASS_THROUGH_HINT = ("tritonserver's own flags go after --, e.g. python -m tritonstack.server serve "
                     "--model-repository DIR -- --backend-config=python,shm-default-byte-size=1048576")


def build_tool() -> Tool:
    tool = Tool(
        "python -m tritonstack.server",
        "Start NVIDIA Triton Inference Server on a model repository "
        "(the tritonserver binary from the nvidia-pytriton wheel, or one on PATH).",
        epilog=exit_codes_epilog({ExitCode.CHECK_FAILED: "Triton failed: start-up, exit, or a model it could "
                                  "not recover", ExitCode.ENVIRONMENT: "tritonserver or a library it needs is "
                                  "missing", ExitCode.INTERRUPTED: "before ready"}),
        hint=PASS_THROUGH_HINT,
    )
    serve = tool.command(
        "serve", help="run Triton in the foreground until Ctrl-C or SIGTERM",
        description="Run Triton in the foreground. Ctrl-C (or SIGTERM) stops it gracefully: "
        "in-flight requests drain, then it exits. Flags after -- go to tritonserver as they are; "
        "Triton's names for the launcher's own flags (--model-store, --model-control-mode, "
        "--repository-poll-secs, --exit-timeout-secs) are accepted.",
        epilog="example: python -m tritonstack.server serve --model-repository model_repository -- "
        "--backend-config=python,shm-default-byte-size=1048576",
    )
    serve.add_argument("--model-repository", "--repository", "--model-store", dest="model_repository",
                       default="model_repository", metavar="DIR", help="model repository to serve (default: "
                       "%(default)s)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind all endpoints; 0.0.0.0 exposes them (default: %(default)s)")
    serve.add_argument("--http-port", type=int, default=8000, metavar="N", help="default: %(default)s")
    serve.add_argument("--grpc-port", type=int, default=8001, metavar="N", help="default: %(default)s")
    serve.add_argument("--metrics-port", type=int, default=8002, metavar="N", help="default: %(default)s")
    serve.add_argument("--model-control", "--model-control-mode", dest="model_control",
                       choices=[m.value for m in ModelControl], default="explicit",
                       help="explicit: load/unload through the API, which is also how a model whose "
                       "backend died is healed; none: load all at start; poll: follow repository "
                       "changes (default: %(default)s)")
    serve.add_argument("--load-model", action="append", default=[], metavar="NAME",
                       help="with --model-control explicit: load NAME at start (repeatable; "
                       "default '*', every model)")
    serve.add_argument("--poll-interval", "--repository-poll-secs", dest="poll_interval", type=whole_seconds,
                       default=5, metavar="DURATION",
                       help="with --model-control poll: time between scans, whole seconds (default: 5s)")
    serve.add_argument("--log-file", type=Path, metavar="FILE",
                       help="write Triton's log here (default: a temporary file, printed at start)")
    serve.add_argument("--log-verbose", type=int, default=0, metavar="N",
                       help="Triton log verbosity, 0 = info only (default: %(default)s)")
    serve.add_argument("--no-latency-summaries", action="store_true",
                       help="turn off Triton's per-model latency quantiles "
                       "(nv_inference_request_summary_us), which the p99 alert and dashboard in "
                       "docker/monitoring read")
    serve.add_argument("--response-cache-mb", type=int, default=0, metavar="MB",
                       help="Triton's local response cache of MB megabytes for the models that enable it "
                       "(the demo's embed and classify_digit): a repeated request is answered without "
                       "running the model (default: 0, off). Triton 2.51 has crashed with it under "
                       "load (docs/server.md, 'Response cache'): add --restart-on-failure")
    serve.add_argument("--nice", type=int, default=0, metavar="N",
                       help="run Triton at a lower CPU priority (Unix nice 0-19), for example beside a "
                            "load generator on the same machine (default: %(default)s)")
    serve.add_argument("--tritonserver", type=Path, metavar="PATH",
                       help="tritonserver binary to use (default: the pytriton wheel's, else PATH)")
    serve.add_argument("--ready-timeout", type=positive_duration, default=180.0, metavar="DURATION",
                       help="how long to wait for readiness (default: 180s)")
    serve.add_argument("--exit-timeout", "--exit-timeout-secs", dest="exit_timeout", type=whole_seconds,
                       default=30, metavar="DURATION",
                       help="how long in-flight requests may drain on shutdown, whole seconds (default: 30s)")
    serve.add_argument("--restrict", action="append", default=[], metavar="GROUP",
                       help="protect a protocol group (model-repository, model-config, shared-memory, "
                       "statistics, trace, logging) with the TRITON_ACCESS_TOKEN header; beyond "
                       "loopback, model-repository is restricted whenever the token is set")
    serve.add_argument("--open-control-plane", action="store_true",
                       help="with a non-loopback --host and no TRITON_ACCESS_TOKEN, serve model load and "
                       "unload to anyone who reaches the ports (refused otherwise)")

    health = serve.add_argument_group(
        "health and healing",
        "The launcher checks Triton every --health-interval seconds: a model whose backend stub "
        "died is reloaded (explicit model control), and GET /v2/health/ready on --health-port is "
        "200 only while every model can answer (Triton's own stays 200). Where recovery is "
        "impossible the launcher exits 1, so that a supervisor restarts it.")
    health.add_argument("--health-port", type=int, default=8003, metavar="N",
                        help="launcher health endpoint and metrics: /v2/health/live, /v2/health/ready, "
                        "/metrics (default: %(default)s; 0 = off)")
    health.add_argument("--health-interval", type=positive_duration, default=1.0, metavar="DURATION",
                        help="time between checks (default: 1s)")
    health.add_argument("--heal-timeout", type=positive_duration, default=120.0, metavar="DURATION",
                        help="how long one reload of a model may take before it counts as failed "
                        "(default: 120s)")
    health.add_argument("--no-heal", action="store_true",
                        help="do not reload a model whose backend died (report not ready, then exit 1)")
    health.add_argument("--restart-on-failure", type=int, default=0, metavar="N",
                        help="restart a tritonserver that exited, or that cannot recover a model, up to "
                        "N times with backoff (default: %(default)s)")

    serve.add_argument("--grpc-tls-cert", type=Path, metavar="PEM",
                       help="serve gRPC over TLS with this certificate (needs --grpc-tls-key)")
    serve.add_argument("--grpc-tls-key", type=Path, metavar="PEM", help="the certificate's private key")
    serve.add_argument("--grpc-tls-client-ca", type=Path, metavar="PEM",
                       help="require client certificates signed by this CA (mutual TLS)")

    tool.command("locate", help="print which tritonserver would run, and exit")
    prof = tool.command(
        "profile", help="cold start of a repository: time to ready, load per model, first request "
        "against steady state, memory per process",
        description="Start the repository twice on free ports: once loading everything (time to "
        "ready), once loading each model alone (load time, warmup included), then compare each entry "
        "point's first request with the median of the next N, and sample memory per process at idle "
        "and during a short burst. Exit 1 if a first request takes more than 2x its steady median.")
    add_model_repository(prof, help="model repository to profile")
    prof.add_argument("--requests", type=int, default=50, metavar="N",
                      help="sequential requests for the steady median (default: %(default)s)")
    add_out(prof, default=Path("reports"), help="write profile.json and profile.md under DIR/cold-start-*")
    return tool


def _tls(args: argparse.Namespace) -> GrpcTls | None:
    if not (args.grpc_tls_cert or args.grpc_tls_key or args.grpc_tls_client_ca):
        return None
    if not (args.grpc_tls_cert and args.grpc_tls_key):
        raise ConfigError("gRPC TLS needs both --grpc-tls-cert and --grpc-tls-key")
    return GrpcTls(args.grpc_tls_cert, args.grpc_tls_key, args.grpc_tls_client_ca)


def _serve(args: argparse.Namespace) -> int:
    from tritonstack.server.health import HealthEndpoint, HealthMetrics

    control = ModelControl(args.model_control)
    load = tuple(args.load_model) or (("*",) if control is ModelControl.EXPLICIT else ())
    supervision = SupervisorConfig(interval_s=args.health_interval, heal=not args.no_heal,
                                   restart_on_failure=args.restart_on_failure,
                                   heal_timeout_s=args.heal_timeout)
    ports = {"HTTP": args.http_port, "gRPC": args.grpc_port, "metrics": args.metrics_port}
    if args.health_port and args.health_port in ports.values():
        taken = next(k for k, v in ports.items() if v == args.health_port)
        raise ConfigError(f"--health-port {args.health_port} is already Triton's {taken} port; "
                          "choose another")
    if not 0 <= args.health_port <= 65535:
        raise ConfigError(f"--health-port must be 0-65535, got {args.health_port}")
    if not str(args.model_repository).strip():  # Path("") would serve the current folder
        raise ConfigError("--model-repository is empty; pass the folder that holds the model folders")
    if args.ready_timeout > 86400:
        raise ConfigError(f"--ready-timeout must be at most a day (86400s), got {args.ready_timeout:g}s")
    restricted = control_plane_groups(args.host, control, tuple(args.restrict),
                                      os.environ.get("TRITON_ACCESS_TOKEN"), args.open_control_plane)
    config = ServerConfig(
        model_repository=Path(args.model_repository), host=args.host, http_port=args.http_port,
        grpc_port=args.grpc_port, metrics_port=args.metrics_port,
        model_control=control, load_models=load,
        poll_interval_s=args.poll_interval, log_file=args.log_file, log_verbose=args.log_verbose,
        nice=args.nice,
        latency_summaries=not args.no_latency_summaries,
        response_cache_bytes=args.response_cache_mb * 2**20,
        tritonserver=args.tritonserver, exit_timeout_s=args.exit_timeout,
        restricted_apis=restricted,
        restricted_value=os.environ.get("TRITON_ACCESS_TOKEN") if restricted else None,
        grpc_tls=_tls(args),
        extra_args=args.tritonserver_args,
    )
    server = TritonServer(config)
    metrics = HealthMetrics()
    stop = threading.Event()
    supervisor = Supervisor(server, supervision, metrics, log=_log, stopping=stop)
    endpoint = None
    if args.health_port:
        try:
            endpoint = HealthEndpoint(config.host, args.health_port, lambda: supervisor.ready, metrics)
        except OSError as exc:
            raise ConfigError(f"health port {config.host}:{args.health_port} cannot be bound "
                              f"({exc.strerror}); choose another with --health-port, or 0 for none") from None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if args.response_cache_mb and not args.restart_on_failure:
        print("note: Triton 2.51 has crashed with the response cache under load (docs/server.md, 'Response "
              "cache'); --restart-on-failure N restarts it", flush=True)
    print(f"starting {server.install.binary} (log: {server.log_path})", flush=True)
    try:
        server.start(args.ready_timeout)
    except KeyboardInterrupt:
        server.close()
        return EXIT_INTERRUPTED
    except BaseException:
        if endpoint:
            endpoint._httpd.server_close()
        raise
    if endpoint:
        endpoint.start()
    health = f"  health http://{config.host}:{args.health_port}/v2/health/ready" if endpoint else ""
    print(f"Triton ready: gRPC {server.grpc_url}  HTTP {server.http_url}  metrics {server.metrics_url}"
          f"{health}", flush=True)
    print("Ctrl-C stops it (in-flight requests drain first).", flush=True)
    try:
        while not stop.wait(supervision.interval_s):
            reason = supervisor.check()
            if reason:
                print(f"Error: {reason}; last log lines:\n{server.log_tail()}", file=sys.stderr)
                supervisor.stop()  # not waiting for instances a heal left behind
                server.close()
                return EXIT_FAILED
        print("stopping Triton (draining in-flight requests)...", flush=True)
        code = supervisor.stop()
        server.close()
    finally:
        if endpoint:
            endpoint.close()
    print(f"Triton stopped (exit code {code})", flush=True)
    return EXIT_OK if code == 0 else EXIT_FAILED


def _log(line: str) -> None:
    import time as _time

    print(f"{_time.strftime('%H:%M:%S')} {line}", flush=True)


def _locate(_: argparse.Namespace) -> int:
    install = find_tritonserver()
    print(f"tritonserver: {install.binary}")
    print(f"backends:     {install.backends}")
    if install.lib_dirs:
        print(f"libraries:    {', '.join(map(str, install.lib_dirs))}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passed = argv[argv.index("--") + 1:] if "--" in argv else []
    args = build_tool().parse(argv[:argv.index("--")] if "--" in argv else argv)
    if passed and args.command != "serve":
        build_tool().parser.error(f"only serve passes flags to tritonserver; drop what follows -- ({passed[0]})")
    args.tritonserver_args = tuple(passed)
    try:
        if args.command == "profile":
            return _profile(args)
        return _serve(args) if args.command == "serve" else _locate(args)
    except BinaryNotFound as exc:
        return _fail(args, exc, EXIT_NO_BINARY)
    except ConfigError as exc:
        return _fail(args, exc, EXIT_USAGE)
    except ServerError as exc:  # start-up failures (model load, early exit, timeout) included
        return _fail(args, exc, EXIT_FAILED)
    except KeyboardInterrupt:
        print("Interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback with --verbose
        print(f"InternalError: {type(exc).__name__}: {exc} (a bug in the launcher; rerun with --verbose "
              "for the traceback and report it)", file=sys.stderr)
        if args.verbose:
            import traceback
            traceback.print_exception(exc)
        return EXIT_INTERNAL


def _profile(args: argparse.Namespace) -> int:
    from tritonstack.server.profile import FIRST_REQUEST_BOUND, profile_repository, write_report

    if not 1 <= args.requests <= 10_000:
        raise ConfigError(f"--requests must be 1..10000, got {args.requests}")
    ServerConfig(model_repository=args.model_repository)  # the repository's checks, one-line errors
    result = profile_repository(args.model_repository, requests=args.requests, progress=_log)
    folder = write_report(result, args.out)
    print(result.markdown())
    print(f"report: {folder}")
    for model in result.slow_first:
        print(f"SLOW FIRST REQUEST {model.name}: {model.first_ms:.1f} ms, {model.first_over_p50:.1f}x its "
              f"steady p50 (bound {FIRST_REQUEST_BOUND:g}x); give it a warmup that covers that path",
              file=sys.stderr)
    return EXIT_FAILED if result.slow_first else EXIT_OK


def _fail(args: argparse.Namespace, exc: Exception, code: int) -> int:
    if args.verbose:
        import traceback
        traceback.print_exception(exc)
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return code
