"""The control plane is locked behind a token; gRPC can run over TLS; endpoints bind loopback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.conftest import start_server
from tests.helpers import repos
from tritonstack.server import GrpcTls, ModelControl

pytestmark = pytest.mark.triton
TOKEN = "test-token-not-a-secret"


def _x() -> grpcclient.InferInput:
    inp = grpcclient.InferInput("INPUT", [1, 4], "FP32")
    inp.set_data_from_numpy(np.ones((1, 4), np.float32))
    return inp


def test_model_control_needs_the_token_and_inference_does_not(tmp_path: Path) -> None:
    repos.write_add_one(tmp_path)
    server = start_server(tmp_path, model_control=ModelControl.EXPLICIT, load_models=("add_one",),
                          restricted_apis=("model-repository",), restricted_value=TOKEN)
    try:
        with grpcclient.InferenceServerClient(server.grpc_url) as c:
            assert c.infer("add_one", [_x()]).as_numpy("OUTPUT")[0, 0] == 2
            with pytest.raises(InferenceServerException, match="triton-access-token"):
                c.unload_model("add_one")
            assert c.is_model_ready("add_one")
            header = server.config.grpc_restricted_header
            assert header == "triton-grpc-protocol-triton-access-token"
            c.unload_model("add_one", headers={header: TOKEN})
            assert not c.is_model_ready("add_one")
            with pytest.raises(InferenceServerException, match="triton-access-token"):
                c.get_model_repository_index()
    finally:
        server.close()
    assert "--http-address=127.0.0.1" in " ".join(server.command(Path("b")))


def test_rollout_sends_the_access_token_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    """Issue #32, item 10: rollout read the repository index without the token and exited 3."""
    from tritonstack.rollout.controller import Rollout, Target
    from tritonstack.rollout.errors import NoServer

    repos.write_add_one(tmp_path)
    server = start_server(tmp_path, model_control=ModelControl.EXPLICIT, load_models=("add_one",),
                          restricted_apis=("model-repository",), restricted_value=TOKEN)
    try:
        target = Target(tmp_path, (server.grpc_url,), (server.metrics_url,))
        monkeypatch.delenv("TRITON_ACCESS_TOKEN", raising=False)
        with pytest.raises(NoServer, match="permission"):
            Rollout(target, "add_one", progress=lambda _: None).served()
        monkeypatch.setenv("TRITON_ACCESS_TOKEN", TOKEN)
        assert Rollout(target, "add_one", progress=lambda _: None).served() == [1]
    finally:
        server.close()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_grpc_over_tls(tmp_path: Path) -> None:
    repos.write_add_one(tmp_path / "repo")
    cert, key = _self_signed(tmp_path)
    server = start_server(tmp_path / "repo", grpc_tls=GrpcTls(cert, key))
    try:
        with grpcclient.InferenceServerClient(server.grpc_url, ssl=True,
                                              root_certificates=str(cert)) as c:
            assert c.infer("add_one", [_x()]).as_numpy("OUTPUT")[0, 0] == 2
        with (grpcclient.InferenceServerClient(server.grpc_url) as plain,
              pytest.raises(InferenceServerException)):
            plain.infer("add_one", [_x()], client_timeout=5)
    finally:
        server.close()
