"""The one error of the serving package: a request that cannot run.

Its message goes back to that caller alone (INVALID_ARGUMENT; the other requests of the batch
still run), and ``reason`` labels it in ``triton_stack_data_quality_total{model, reason}``
(empty, too_long, out_of_range, ...). A broken model raises Triton's own
``TritonModelException`` instead, from its adapter.
"""

from __future__ import annotations


class InvalidInput(ValueError):
    """A request's input cannot be processed; the message tells the caller what to fix."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


class InvalidSplit(ValueError):
    """A rollout split that cannot be: a weight outside 0..100, no candidate, an unknown mode."""
