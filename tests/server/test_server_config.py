"""Launcher configuration and log parsing, without starting Triton."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import repos
from tritonstack.server import ConfigError, ModelControl, ServerConfig
from tritonstack.server.process import load_failures


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repos.write_add_one(tmp_path)
    return tmp_path


def test_defaults_bind_loopback_on_tritons_ports(repo: Path) -> None:
    c = ServerConfig(model_repository=repo)
    assert (c.host, c.http_port, c.grpc_port, c.metrics_port) == ("127.0.0.1", 8000, 8001, 8002)
    assert c.model_control is ModelControl.NONE


@pytest.mark.parametrize("kwargs, message", [
    ({"grpc_port": 70000}, "out of range"),
    ({"grpc_port": 8000}, "must differ"),
    ({"load_models": ("a",)}, "only applies with --model-control explicit"),
    ({"restricted_apis": ("model-repository",)}, "TRITON_ACCESS_TOKEN"),
    ({"nice": 20}, "0-19"),
    ({"nice": -5}, "0-19"),
])
def test_bad_configuration_is_refused(repo: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(model_repository=repo, **kwargs)


def test_load_failures_are_read_from_tritons_log() -> None:
    log = (
        'E1122 07:36:56.427941 2787 model_lifecycle.cc:642] "failed to load \'bad\' version 1: '
        'Internal: RuntimeError: boom\\n\\nAt:\\n  model.py(1)"\n'
        'E1122 07:36:56.4 1 model_repository_manager.cc:1] "Poll failed for model directory '
        '\'cfg\': failed to open text file for read /r/cfg/config.pbtxt: No such file"\n'
    )
    assert load_failures(log) == {
        "bad": "Internal: RuntimeError: boom",
        "cfg": "failed to open text file for read /r/cfg/config.pbtxt: No such file",
    }


@pytest.mark.parametrize(("host", "control", "restrict", "token", "open_", "expected"), [
    ("127.0.0.1", "explicit", (), None, False, ()),  # loopback: as asked
    ("::1", "explicit", (), None, False, ()),
    ("localhost", "explicit", (), None, False, ()),
    ("0.0.0.0", "explicit", (), "t", False, ("model-repository",)),  # beyond loopback: locked by the token
    ("10.1.2.3", "explicit", ("statistics",), "t", False, ("statistics", "model-repository")),
    ("0.0.0.0", "explicit", ("model-repository",), "t", False, ("model-repository",)),
    ("0.0.0.0", "explicit", (), None, True, ()),  # open, by name
    ("0.0.0.0", "explicit", (), "t", True, ("model-repository",)),  # a token still locks it
    ("0.0.0.0", "none", (), None, False, ()),  # nothing to load or unload
])
def test_the_control_plane_is_closed_beyond_loopback(host, control, restrict, token, open_, expected) -> None:
    from tritonstack.server.config import ModelControl, control_plane_groups

    assert control_plane_groups(host, ModelControl(control), restrict, token, open_) == expected


def test_an_open_control_plane_beyond_loopback_is_refused_with_the_remedy() -> None:
    """Issue #32, item 11: with --host 0.0.0.0 and no token, load/unload answered anyone."""
    from tritonstack.server.config import ModelControl, control_plane_groups
    from tritonstack.server.errors import ConfigError

    with pytest.raises(ConfigError, match="set TRITON_ACCESS_TOKEN .* or pass --open-control-plane"):
        control_plane_groups("0.0.0.0", ModelControl.EXPLICIT, (), None)


def test_the_launcher_refuses_an_open_control_plane_beyond_loopback(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    repos.write_add_one(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_ACCESS_TOKEN"}
    script = Path(sys.executable).with_name("tritonstack-server")
    proc = subprocess.run([str(script), "serve", "--host", "0.0.0.0", "--model-repository", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("ConfigError: --host 0.0.0.0 lets anyone") and "--open-control-plane" in proc.stderr
