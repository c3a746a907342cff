"""One Triton for the client tests, serving the stand-in models (see standins.py).

Its model-repository protocol is restricted with an access token, so the token path is
exercised by every ``list_models`` call.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.standins import write_client_repo
from tests.conftest import start_server
from tritonstack.server import TritonServer

TOKEN = "client-test-token"


@pytest.fixture(scope="package")
def client_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_client_repo(tmp_path_factory.mktemp("client_repo"))


@pytest.fixture(scope="package")
def client_server(client_repo: Path) -> Iterator[TritonServer]:
    server = start_server(client_repo, restricted_apis=("model-repository",), restricted_value=TOKEN)
    yield server
    server.close()
