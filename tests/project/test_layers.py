"""The layers are enforced: import-linter's contracts in pyproject.toml hold for the project, and
the same contracts fail on a tree where server imports client."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(cwd))
    return subprocess.run([str(LINT), "--config", str(config), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_project_keeps_its_import_contracts() -> None:
    done = _lint(ROOT, ROOT / "pyproject.toml")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout


def _tree(tmp_path: Path) -> Path:
    """An empty tree of the project's packages under the real contracts."""
    section = re.search(r"^\[tool\.importlinter\].*?(?=^\[tool\.(?!importlinter))",
                        (ROOT / "pyproject.toml").read_text(), re.S | re.M)
    assert section is not None
    (tmp_path / "pyproject.toml").write_text(section.group(0))
    (tmp_path / "tritonstack").mkdir()
    (tmp_path / "tritonstack" / "__init__.py").write_text("")
    (tmp_path / "tritonstack" / "cli.py").write_text("")
    for package in ("server", "client", "converters", "ensembles", "loadtest", "demo", "rollout", "serving", "http"):
        (tmp_path / "tritonstack" / package).mkdir()
        (tmp_path / "tritonstack" / package / "__init__.py").write_text("")
    # the one exception the real tree has, so that the contract's ignore_imports still match
    (tmp_path / "tritonstack" / "converters" / "repository.py").write_text("")
    (tmp_path / "tritonstack" / "ensembles" / "build.py").write_text("")
    (tmp_path / "tritonstack" / "loadtest" / "bench").mkdir()
    (tmp_path / "tritonstack" / "loadtest" / "bench" / "__init__.py").write_text("")
    (tmp_path / "tritonstack" / "loadtest" / "bench" / "pipeline.py").write_text(
        "import tritonstack.converters.repository\nimport tritonstack.ensembles.build\n")
    return tmp_path


@pytest.mark.parametrize(("module", "imports", "contract"), [
    ("server/process.py", "tritonstack.client", "server imports nothing of the project (but the command-line "
                                                "convention)"),
    ("serving/batching.py", "tritonstack.converters.repository",
     "serving (what runs inside Triton) imports nothing of the project"),
    ("client/_sync.py", "tritonstack.serving", "client imports nothing but itself (and the command-line convention)"),
    ("cli.py", "tritonstack.client", "cli imports nothing of the project"),
])
def test_a_forbidden_import_breaks_the_contract(tmp_path: Path, module: str, imports: str, contract: str) -> None:
    tree = _tree(tmp_path)
    (tree / "tritonstack" / module).write_text(f"import {imports}\n")
    done = _lint(tree, tree / "pyproject.toml")
    assert done.returncode != 0
    assert f"{contract} BROKEN" in done.stdout
    source = "tritonstack." + module.removesuffix(".py").replace("/", ".")
    assert f"{source} -> {imports}" in done.stdout
