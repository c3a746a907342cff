"""Typed launcher configuration, validated before any process starts."""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from pathlib import Path

from tritonstack.server.errors import ConfigError, RepositoryNotFound


class ModelControl(str, enum.Enum):  # StrEnum is 3.11+
    """Triton's --model-control-mode."""

    __str__ = str.__str__  # the value, as StrEnum prints

    NONE = "none"
    POLL = "poll"
    EXPLICIT = "explicit"


#: Triton's protocol groups for --grpc-restricted-protocol / --http-restricted-api.
RESTRICTABLE_APIS = ("health", "metadata", "inference", "shared-memory", "model-config",
                     "model-repository", "statistics", "trace", "logging")


@dataclasses.dataclass(frozen=True)
class GrpcTls:
    """PEM files for Triton's gRPC endpoint; ``root_cert`` set means clients must present one."""

    cert: Path
    key: Path
    root_cert: Path | None = None

    def __post_init__(self) -> None:
        for field in ("cert", "key", "root_cert"):
            path = getattr(self, field)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"TLS {field.replace('_', ' ')} file {path} does not exist")

    def args(self) -> list[str]:
        args = ["--grpc-use-ssl=true", f"--grpc-server-cert={self.cert}", f"--grpc-server-key={self.key}"]
        if self.root_cert:
            args += [f"--grpc-root-cert={self.root_cert}", "--grpc-use-ssl-mutual=true"]
        return args


