"""Errors raised by the Triton launcher.

    ServerError                 root of everything this package raises
    ├── ConfigError             bad launcher input (ports, paths, options): fix the command line
    │   ├── RepositoryNotFound  the model repository does not exist or holds no model
    │   └── PortInUse           a port Triton needs is taken by another process
    ├── BinaryNotFound          no tritonserver binary (says how to install one)
    └── StartupError            Triton started but did not become ready
        ├── ModelLoadFailed     one or more models failed to load (Triton's own reason each)
        ├── ServerExited        the process died early (its last log lines attached)
        └── ReadinessTimeout    still not ready after the timeout

Every message is one line that names the problem and what to do about it.
"""

from __future__ import annotations


class ServerError(Exception):
    """Root of the launcher's errors."""


class ConfigError(ServerError):
    """The launcher was given something it cannot use."""


class RepositoryNotFound(ConfigError):
    """The model repository is missing or empty."""


class PortInUse(ConfigError):
    """A port Triton would bind is already taken."""


class BinaryNotFound(ServerError):
    """No tritonserver binary could be found."""


class StartupError(ServerError):
    """Triton did not reach readiness."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class ModelLoadFailed(StartupError):
    """Models failed to load; ``failures`` maps model name to Triton's reason."""

    def __init__(self, failures: dict[str, str], log_tail: str = "") -> None:
        detail = "; ".join(f"{name}: {reason}" for name, reason in sorted(failures.items()))
        super().__init__(f"model(s) failed to load: {detail}", log_tail)
        self.failures = failures


class ServerExited(StartupError):
    """The tritonserver process exited before it was ready."""


class ReadinessTimeout(StartupError):
    """Triton was not ready within the timeout."""
