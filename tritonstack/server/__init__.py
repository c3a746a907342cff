"""The Triton launcher: find tritonserver, prepare its backends, start / wait / stop it."""

from tritonstack.server.config import GrpcTls, ModelControl, ServerConfig
from tritonstack.server.errors import (
    BinaryNotFound,
    ConfigError,
    ModelLoadFailed,
    PortInUse,
    ReadinessTimeout,
    RepositoryNotFound,
    ServerError,
    ServerExited,
    StartupError,
)
from tritonstack.server.locate import TritonInstall, find_tritonserver
from tritonstack.server.process import TritonServer, free_port, serving

__all__ = [
    "BinaryNotFound",
    "ConfigError",
    "GrpcTls",
    "ModelControl",
    "ModelLoadFailed",
    "PortInUse",
    "ReadinessTimeout",
    "RepositoryNotFound",
    "ServerConfig",
    "ServerError",
    "ServerExited",
    "StartupError",
    "TritonInstall",
    "TritonServer",
    "find_tritonserver",
    "free_port",
    "serving",
]
