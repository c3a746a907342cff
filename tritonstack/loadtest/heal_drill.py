"""Moved to :mod:`tritonstack.loadtest.drills.heal`; this name is the same module, kept for importers
outside the package (tests/ensembles/test_demo_repository.py) until they import the new name."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("tritonstack.loadtest.drills.heal")
