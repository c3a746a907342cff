"""The HTTP front's import contract (pyproject.toml) holds, and breaks on a front that reaches
past the client, or a layer that imports the front."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.project.test_layers import _lint, _tree

CONTRACT = "the HTTP front imports only the client (and the command-line convention); nothing imports it"


@pytest.mark.parametrize(("module", "imports", "contract"), [
    ("http/app.py", "tritonstack.server", CONTRACT),
    ("http/app.py", "tritonstack.serving", CONTRACT),
    ("client/_sync.py", "tritonstack.http", "client imports nothing but itself (and the command-line convention)"),
    ("loadtest/run.py", "tritonstack.http", "loadtest drives the server through client and server only"),
])
def test_the_fronts_layer_is_enforced(tmp_path: Path, module: str, imports: str, contract: str) -> None:
    tree = _tree(tmp_path)
    (tree / "tritonstack" / module).write_text(f"import {imports}\n")
    done = _lint(tree, tree / "pyproject.toml")
    assert done.returncode != 0
    assert f"{contract} BROKEN" in " ".join(done.stdout.split())  # lint-imports wraps long names
    source = "tritonstack." + module.removesuffix(".py").replace("/", ".")
    assert f"{source} -> {imports}" in done.stdout
