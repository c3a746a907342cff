"""One Triton for the client tests, serving the stand-in models (see standins.py).

Its model-repository protocol is restricted with an access token, so the token path is
exercised by every ``list_models`` call. The behaviour tests run over both of Triton's front
ends: ``protocol`` is "grpc", then "http", and ``address`` the server's address for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.standins import write_client_repo
from tests.conftest import start_server
from tritonstack.server import TritonServer

TOKEN = "client-test-token"
PROTOCOLS = ("grpc", "http")


def address(server: TritonServer, protocol: str) -> str:
    """Where a client speaking ``protocol`` finds ``server`` (HTTP: with its scheme, as users write it)."""
    return server.grpc_url if protocol == "grpc" else server.http_url


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="package")
def client_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_client_repo(tmp_path_factory.mktemp("client_repo"))


@pytest.fixture(scope="package")
def client_server(client_repo: Path) -> Iterator[TritonServer]:
    server = start_server(client_repo, restricted_apis=("model-repository",), restricted_value=TOKEN)
    yield server
    server.close()
