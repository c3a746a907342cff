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
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tritonstack.server.config import ModelControl, ServerConfig
from tritonstack.server.errors import ModelLoadFailed, PortInUse, ReadinessTimeout, ServerExited
from tritonstack.server.leftovers import remove_dead_staging, remove_orphaned_stubs, remove_unmapped_shm_regions
from tritonstack.server.locate import TritonInstall, find_tritonserver, prepare_backends, server_environment

_LOAD_FAILED = re.compile(r"failed to load '([^']+)' version \d+: (.*?)(?:\\n|\"\s*$)")
_POLL_FAILED = re.compile(r"Poll failed for model directory '([^']+)': (.*?)(?:\\n|\"\s*$)")
_ERROR_LINE = re.compile(r"^error:|unrecognized option|invalid|Unexpected argument", re.I)
_PORT_TAKEN = re.compile(r"Socket '([^']+)' already in use")
# Repository-wide errors, e.g. an ensemble whose step cannot take its batch size.
_REPOSITORY_ERROR = re.compile(r'^E\d+ [\d:.]+ +\d+ model_repository_manager\.cc:\d+\] "(.*)"\s*$', re.M)
# Printed once a second while Triton drains at shutdown.
_DRAINING = re.compile(r"Timeout \d+: Found (\d+) live models and (\d+) in-flight")
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


#: Config parameter the launcher changes to make Triton rebuild a model's instances (models ignore it).
RELOAD_PARAMETER = "triton_stack_reloaded_at"


def _die_with_parent(nice: int, with_parent: bool) -> None:
    """In the child before exec: SIGKILL when the launcher dies, even by SIGKILL, and nice.

    SIGKILL, not SIGTERM: a Triton told to drain unloads every model at once, then holds its
    ports for up to --exit-timeout answering NOT_FOUND (which no client retries), and the
    launcher an orchestrator starts in its place cannot bind them (measured in the fault matrix,
    docs/benchmarks.md). With no launcher left to supervise it, a quick death frees the ports;
    idle backend stubs exit on their own, and the next start kills busy ones (server/leftovers.py).
    PR_SET_PDEATHSIG fires when the *thread* that started the child ends, so it is only asked for
    from the main thread (the launcher's); Linux only, elsewhere stop() is the only cleanup.
    """
    if with_parent:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if nice:
        os.nice(nice)


