"""The converters' exceptions: one root, user mistakes kept apart from failed checks and faults.

::

    ConverterError                    root; .exit_code decides the CLI's exit status
    ├── UsageError (2)                the request is wrong: fix the command line / source
    │   ├── UnknownSource             SOURCE is no folder, short name or module:factory
    │   ├── MissingWeights            an HF folder without model weights
    │   ├── UnsupportedModel          architecture or task this exporter cannot handle
    │   └── InvalidSpec               a bad option value or combination
    ├── EnvironmentProblem (3)        the machine cannot do it: no GPU, repository not writable
    │   ├── GpuUnavailable
    │   ├── RepositoryNotWritable
    │   └── NoSpace                   a disk full (or over quota, or a file size limit) mid-write
    ├── CheckFailed (1)               the export ran, a required check failed
    │   ├── ToleranceExceeded         ONNX vs source parity (has a per-output table)
    │   ├── ShapeMismatch             ONNX output shapes differ from the source's
    │   └── AccuracyBelowThreshold    INT8 vs FP32 gate
    └── StepFailed (1)                a conversion step crashed (the cause is chained)
"""

from __future__ import annotations

import errno

__all__ = [
    "AccuracyBelowThreshold",
    "CheckFailed",
    "ConverterError",
    "EnvironmentProblem",
    "GpuUnavailable",
    "InvalidSpec",
    "MissingWeights",
    "NoSpace",
    "RepositoryNotWritable",
    "ShapeMismatch",
    "StepFailed",
    "ToleranceExceeded",
    "UnknownSource",
    "UnsupportedModel",
    "UsageError",
    "is_no_space",
    "no_space_error",
]


class ConverterError(Exception):
    """Root of every error the converters raise on purpose."""

    exit_code = 1


class UsageError(ConverterError):
    """The request itself is wrong (bad source, option or combination)."""

    exit_code = 2


class UnknownSource(UsageError):
    """SOURCE is not an HF folder, a known short name, or ``package.module:factory``."""


class MissingWeights(UsageError):
    """An HF folder has a config.json but no weights file."""


class UnsupportedModel(UsageError):
    """The architecture or task is not supported by this exporter."""


class InvalidSpec(UsageError):
    """An option value or combination is invalid."""


class EnvironmentProblem(ConverterError):
    """This machine cannot do what was asked."""

    exit_code = 3


class GpuUnavailable(EnvironmentProblem):
    """TensorRT was asked for but there is no usable GPU / TensorRT here."""


class RepositoryNotWritable(EnvironmentProblem):
    """The model repository cannot be created or written."""


class NoSpace(EnvironmentProblem):
    """A write ran out of room: the disk is full (``ENOSPC``), a quota is spent (``EDQUOT``), or
    a file outgrew the process's size limit (``EFBIG``). What was half-written is removed."""


#: The ``errno`` values of :class:`NoSpace`.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def no_space_error(exc: BaseException | None) -> OSError | None:
    """The ``OSError`` of running out of room that ``exc`` is, or was raised from (None if none)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is an ``OSError`` of running out of room."""
    return no_space_error(exc) is not None


class CheckFailed(ConverterError):
    """A required check (parity, accuracy) failed; nothing was written."""


class ShapeMismatch(CheckFailed):
    """ONNX outputs have other shapes than the source model's."""


class ToleranceExceeded(CheckFailed):
    """ONNX outputs differ from the source beyond tolerance.

    Attributes:
        table: one row per output: ``{"output", "shape", "max_abs", "max_rel", "atol", "rtol", "ok"}``.
    """

    def __init__(self, message: str, table: list[dict[str, object]]):
        super().__init__(message)
        self.table = table


class AccuracyBelowThreshold(CheckFailed):
    """An INT8 model lost more accuracy than its stated bound allows.

    Attributes:
        metrics: the measured agreement (as a dict).
        failures: which thresholds were crossed, one line each.
    """

    def __init__(self, message: str, metrics: dict[str, object], failures: list[str]):
        super().__init__(message)
        self.metrics = metrics
        self.failures = failures


class StepFailed(ConverterError):
    """A conversion step raised unexpectedly (the original exception is ``__cause__``)."""