MAX_CACHE_BYTES = 64 * 2**30  # beyond any machine this runs on: a typo, not a size


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Everything needed to start one tritonserver.

    Ports default to Triton's own (8000 HTTP, 8001 gRPC, 8002 metrics); a port of 0 asks the
    launcher to pick a free one, which tests use to run several servers side by side.
    """

    model_repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    model_control: ModelControl = ModelControl.NONE
    load_models: tuple[str, ...] = ()
    poll_interval_s: int = 5
    log_file: Path | None = None
    log_verbose: int = 0
    tritonserver: Path | None = None
    exit_timeout_s: int = 30
    # Protocol groups (for example "model-repository") that need the header below.
    restricted_apis: tuple[str, ...] = ()
    restricted_key: str = "triton-access-token"
    restricted_value: str | None = None
    grpc_tls: GrpcTls | None = None
    extra_args: tuple[str, ...] = ()
    # CPU priority (Unix nice, 0-19) of tritonserver and its backend stubs, for a server that
    # shares its machine with work that must go first (a load generator, for example).
    nice: int = 0
    # Triton's per-model latency summaries (nv_inference_request_summary_us{quantile=...}): what
    # the p99 alert and dashboard read (docker/monitoring).
    latency_summaries: bool = True
    # Triton's local response cache, in bytes (0: none). Models opt in with `response_cache
    # { enable: true }` in their config (the demo's ensembles do); a hit is answered without
    # running the model.
    response_cache_bytes: int = 0

    @property
    def grpc_restricted_header(self) -> str:
        """The metadata key gRPC clients send the token in (Triton prefixes the HTTP one)."""
        return f"triton-grpc-protocol-{self.restricted_key}"

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_repository", Path(self.model_repository).resolve())
        object.__setattr__(self, "model_control", ModelControl(self.model_control))
        repo = self.model_repository
        if not repo.is_dir():
            raise RepositoryNotFound(
                f"model repository {repo} does not exist; build it first (make repository) "
                "or pass --model-repository DIR"
            )
        loads_all = self.model_control is not ModelControl.EXPLICIT or "*" in self.load_models
        if loads_all and not any(
            p.is_dir() and not p.name.startswith(".") and (p / "config.pbtxt").exists() for p in repo.iterdir()
        ):
            raise RepositoryNotFound(
                f"model repository {repo} holds no model folder with a config.pbtxt; "
                "build it first (make repository) or point --model-repository at one"
            )
        _check_passed_through(self.extra_args)
        if not 0 <= self.exit_timeout_s <= 3600:
            raise ConfigError(f"--exit-timeout must be 0..3600 seconds, got {self.exit_timeout_s}")
        if not 1 <= self.poll_interval_s <= 3600:
            raise ConfigError(f"--poll-interval must be 1..3600 seconds, got {self.poll_interval_s}")
        ports = [self.http_port, self.grpc_port, self.metrics_port]
        for port in ports:
            if not 0 <= port <= 65535:
                raise ConfigError(f"port {port} is out of range 0-65535")
        fixed = [p for p in ports if p]
        if len(set(fixed)) != len(fixed):
            raise ConfigError(f"HTTP, gRPC and metrics ports must differ, got {ports}")
        if self.load_models and self.model_control is not ModelControl.EXPLICIT:
            raise ConfigError("--load-model only applies with --model-control explicit")
        unknown = [g for g in self.restricted_apis if g not in RESTRICTABLE_APIS]
        if unknown:
            raise ConfigError(f"--restrict {', '.join(unknown)}: not a Triton protocol group; choose from "
                              f"{', '.join(RESTRICTABLE_APIS)}")
        if self.restricted_apis and not self.restricted_value:
            raise ConfigError(
                "restricted APIs need a token: set TRITON_ACCESS_TOKEN (see .env.example)"
            )
        if self.restricted_value and not self.restricted_apis:
            raise ConfigError("an access token was given but no API group to restrict (--restrict GROUP)")
        if not 0 <= self.nice <= 19:
            raise ConfigError(f"--nice must be 0-19 (a lower CPU priority), got {self.nice}")
        cache = self.response_cache_bytes
        if not isinstance(cache, int) or not 0 <= cache <= MAX_CACHE_BYTES:
            raise ConfigError(f"the response cache must be 0 (off) to {MAX_CACHE_BYTES // 2**20:,} MB, got "
                              f"{self.response_cache_bytes!r} bytes; pass --response-cache-mb N")
        if self.log_verbose < 0:
            raise ConfigError("--log-verbose must be 0 or more")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def control_plane_groups(host: str, model_control: ModelControl, restrict: tuple[str, ...],
                         token: str | None, open_control_plane: bool = False) -> tuple[str, ...]:
    """The protocol groups to restrict. Beyond loopback, with explicit model control, model load
    and unload answer anyone who reaches the port: the ``model-repository`` group is restricted
    whenever ``TRITON_ACCESS_TOKEN`` is set, and without a token the launcher refuses to start
    unless the user accepts an open control plane by name.

    Raises:
        ConfigError: a non-loopback host, explicit model control, no token, no opt-out.
    """
    if (is_loopback(host) or model_control is not ModelControl.EXPLICIT
            or "model-repository" in restrict):
        return restrict
    if token:
        return (*restrict, "model-repository")
    if open_control_plane:
        return restrict
    raise ConfigError(f"--host {host} lets anyone who reaches Triton's ports load and unload models; set "
                      "TRITON_ACCESS_TOKEN (model-repository is then restricted) or pass "
                      "--open-control-plane to accept that")


# tritonserver flags the launcher sets itself (TritonServer.command): passing one through would
# contradict what the launcher heals, probes and reports. Each maps to the launcher's own flag.
LAUNCHER_FLAGS = {
    "--model-repository": "--model-repository", "--model-store": "--model-repository",
    "--backend-directory": "--tritonserver", "--model-control-mode": "--model-control",
    "--http-address": "--host", "--grpc-address": "--host", "--metrics-address": "--host",
    "--http-port": "--http-port", "--grpc-port": "--grpc-port", "--metrics-port": "--metrics-port",
    "--log-verbose": "--log-verbose", "--exit-timeout-secs": "--exit-timeout",
    "--repository-poll-secs": "--poll-interval", "--load-model": "--load-model",
    "--grpc-restricted-protocol": "--restrict", "--http-restricted-api": "--restrict",
    "--cache-config": "--response-cache-mb", "--log-file": "--log-file",
    "--strict-readiness": "--health-port (the launcher's readiness)",
}


def _check_passed_through(args: tuple[str, ...]) -> None:
    """tritonserver flags passed after ``--``: each a ``--flag[=value]`` the launcher does not own."""
    for arg in args:
        if not arg.startswith("--"):
            raise ConfigError(f"{arg!r} after -- is not a tritonserver flag; write flags as --name=value")
        name = arg.split("=", 1)[0]
        if name in LAUNCHER_FLAGS:
            raise ConfigError(f"{name} is set by the launcher; pass {LAUNCHER_FLAGS[name]} before -- instead")
