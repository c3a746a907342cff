"""Start, wait for and stop one tritonserver process.

``TritonServer`` is both the foreground launcher's engine and a context manager for tests
and benchmarks::

    with TritonServer(ServerConfig(model_repository="model_repository", grpc_port=0)) as srv:
        client = grpcclient.InferenceServerClient(srv.grpc_url)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from server.config import ModelControl, ServerConfig
from server.errors import ModelLoadFailed, PortInUse, ReadinessTimeout, ServerExited
from server.locate import TritonInstall, find_tritonserver, prepare_backends, server_environment

_LOAD_FAILED = re.compile(r"failed to load '([^']+)' version \d+: (.*?)(?:\\n|\"\s*$)")
_POLL_FAILED = re.compile(r"Poll failed for model directory '([^']+)': (.*?)(?:\\n|\"\s*$)")
_ERROR_LINE = re.compile(r"^error:|unrecognized option|invalid|Unexpected argument", re.I)
_PORT_TAKEN = re.compile(r"Socket '([^']+)' already in use")
# Repository-wide errors, e.g. an ensemble whose step cannot take its batch size.
_REPOSITORY_ERROR = re.compile(r'^E\d+ [\d:.]+ +\d+ model_repository_manager\.cc:\d+\] "(.*)"\s*$', re.M)
# Always printed on machines without a GPU: never the reason a start failed.
_NOISE = re.compile(r"NVML|DCGM|CudaDriverHelper")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As Triton binds: a port left in TIME_WAIT by a server that just died is free to reuse.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise PortInUse(
                f"{what} port {host}:{port} is already in use; stop the process holding it "
                f"(`ss -ltnp 'sport = :{port}'`) or choose another with --{what.lower()}-port"
            ) from None


def load_failures(log_text: str) -> dict[str, str]:
    """Triton's one-line reason for each model that failed to load, from its log."""
    failures: dict[str, str] = {}
    for pattern in (_POLL_FAILED, _LOAD_FAILED):
        for name, reason in pattern.findall(log_text):
            failures[name] = reason.strip()
    return failures


class TritonServer:
    """One tritonserver process.

    Ports given as 0 are replaced by free ones before start; ``stop()`` sends SIGTERM so
    Triton drains in-flight requests (up to ``exit_timeout_s``) before it exits.
    """

    def __init__(self, config: ServerConfig, install: TritonInstall | None = None) -> None:
        self.install = install or find_tritonserver(config.tritonserver)
        host = config.host
        self.http_port = config.http_port or free_port(host)
        self.grpc_port = config.grpc_port or free_port(host)
        self.metrics_port = config.metrics_port or free_port(host)
        self.config = config
        self._workdir = tempfile.TemporaryDirectory(prefix="triton-")
        self.log_path = Path(config.log_file or Path(self._workdir.name) / "tritonserver.log")
        self._proc: subprocess.Popen[bytes] | None = None

    # -- addresses -------------------------------------------------------------------
    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # -- lifecycle -------------------------------------------------------------------
    def command(self, backends: Path) -> list[str]:
        c = self.config
        cmd = [
            str(self.install.binary),
            f"--model-repository={c.model_repository}",
            f"--backend-directory={backends}",
            f"--http-address={c.host}", f"--http-port={self.http_port}",
            f"--grpc-address={c.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={c.host}", f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={c.model_control.value}",
            f"--log-verbose={c.log_verbose}",
            f"--exit-timeout-secs={c.exit_timeout_s}",
        ]
        if c.model_control is ModelControl.POLL:
            cmd.append(f"--repository-poll-secs={c.poll_interval_s}")
        cmd += [f"--load-model={m}" for m in c.load_models]
        if c.restricted_apis:
            groups = ",".join(c.restricted_apis)
            rule = f"{groups}:{c.restricted_key}={c.restricted_value}"
            cmd += [f"--grpc-restricted-protocol={rule}", f"--http-restricted-api={rule}"]
        if c.grpc_tls:
            cmd += c.grpc_tls.args()
        cmd += list(c.extra_args)
        return cmd

    def start(self, timeout_s: float = 120.0) -> TritonServer:
        """Start Triton and block until it is ready, or raise a StartupError."""
        for what, port in (("HTTP", self.http_port), ("GRPC", self.grpc_port),
                           ("Metrics", self.metrics_port)):
            _check_port_free(self.config.host, port, what)
        backends = prepare_backends(self.install, Path(self._workdir.name))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child, closed on stop
        self._log_handle = log
        self._proc = subprocess.Popen(
            self.command(backends), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=server_environment(self.install),
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops Triton in order
            # In the child before exec, so every Triton thread and backend stub inherits it.
            preexec_fn=(lambda: os.nice(self.config.nice)) if self.config.nice else None,
        )
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                self._raise_exited()
            if self.is_ready():
                return
            time.sleep(0.1)
        failures = load_failures(self.log_text())
        if failures:
            raise ModelLoadFailed(failures, self.log_tail())
        raise ReadinessTimeout(
            f"Triton was not ready after {timeout_s:.0f}s; see {self.log_path}", self.log_tail()
        )

    def _raise_exited(self) -> None:
        text = self.log_text()
        tail = self.log_tail()
        failures = load_failures(text)
        if failures:
            raise ModelLoadFailed(failures, tail)
        port = _PORT_TAKEN.search(text)
        if port:
            raise PortInUse(f"port {port.group(1)} is already in use; choose another port")
        code = self._proc.returncode if self._proc else None
        # Triton follows an option error with its whole usage text: lead with the error line.
        errors = _REPOSITORY_ERROR.findall(text) or [
            line.strip() for line in text.splitlines()
            if _ERROR_LINE.search(line) and not _NOISE.search(line)]
        last = " | ".join(errors[-2:]) or " | ".join(ln for ln in tail.splitlines()[-3:] if ln.strip())
        raise ServerExited(f"tritonserver exited with code {code} before it was ready: {last}", tail)

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, wait for the drain, then SIGKILL if Triton overstays."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s if timeout_s is not None else self.config.exit_timeout_s + 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log_handle.close()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would (for failure tests)."""
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def poll(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def close(self) -> None:
        self.stop()
        self._workdir.cleanup()

    def __enter__(self) -> TritonServer:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def serving(config: ServerConfig, timeout_s: float = 120.0) -> Iterator[TritonServer]:
    """Start Triton for the duration of a ``with`` block."""
    server = TritonServer(config)
    try:
        server.start(timeout_s)
        yield server
    finally:
        server.close()
