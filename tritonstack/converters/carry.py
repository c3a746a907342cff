"""The serving code a model version carries: its adapter as ``model.py`` and the ``serving``
package beside it, ``VERSION/serving/``; the adapter puts its own folder first on ``sys.path``.

Every Python-backend version (the python-ort runner, the tokenizer and labels steps, the rollout
router) carries its own copy rather than importing the image's, and ``metadata.json["serving"]``
records which (package version and a digest of the files). Why:

* **reproducible**: a version behaves as it was exported and checked, whichever image or
  release serves it; a rollout compares two versions, not two versions on two runtimes;
* **one repository, every image**: the CPU image, NVIDIA's GPU image, KServe and Modal serve the
  same folder, and none of them needs the project installed for its models to load (the GPU
  image carries only the launcher and the third-party packages ``serving`` imports);
* **small**: the package is pure Python, about 100 kB a version.

The price: a fix in ``serving`` reaches a model only with a new version (``ensembles build``
rewrites stale ones).
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import tritonstack.serving

PACKAGE = Path(tritonstack.serving.__file__).parent
ADAPTERS = ("ort_runner", "tokenizer", "labels", "router")


def package_files() -> dict[str, Path]:
    """``{path in the version folder: source}`` for the ``serving`` package, adapters excluded."""
    return {f"serving/{path.relative_to(PACKAGE).as_posix()}": path
            for path in sorted(PACKAGE.rglob("*.py")) if "models" not in path.relative_to(PACKAGE).parts}


def version_files(adapter: str) -> dict[str, Path]:
    """What a version of a Python-backend model carries: ``model.py`` and ``serving/``."""
    if adapter not in ADAPTERS:
        raise ValueError(f"adapter {adapter!r}: choose one of {', '.join(ADAPTERS)}")
    return {"model.py": PACKAGE / "models" / f"{adapter}.py", **package_files()}


def record(adapter: str) -> dict[str, object]:
    """``metadata.json["serving"]``: which serving code the version carries."""
    digest = hashlib.sha256()
    for name, path in version_files(adapter).items():
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        version = metadata.version("triton-serving-stack")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"code": "carried", "adapter": adapter, "package_version": version,
            "sha256": digest.hexdigest()}


def is_current(version_dir: Path, adapter: str) -> bool:
    """Whether ``version_dir`` carries exactly this checkout's serving code for ``adapter``."""
    for name, path in version_files(adapter).items():
        served = Path(version_dir) / name
        if not served.is_file() or served.read_bytes() != path.read_bytes():
            return False
    return True


def copy_into(version_dir: Path, adapter: str) -> None:
    """Write ``model.py`` and ``serving/`` into an existing version folder."""
    for name, path in version_files(adapter).items():
        dest = Path(version_dir) / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(path.read_bytes())
