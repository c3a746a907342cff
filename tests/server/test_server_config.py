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
