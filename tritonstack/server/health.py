"""The launcher's own health endpoint and metrics, for orchestrators that must not be lied to.

Triton's ``/v2/health/ready`` stays 200 while a model's backend is dead (see
:mod:`server.stubs`); this endpoint answers from the :class:`~server.supervise.Supervisor`:

* ``GET /v2/health/live``: 200 while the launcher runs (it exits when Triton cannot be kept up);
* ``GET /v2/health/ready``: 200 only while Triton is ready and every model can answer, else 503;
* ``GET /metrics``: Prometheus text: ``triton_stack_ready``, and counters of backend failures,
  recoveries (with the last recovery's seconds) and tritonserver restarts.

Each answer reads state the supervisor already holds: a probe costs no call to Triton.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest


class HealthMetrics:
    """The supervisor's counters, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ready = Gauge("triton_stack_ready", "1 while Triton is ready and every model can answer",
                           registry=self.registry)
        self.backend_failures = Counter("triton_stack_backend_failures", "Backend stubs found dead",
                                        ["model"], registry=self.registry)
        self.recoveries = Counter("triton_stack_model_recoveries", "Models reloaded after their backend died",
                                  ["model"], registry=self.registry)
        self.recovery_seconds = Gauge("triton_stack_last_recovery_seconds",
                                      "Seconds from a backend's death to its model answering again",
                                      ["model"], registry=self.registry)
        self.restarts = Counter("triton_stack_tritonserver_restarts", "tritonserver restarts",
                                registry=self.registry)

    def count(self, what: str, model: str | None, seconds: float | None = None) -> None:
        if what == "restarts":
            self.restarts.inc()
            return
        getattr(self, what).labels(model=model).inc()
        if what == "recoveries" and seconds is not None:
            self.recovery_seconds.labels(model=model).set(round(seconds, 3))

    def set_ready(self, ready: bool) -> None:
        self.ready.set(1 if ready else 0)


class _QuietServer(ThreadingHTTPServer):
    """A probe that gives up before its answer (a HEALTHCHECK's timeout, a kubelet's) is not an
    error of the launcher: no traceback for a client gone; one line for anything else."""

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        print(f"health endpoint: {type(exc).__name__}: {exc} (from {client_address[0]})", file=sys.stderr)


class HealthEndpoint:
    """A small HTTP server on ``host:port`` answering from ``is_ready()`` and ``metrics``."""

    def __init__(self, host: str, port: int, is_ready, metrics: HealthMetrics) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                if self.path == "/v2/health/live":
                    self._send(200, b"live\n")
                elif self.path == "/v2/health/ready":
                    ready = endpoint.is_ready()
                    self._send(200 if ready else 503, b"ready\n" if ready else b"not ready\n")
                elif self.path == "/metrics":
                    self._send(200, generate_latest(endpoint.metrics.registry), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"try /v2/health/live, /v2/health/ready or /metrics\n")

            def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # probes every few seconds: no log line each
                pass

        self.is_ready = is_ready
        self.metrics = metrics
        self._httpd = _QuietServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="health", daemon=True)

    def start(self) -> HealthEndpoint:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
