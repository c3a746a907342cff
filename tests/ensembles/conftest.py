"""One Triton serving the real steps and ensembles around stand-in encoder/classifier models,
shared by the served-steps and fuzz tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ensembles.build import assemble
from server import TritonServer
from tests.conftest import start_server
from tests.ensembles.standins import write_standins


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repo = tmp_path_factory.mktemp("ensembles_repo")
    write_standins(repo)
    assemble(repo)
    srv = start_server(repo)
    yield srv
    srv.close()
