"""One exit-code convention across the six CLIs (README, "Exit codes"), and the hostile inputs
that used to end in a traceback: each is one line with its documented code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_a_bug_is_an_internal_error_in_one_line(monkeypatch, capsys) -> None:
    from tritonstack.converters import api, cli

    def broken(*_a, **_k):
        raise KeyError("oops")

    monkeypatch.setattr(api, "export", broken)
    assert cli.main(["export", "minilm", "--name", "m"]) == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("InternalError: KeyError: 'oops'") and "--verbose" in err and "\n" not in err


def _run(tool: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """``tritonstack-TOOL ARGV``: the console script pip installs (pyproject.toml)."""
    script = Path(sys.executable).with_name(f"tritonstack-{tool}")
    return subprocess.run([str(script), *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("argv", "code", "message"), [
    (("converters", "export", "minilm", "--name", "модель"), 2, "ASCII letters"),
    (("converters", "export", "minilm", "--name", "a", "--work-dir", "/etc/passwd"), 2, "is a file"),
    (("loadtest", "run", "smoke", "--url", "127.0.0.1:1", "--out", "/etc/passwd"), 2, "is a file"),
    (("loadtest", "run", "smoke", "--metrics-url", "file:///etc/passwd"), 2, "http(s)://"),
    (("client", "--url", "127.0.0.1:1", "embed", "\udcff\udcfe bad"), 2, "lone surrogates"),
])
def test_hostile_command_lines_get_one_line_and_the_documented_code(argv, code, message) -> None:
    proc = _run(*argv)
    assert proc.returncode == code, proc.stderr
    err = proc.stderr.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_a_string_array_is_not_a_digit(tmp_path) -> None:
    np.save(tmp_path / "str.npy", np.array(["a", "b"]))
    proc = _run("client", "--url", "127.0.0.1:1", "classify", str(tmp_path / "str.npy"))
    assert proc.returncode == 2 and "holds <U1 values" in proc.stderr and "Traceback" not in proc.stderr
