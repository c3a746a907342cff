"""Load docker/validate.py (a script, not a package: ``docker`` would shadow docker-py)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"


def _load_validate():
    spec = importlib.util.spec_from_file_location("deploy_validate", ROOT / "docker" / "validate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


validate = _load_validate()


@pytest.fixture(scope="session")
def hadolint_available() -> None:
    """Skip (with the reason) only when the hadolint binary really is not installed."""
    try:
        validate.hadolint_binary()
    except validate.ToolMissing as exc:
        if shutil.which("hadolint") is None:
            pytest.skip(str(exc))


@pytest.fixture(scope="session")
def kubernetes_validate_available() -> None:
    """Skip (with the reason) only when kubernetes-validate is not installed."""
    try:
        validate._kubernetes_validate()
    except validate.ToolMissing as exc:
        pytest.skip(str(exc))