def kill_process_group(pgid: int) -> None:
    """SIGKILL whatever is left of a process group (backend stubs outlive a SIGKILLed Triton)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


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
            # Readiness is the launcher's (its --health-port): Triton's strict readiness also
            # counts a model being unloaded on purpose (a rollout's promotion) as not ready, and
            # does not see a dead stub. Triton still loads the startup models before it listens.
            "--strict-readiness=false",
        ]
        if c.latency_summaries:
            cmd.append("--metrics-config=summary_latencies=true")
        if c.response_cache_bytes:
            cmd += [f"--cache-config=local,size={c.response_cache_bytes}"]
            if self.install.caches.is_dir():
                cmd.append(f"--cache-directory={self.install.caches}")
        if c.model_control is ModelControl.POLL:
            cmd.append(f"--repository-poll-secs={c.poll_interval_s}")
        cmd += [f"--load-model={m}" for m in _expand_load_models(c.model_repository, c.load_models)]
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
        note = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731  (stdout may be --json)
        remove_dead_staging(self.config.model_repository, log=note)
        remove_orphaned_stubs(log=note)
        remove_unmapped_shm_regions(log=note)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # appended to: a restarted Triton keeps the log of the one that died
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed on stop
        self._log_handle = log
        main_thread = threading.current_thread() is threading.main_thread()
        self._proc = subprocess.Popen(
            self.command(backends), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=server_environment(self.install),
            # Its own process group: Ctrl-C reaches the launcher, which stops Triton in order,
            # and the backend stubs (which inherit the group) can be killed with it.
            start_new_session=True,
            # In the child before exec, so every Triton thread and backend stub inherits the nice.
            preexec_fn=lambda: _die_with_parent(self.config.nice, main_thread),
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

    def _http(self, method: str, path: str, body: bytes | None = None, timeout_s: float = 10.0) -> bytes:
        """One call to Triton's HTTP API (the access token is sent when the API is restricted)."""
        headers = {"Content-Type": "application/json"}
        if self.config.restricted_apis and self.config.restricted_value:
            headers[self.config.restricted_key] = self.config.restricted_value
        request = urllib.request.Request(f"{self.http_url}{path}", data=body, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            return resp.read()

    def reload_model(self, name: str, timeout_s: float = 300.0) -> None:
        """Load ``name`` again with its current configuration, as new instances.

        A load of an unchanged model is a no-op in Triton, even with its configuration attached;
        a configuration that differs in one parameter (``RELOAD_PARAMETER``, a new value each
        time) makes it build new instances (new backend stubs), switch traffic to them once
        ready and unload the old ones, while the model and the ensembles over it stay ready.
        Needs ``--model-control explicit``. Raises ``urllib.error.URLError`` / ``OSError`` with
        Triton's reason when the load fails.
        """
        import json

        config = self._model_config(name)
        config.setdefault("parameters", {})[RELOAD_PARAMETER] = {"string_value": f"{time.time():.6f}"}
        body = json.dumps({"parameters": {"config": json.dumps(config)}}).encode()
        self._http("POST", f"/v2/repository/models/{name}/load", body, timeout_s)

    def _repository_index(self) -> list[dict]:
        import json

        return json.loads(self._http("POST", "/v2/repository/index", b"{}"))

    def _model_config(self, name: str) -> dict:
        import json

        return json.loads(self._http("GET", f"/v2/models/{name}/config"))

    def python_instances(self) -> dict[str, int]:
        """``{model: backend stubs it should have}`` for every loaded Python-backend model: its
        instance count (per GPU for ``KIND_GPU``) times its ready versions."""
        versions: dict[str, int] = {}
        for entry in self._repository_index():
            if entry.get("state") == "READY":
                versions[entry["name"]] = versions.get(entry["name"], 0) + 1
        expected: dict[str, int] = {}
        for name, ready in versions.items():
            config = self._model_config(name)
            if config.get("backend") != "python":
                continue
            per_version = sum(int(group.get("count", 1)) * (max(1, len(group.get("gpus") or []))
                                                              if group.get("kind") == "KIND_GPU" else 1)
                              for group in config.get("instance_group") or [{"count": 1}])
            expected[name] = per_version * ready
        return expected

    def model_states(self) -> dict[str, str]:
        """``{model: state}`` from Triton's repository index (READY, UNAVAILABLE, ...)."""
        states: dict[str, str] = {}
        for entry in self._repository_index():
            if states.get(entry["name"]) != "READY":  # one ready version makes the model ready
                states[entry["name"]] = entry.get("state", "")
        return states

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

    def stop(self, timeout_s: float | None = None, abandoned: int = 0) -> int | None:
        """SIGTERM, wait for the drain, then SIGKILL if Triton overstays; no stub is left behind.

        ``abandoned``: model instances whose backend died and that Triton 2.51 never finishes
        unloading once a request reached them (the supervisor's heals). Shutdown would wait
        the whole exit timeout for them and exit 1; once Triton has been down to at most that
        many live models, with nothing in flight, for 3 s, it is stopped and counted as clean.
        """
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + (timeout_s if timeout_s is not None
                                           else self.config.exit_timeout_s + 15)
            only_abandoned_since: float | None = None
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.25)
                if not abandoned:
                    continue
                draining = _DRAINING.findall(self.log_text()[-400:])
                if draining and int(draining[-1][0]) <= abandoned and draining[-1][1] == "0":
                    only_abandoned_since = only_abandoned_since or time.monotonic()
                    if time.monotonic() - only_abandoned_since >= 3.0:
                        proc.kill()
                        proc.wait()
                        kill_process_group(proc.pid)
                        if not self._log_handle.closed:
                            self._log_handle.close()
                        return 0
                else:
                    only_abandoned_since = None
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        kill_process_group(proc.pid)  # a Triton that died by SIGKILL leaves its stubs running
        if not self._log_handle.closed:
            self._log_handle.close()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL Triton alone, as a crash or the OOM killer would (for failure tests).

        Its backend stubs are left as such a crash leaves them; ``stop()`` (or the launcher's
        supervisor) removes them.
        """
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


def _expand_load_models(repository: Path, names: tuple[str, ...]) -> list[str]:
    """``*`` as every model folder of the repository but hidden ones: what a killed export or
    folder writer left (``.staging-NAME-*``, ``.NAME.*``) would otherwise be loaded as a model,
    fail, and stop Triton from starting."""
    if "*" not in names:
        return list(names)
    folders = sorted(p.name for p in Path(repository).iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted({*folders, *(n for n in names if n != "*")})
