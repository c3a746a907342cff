"""Moved to :mod:`tritonstack.loadtest.runner.metrics`; this name is the same module, kept for importers
outside the package (tests/server, tests/ensembles, tests/client, scripts/rollout_cost.py) until they
import the new name."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("tritonstack.loadtest.runner.metrics")
