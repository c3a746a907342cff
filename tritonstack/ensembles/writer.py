"""Write Python steps and ensembles into a model repository, each folder replaced atomically
(:func:`converters.repository.replace_folder`, the repository's one atomic writer)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tritonstack.converters import carry
from tritonstack.converters.repository import replace_folder
from tritonstack.ensembles.pipelines import Ensemble, PythonStep, to_pbtxt


def write_python_step(repository: Path, step: PythonStep,
                      version_files: dict[str, Path] | None = None) -> Path:
    """``REPO/<step>/config.pbtxt`` and ``1/``: the adapter as ``model.py`` with the serving code it
    carries (:mod:`tritonstack.converters.carry`), plus ``version_files``."""
    def fill(folder: Path) -> None:
        (folder / "1").mkdir()
        carry.copy_into(folder / "1", step.adapter)
        (folder / "1" / "metadata.json").write_text(json.dumps({"serving": carry.record(step.adapter)},
                                                               indent=2) + "\n")
        for name, path in (version_files or {}).items():
            shutil.copy2(path, folder / "1" / name)
        for name, text in step.files.items():
            (folder / name).write_text(text)
        (folder / "warmup").mkdir()
        for name, data in step.warmup_files().items():
            (folder / "warmup" / name).write_bytes(data)
        (folder / "config.pbtxt").write_text(to_pbtxt(step.config()))

    return replace_folder(repository, step.name, fill)


def write_ensemble(repository: Path, ensemble: Ensemble) -> Path:
    """``REPO/<ensemble>/config.pbtxt`` and the empty version folder Triton expects."""
    def fill(folder: Path) -> None:
        (folder / "1").mkdir()
        for name, text in ensemble.files.items():
            (folder / name).write_text(text)
        (folder / "config.pbtxt").write_text(to_pbtxt(ensemble.config()))

    return replace_folder(repository, ensemble.name, fill)
