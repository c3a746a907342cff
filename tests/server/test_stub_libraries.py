"""The launcher checks that the Python-backend stub can start before it starts Triton: a stub whose
shared libraries the loader cannot find (Debian's python3 has no libpython3.11.so without the
libpython3.11 package) otherwise leaves every Python-backend model "loading" until the readiness
timeout, 180 s later. Found building the CPU image on a Debian base."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tritonstack.server.locate import find_tritonserver, missing_libraries, prepare_backends, server_environment

pytestmark = pytest.mark.triton


def test_the_stub_resolves_under_the_launchers_environment(tmp_path: Path) -> None:
    install = find_tritonserver()
    backends = prepare_backends(install, tmp_path)  # raises BinaryNotFound when it cannot start
    stub = backends / "python" / "triton_python_backend_stub"
    assert missing_libraries(stub, server_environment(install)) == []


def test_a_library_the_loader_cannot_find_is_named(tmp_path: Path) -> None:
    install = find_tritonserver()
    stub = prepare_backends(install, tmp_path) / "python" / "triton_python_backend_stub"
    alone = tmp_path / "elsewhere" / "stub"  # its RPATH no longer leads to the wheel's libraries
    alone.parent.mkdir()
    shutil.copy2(stub, alone)
    missing = missing_libraries(alone, {"PATH": "/usr/bin:/bin"})
    assert missing and all(name.startswith("lib") and ".so" in name for name in missing)
