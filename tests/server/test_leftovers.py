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


def test_a_stub_whose_tritonserver_is_gone_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed launcher takes its Triton down with SIGKILL; busy stubs do not notice and ran on
    (the fault matrix left two MiniLM stubs for half an hour). A stand-in stub, reparented as one
    is when its Triton dies, is killed by the next start's sweep."""
    from tritonstack.server.leftovers import remove_orphaned_stubs

    stub = tmp_path / "backends" / "python" / "triton_python_backend_stub"  # its argv[0], as Triton starts it
    model_py = tmp_path / "repo" / "m" / "1" / "model.py"
    # A double fork: the stand-in's parent exits, as a killed Triton does.
    code = ("import subprocess, sys; p = subprocess.Popen([sys.argv[1], '-c', 'import time; time.sleep(300)', "
            "sys.argv[2], 'm_0_0', 'DEFAULT'], executable=sys.executable, start_new_session=True, "
            "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)")
    pid = int(subprocess.run([sys.executable, "-c", code, str(stub), str(model_py)], capture_output=True, text=True,
                             check=True).stdout)
    import psutil

    assert psutil.Process(pid).is_running()
    killed = remove_orphaned_stubs(log=lambda _: None)
    assert pid in killed
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_only_unmapped_old_shared_memory_regions_are_removed(tmp_path: Path) -> None:
    import mmap

    from tritonstack.server.leftovers import SHM_MIN_AGE_S, SHM_PREFIX, remove_unmapped_shm_regions

    old, fresh, mapped, other = (tmp_path / name for name in (f"{SHM_PREFIX}old", f"{SHM_PREFIX}fresh",
                                                               f"{SHM_PREFIX}mapped", "not_a_region"))
    for path in (old, fresh, mapped, other):
        path.write_bytes(b"\0" * 4096)
    for path in (old, mapped, other):
        os.utime(path, (time.time() - SHM_MIN_AGE_S - 60,) * 2)
    with open(mapped, "r+b") as f, mmap.mmap(f.fileno(), 4096):  # a live stub's region
        removed = remove_unmapped_shm_regions(log=lambda _: None, shm_dir=tmp_path)
    assert removed == [old]
    assert fresh.exists() and mapped.exists() and other.exists()
