"""The one exception tree of ``loadtest``.

::

    LoadTestError                  root: catch this to handle every loadtest failure
    ├── CampaignError              the campaign file or command line is wrong (user input; exit 2)
    ├── TargetError                the server cannot be reached or does not serve the models (exit 3)
    └── RunFailed                  Locust or perf_analyzer crashed, hung or wrote no results (exit 3)

An SLO that fails is not an exception: it is a verdict in the run's result (exit 1).
"""

from __future__ import annotations


class LoadTestError(Exception):
    """Root of every error raised by ``loadtest``."""


class CampaignError(LoadTestError):
    """A campaign file, SLO expression or option is invalid; the message says what to change."""


class TargetError(LoadTestError):
    """The target server is unreachable, not ready, or lacks a model the campaign needs."""


class RunFailed(LoadTestError):
    """The load generator (Locust) or perf_analyzer failed, timed out or produced no results."""
