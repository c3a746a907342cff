"""The demo repository, built once by the project's own command, and one Triton serving it,
shared by the ensembles tests. The pipelines' work now lives in the exported models themselves
(MiniLM tokenizes its own text, the digits graph scales and labels), so they are tested on the
real exports, not on stand-ins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import start_server
from tritonstack.server import TritonServer


@pytest.fixture(scope="package")
def repository(demo_repository: Path) -> Path:
    return demo_repository


@pytest.fixture(scope="package")
def server(repository: Path) -> Iterator[TritonServer]:
    srv = start_server(repository)
    yield srv
    srv.close()
