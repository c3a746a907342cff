"""Write Python steps and ensembles into a model repository, each folder replaced atomically.

A folder is assembled beside its final place and swapped in with ``os.replace``, so a Triton
polling the repository never sees half a model, and a failed build leaves the old one intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from ensembles.pipelines import LABELS_FILE, LABELS_TEXT, Ensemble, PythonStep, to_pbtxt


def _replace_folder(repository: Path, name: str, fill: Callable[[Path], None]) -> Path:
    repository.mkdir(parents=True, exist_ok=True)
    final = repository / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repository))
    try:
        fill(staging)
        old = None
        if final.exists():
            old = final.with_name(f".{name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(staging, final)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def write_python_step(repository: Path, step: PythonStep,
                      version_files: dict[str, Path] | None = None) -> Path:
    """``REPO/<step>/config.pbtxt`` and ``1/model.py`` (the adapter), plus ``version_files``."""
    source = resources.files("ensembles.models") / f"{step.adapter}.py"

    def fill(folder: Path) -> None:
        (folder / "1").mkdir()
        (folder / "1" / "model.py").write_text(source.read_text())
        for name, path in (version_files or {}).items():
            shutil.copy2(path, folder / "1" / name)
        for name, text in step.files.items():
            (folder / name).write_text(text)
        (folder / "config.pbtxt").write_text(to_pbtxt(step.config()))

    return _replace_folder(repository, step.name, fill)


def write_ensemble(repository: Path, ensemble: Ensemble) -> Path:
    """``REPO/<ensemble>/config.pbtxt`` and the empty version folder Triton expects."""
    def fill(folder: Path) -> None:
        (folder / "1").mkdir()
        if any(t.label_filename == LABELS_FILE for t in ensemble.outputs):
            (folder / LABELS_FILE).write_text(LABELS_TEXT)
        (folder / "config.pbtxt").write_text(to_pbtxt(ensemble.config()))

    return _replace_folder(repository, ensemble.name, fill)
