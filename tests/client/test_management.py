"""Model management from the client, library and CLI, against a real Triton in explicit mode (over
gRPC and over HTTP)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.client.conftest import address
from tests.conftest import start_server
from tests.helpers import repos
from tritonstack.client import Client
from tritonstack.client.cli import main
from tritonstack.server import ModelControl
from tritonstack.server.stubs import backend_stubs

pytestmark = pytest.mark.triton


def test_repository_unload_load_and_reload_from_the_cli(tmp_path: Path, capsys, protocol: str) -> None:
    repos.write_add_one(tmp_path)
    server = start_server(tmp_path, model_control=ModelControl.EXPLICIT, load_models=("add_one",))
    where = address(server, protocol)
    url = ["--protocol", protocol, "--url", where, "--json"]
    capsys.readouterr()  # the launcher's own lines (it may report stubs other tests left), not the CLI's
    try:
        assert main([*url, "repository"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [(r["name"], r["state"]) for r in rows] == [("add_one", "READY")]

        assert main([*url, "unload", "add_one"]) == 0
        assert json.loads(capsys.readouterr().out) == {"model": "add_one", "action": "unload",
                                                       "replicas": [where]}
        with Client(urls=where, protocol=protocol, retries=0) as client:
            assert not client.model_ready("add_one")
        assert main([*url, "load", "add_one"]) == 0
        capsys.readouterr()

        before = {s.pid for s in backend_stubs(server.pid)}
        assert main([*url, "reload", "add_one"]) == 0
        assert "reload" in capsys.readouterr().out
        assert {s.pid for s in backend_stubs(server.pid) if not s.dead} - before  # a new instance
        deadline = time.monotonic() + 15
        while {s.pid for s in backend_stubs(server.pid)} & before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not {s.pid for s in backend_stubs(server.pid)} & before  # and the old one is gone
        with Client(urls=where, protocol=protocol) as client:
            out = client.infer("add_one", {"INPUT": np.zeros((1, 4), np.float32)})["OUTPUT"]
        np.testing.assert_array_equal(out, np.ones((1, 4), np.float32))

        # issue #32, item 13: load of a stranger exited 1 and unload of one 0
        for command in ("load", "unload", "reload"):
            assert main(["--protocol", protocol, "--url", where, command, "add_onee"]) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("ClientError: [not_found] no model 'add_onee'") and len(err.splitlines()) == 1
            assert "did you mean 'add_one'?" in err
    finally:
        server.close()


def test_a_restricted_control_plane_needs_the_token(tmp_path: Path, capsys, monkeypatch, protocol: str) -> None:
    repos.write_add_one(tmp_path)
    server = start_server(tmp_path, model_control=ModelControl.EXPLICIT, load_models=("add_one",),
                          restricted_apis=("model-repository",), restricted_value="s3cret")
    try:
        monkeypatch.delenv("TRITON_ACCESS_TOKEN", raising=False)
        cli = ["--protocol", protocol, "--url", address(server, protocol)]
        assert main([*cli, "reload", "add_one"]) == 2
        err = capsys.readouterr().err
        assert "permission_denied" in err and "TRITON_ACCESS_TOKEN" in err
        monkeypatch.setenv("TRITON_ACCESS_TOKEN", "s3cret")
        assert main([*cli, "reload", "add_one"]) == 0
    finally:
        server.close()


def test_the_client_and_the_launcher_reload_the_same_way() -> None:
    from tritonstack.client._sync import RELOAD_PARAMETER as CLIENT
    from tritonstack.server.process import RELOAD_PARAMETER as LAUNCHER

    assert CLIENT == LAUNCHER  # one parameter the models ignore (client must not import server)
