"""Moved to :mod:`tritonstack.loadtest.bench.perf_analyzer`; this name is the same module, kept for importers
outside the package (scripts/rollout_cost.py) until they import the new name."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("tritonstack.loadtest.bench.perf_analyzer")
