"""What a killed export leaves in the repository is removed at the next start (issue #32, item 8):
under ``--model-control none`` or ``poll`` Triton loads every folder it finds, so a staging folder
left at the root failed the start; one left inside a model's folder stayed forever."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.helpers import repos
from tritonstack.converters.repository import OWNER_FILE, replace_folder, staging_folder
from tritonstack.server import ModelControl
from tritonstack.server.leftovers import FOREIGN_MAX_AGE_S, remove_dead_staging, writer_is_dead

ROOT = Path(__file__).resolve().parents[2]


def _staged_by_a_process_that_died(parent: Path, name: str) -> Path:
    """A staging folder made by the writers' own code in a process that then exits (as a killed
    export's would be)."""
    code = ("import sys; from pathlib import Path; from tritonstack.converters.repository import staging_folder; "
            "print(staging_folder(Path(sys.argv[1]), sys.argv[2]))")
    out = subprocess.run([sys.executable, "-c", code, str(parent), name], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return Path(out.stdout.strip())


def _foreign(parent: Path, name: str, age_s: float) -> Path:
    folder = parent / f".staging-{name}-f0r31gn"
    folder.mkdir()
    owner = {"host": socket.gethostname() + "-elsewhere", "pid": 1, "started": time.time() - age_s}
    (folder / OWNER_FILE).write_text(json.dumps(owner))
    return folder


def test_only_the_staging_folders_of_dead_writers_are_removed(tmp_path: Path) -> None:
    repos.write_add_one(tmp_path)
    dead_root = _staged_by_a_process_that_died(tmp_path, "new_model")
    dead_inside = _staged_by_a_process_that_died(tmp_path / "add_one", "add_one")
    live = staging_folder(tmp_path, "being_written")  # this process: a writer still at work
    young_foreign = _foreign(tmp_path, "a", age_s=60)
    old_foreign = _foreign(tmp_path, "b", age_s=FOREIGN_MAX_AGE_S + 60)
    unowned_old = tmp_path / ".staging-c-n0own3r"
    unowned_old.mkdir()
    os.utime(unowned_old, (time.time() - FOREIGN_MAX_AGE_S - 60,) * 2)
    assert writer_is_dead(dead_root) and not writer_is_dead(live)

    removed = remove_dead_staging(tmp_path, log=lambda _: None)

    assert sorted(removed) == sorted([dead_root, dead_inside, old_foreign, unowned_old])
    assert live.is_dir() and young_foreign.is_dir() and (tmp_path / "add_one" / "config.pbtxt").is_file()


def test_a_model_swapped_out_by_a_writer_that_died_is_put_back(tmp_path: Path) -> None:
    """replace_folder moves the old model into staging, then the new one into place: killed in
    between, the model's only copy is in staging, and it is restored rather than removed."""
    repos.write_add_one(tmp_path, "step")
    old = _staged_by_a_process_that_died(tmp_path, "step-old")
    (tmp_path / "step").rename(old / "step")

    remove_dead_staging(tmp_path, log=lambda _: None)

    assert (tmp_path / "step" / "config.pbtxt").is_file() and not old.exists()


def test_replace_folder_leaves_no_staging_and_no_owner_file(tmp_path: Path) -> None:
    for text in ("name: 'step'\n", "name: 'step' # again\n"):
        replace_folder(tmp_path, "step", lambda folder, text=text: (folder / "config.pbtxt").write_text(text))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step"]
    assert sorted(p.name for p in (tmp_path / "step").iterdir()) == ["config.pbtxt"]


@pytest.mark.triton
def test_a_start_under_model_control_none_removes_what_a_killed_export_left(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repos.write_add_one(repo)
    left = _staged_by_a_process_that_died(repo, "new_model")
    repos.write_broken(tmp_path / "scratch", "half", "a half-written version")
    for child in (tmp_path / "scratch" / "half").iterdir():
        child.rename(left / child.name)
    server = start_server(repo, model_control=ModelControl.NONE)
    try:
        assert server.model_states()["add_one"] == "READY"
        assert not left.exists()
    finally:
        server.stop()
