"""A repository built by one user is served by another (the images run as uid 1000): every file
and folder the writers create gets the mode an ordinary open/mkdir would, not mkstemp's 0600 or
mkdtemp's 0700. Found by running the CPU image on a repository built as root."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.converters import tiny
from tritonstack.converters import carry
from tritonstack.converters.repository import atomic_write_text, replace_folder, write_version
from tritonstack.converters.triton_config import config_for_target, io_from_onnx
from tritonstack.rollout.state import write_split
from tritonstack.serving.split import Split


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_everything_the_writers_create_is_readable_by_other_users(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    onnx_path = tiny.export_embedder_onnx(tmp_path / "embedder.onnx")
    inputs, outputs = io_from_onnx(onnx_path)
    config = config_for_target("python-ort", "m", inputs, outputs, max_batch_size=8)
    write_version(repo, config, {"model.onnx": onnx_path, **carry.version_files("ort_runner")}, {"t": 1})
    atomic_write_text(repo / "m" / "labels.txt", "a\n")
    write_split(repo / "m", Split("m", primary=1))
    replace_folder(repo, "step", lambda folder: (folder / "config.pbtxt").write_text("name: 'step'\n"))
    unreadable = {path: oct(mode) for path, mode in _modes(repo).items() if mode & 0o044 != 0o044}
    assert unreadable == {}
    assert all(mode & 0o011 == 0o011 for path, mode in _modes(repo).items() if (repo / path).is_dir())
