"""What ships, tested in the shape it ships: the CPU image (podman), the GPU image's Python side
(Python 3.10), the client extra alone. The demo repository is built once for them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonstack.ensembles.build import build


@pytest.fixture(scope="package")
def demo_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("demo") / "model_repository"
    build(repo, progress=lambda _: None)
    return repo
