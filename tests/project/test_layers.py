"""The layers are enforced: import-linter's contracts in pyproject.toml hold for the project, and
the same contracts fail on a tree where server imports client."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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


def test_a_forbidden_import_breaks_the_contract(tmp_path: Path) -> None:
    section = re.search(r"^\[tool\.importlinter\].*?(?=^\[tool\.(?!importlinter))",
                        (ROOT / "pyproject.toml").read_text(), re.S | re.M)
    assert section is not None
    (tmp_path / "pyproject.toml").write_text(section.group(0))
    for package in ("server", "client", "converters", "ensembles", "loadtest", "demo", "rollout"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "server" / "process.py").write_text("import client\n")
    # the one exception the real tree has, so that the contract's ignore_imports still match
    (tmp_path / "converters" / "repository.py").write_text("")
    (tmp_path / "ensembles" / "build.py").write_text("")
    (tmp_path / "loadtest" / "pipeline_bench.py").write_text(
        "import converters.repository\nimport ensembles.build\n")
    done = _lint(tmp_path, tmp_path / "pyproject.toml")
    assert done.returncode != 0
    assert "server imports nothing of the project BROKEN" in done.stdout
    assert "server.process -> client" in done.stdout
