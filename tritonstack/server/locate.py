"""Find a tritonserver binary and prepare what it needs to run the Python backend.

Two installations are supported:

* the ``nvidia-pytriton`` wheel: a real tritonserver (2.51) with its shared libraries in
  ``nvidia_pytriton.libs`` and only the Python backend. Its backend folder is read-only
  inside site-packages and has no stub, so a writable copy is made with the stub for the
  running Python version.
* a system install such as the NGC container (``tritonserver`` on PATH, backends in
  ``/opt/tritonserver/backends``), used as it is.
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tritonstack.server.errors import BinaryNotFound

INSTALL_HINT = (
    "install it with `make venv` (pip install --no-deps nvidia-pytriton==0.7.0), "
    "or pass --tritonserver PATH / set TRITONSERVER"
)


@dataclasses.dataclass(frozen=True)
class TritonInstall:
    """Where one tritonserver lives and how to run it."""

    binary: Path
    backends: Path
    lib_dirs: tuple[Path, ...] = ()
    stubs: Path | None = None  # per-Python-version stubs (wheel only)

    @property
    def from_wheel(self) -> bool:
        return self.stubs is not None

    @property
    def caches(self) -> Path:
        """Triton's cache implementations (``local/libtritoncache_local.so``), beside the backends:
        the wheel's copy, or /opt/tritonserver/caches in the NGC container."""
        return self.backends.parent / "caches"


def _wheel_install() -> TritonInstall | None:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    if not binary.is_file():
        return None
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return TritonInstall(
        binary=binary,
        backends=root / "backends",
        lib_dirs=(libs,) if libs.is_dir() else (),
        stubs=root / "python_backend_stubs",
    )


def _system_install(binary: Path) -> TritonInstall:
    home = binary.resolve().parent.parent
    return TritonInstall(binary=binary, backends=home / "backends")


def find_tritonserver(explicit: Path | str | None = None) -> TritonInstall:
    """Locate tritonserver: an explicit path, $TRITONSERVER, the pytriton wheel, then PATH."""
    explicit = explicit or os.environ.get("TRITONSERVER")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BinaryNotFound(f"tritonserver not found or not executable at {path}; {INSTALL_HINT}")
        wheel = _wheel_install()
        if wheel and wheel.binary.resolve() == path.resolve():
            return wheel
        return _system_install(path)
    wheel = _wheel_install()
    if wheel:
        return wheel
    on_path = shutil.which("tritonserver")
    if on_path:
        return _system_install(Path(on_path))
    raise BinaryNotFound(f"no tritonserver binary found; {INSTALL_HINT}")


def prepare_backends(install: TritonInstall, workdir: Path) -> Path:
    """Return a backend directory Triton can use, copying the wheel's into ``workdir``.

    The wheel ships the Python backend without a stub; the stub for the running Python must
    sit beside ``libtriton_python.so``, and site-packages may be read-only, hence the copy.
    """
    if not install.from_wheel:
        return install.backends
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert install.stubs is not None
    stub = install.stubs / version / "triton_python_backend_stub"
    if not stub.is_file():
        available = sorted(p.name for p in install.stubs.iterdir())
        raise BinaryNotFound(
            f"the pytriton wheel has no Python-backend stub for Python {version} "
            f"(it has {', '.join(available)}); use one of those Python versions"
        )
    target = workdir / "backends"
    shutil.copytree(install.backends, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, target / "python" / "triton_python_backend_stub")
    missing = missing_libraries(target / "python" / "triton_python_backend_stub", server_environment(install))
    if missing:  # else every Python-backend model hangs in "loading" until the readiness timeout
        raise BinaryNotFound(
            f"the Python-backend stub for Python {version} cannot start: {', '.join(missing)} not found; "
            f"install the shared Python library (Debian/Ubuntu: apt-get install libpython{version}; "
            "pyenv and python.org builds: configure --enable-shared) or put its folder on LD_LIBRARY_PATH")
    return target


def missing_libraries(binary: Path, env: dict[str, str]) -> list[str]:
    """Shared libraries ``binary`` needs that the dynamic loader cannot find under ``env`` (by
    ``ldd``; none reported where ``ldd`` is absent)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    done = subprocess.run([ldd, str(binary)], env=env, capture_output=True, text=True, timeout=30, check=False)
    return [line.split("=>")[0].strip() for line in done.stdout.splitlines() if "not found" in line]


def server_environment(install: TritonInstall, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver and the Python-backend stubs it spawns.

    The stub embeds its own Python and finds this virtualenv's packages only when the
    virtualenv's ``bin`` leads PATH; the wheel's libraries go on LD_LIBRARY_PATH, and so does the
    running Python's own ``libpython`` folder where the loader's cache does not list it (pyenv's).
    """
    env = dict(os.environ if base is None else base)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    libs = [str(p) for p in install.lib_dirs or ()]
    version = sysconfig.get_python_version()
    libdir = sysconfig.get_config_var("LIBDIR")
    if (install.from_wheel and libdir and ctypes.util.find_library(f"python{version}") is None
            and (Path(libdir) / f"libpython{version}.so.1.0").is_file()):
        libs.append(libdir)
    if libs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    # Python-backend models set their own thread counts; keep BLAS pools from oversubscribing.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
