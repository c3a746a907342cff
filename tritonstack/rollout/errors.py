"""Rollout errors, each with the project's exit code (``tritonstack.cli.ExitCode``)."""

from __future__ import annotations


class RolloutError(Exception):
    exit_code = 4


class BadRequest(RolloutError):
    """Bad command line or input: unknown model or version, a weight outside 0..100, a model with
    one version, a rollout already running for another candidate."""

    exit_code = 2


class CheckFailed(RolloutError):
    """A check failed: the candidate did not load or missed its golden check, an SLO broke and the
    canary rolled back, or there was too little traffic to judge it."""

    exit_code = 1


class NoServer(RolloutError):
    """No Triton answers at the given address, or its metrics endpoint does not."""

    exit_code = 3
