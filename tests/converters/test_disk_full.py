"""A disk that fills up during an export, for real: a small tmpfs mounted for the test.

The export fails with one line naming the problem and the remedy (exit 3, environment). It
leaves nothing that Triton would load or that the next start must clean up: no version folder,
no staging folder, the old ``config.pbtxt``. What was already served keeps serving, through
the failed export and through a reload after it.

Mounting a tmpfs needs root (CAP_SYS_ADMIN); without it these tests skip and say so.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tritonstack.converters import repository
from tritonstack.converters.api import ExportSpec, export
from tritonstack.converters.cli import main
from tritonstack.converters.repository import existing_versions
from tritonstack.server.leftovers import staging_folders

ROOT = Path(__file__).parents[2]
SOURCE = "tests.converters.tiny:classifier_factory"
FILLER = "filler"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a disk that really fills up (ENOSPC from the kernel, no mock)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root with CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill ``disk`` until ``leave`` bytes are free (tmpfs counts whole 4 KiB pages)."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / FILLER, "ab") as f:
        f.write(b"\0" * max(free - leave, 0))
    assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize <= leave


def snapshot(repo: Path) -> dict[str, str]:
    """Every path under the repository (the filler aside), with the hash of each file."""
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(repo.rglob("*")) if p.name != FILLER}


def export_v1(repo: Path, work: Path) -> None:
    export(ExportSpec(SOURCE, "cls", repository=repo, work_dir=work), progress=None)
    assert existing_versions(repo / "cls") == [1]


def assert_one_line_no_space(code: int, err: str, remedy: str) -> None:
    assert code == 3, err
    assert err.startswith("NoSpace: No space left on device"), err
    assert remedy in err and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("leave", [0, 40_000], ids=["full", "fills-mid-version"])
@pytest.mark.parametrize("model", ["cls", "new"], ids=["new-version", "new-model"])
def test_a_full_disk_fails_the_export_and_leaves_the_repository_as_it_was(capsys, tmp_path, disk, leave, model):
    """``full``: not even the staging folder's owner file fits. ``fills-mid-version``: about a third
    of the version fits (it needs about 100 kB), the rest hits ENOSPC."""
    work = tmp_path / "work"  # on the real disk: only the version's write meets the full one
    export_v1(disk, work)
    fill(disk, leave)
    before = snapshot(disk)
    code = main(["export", SOURCE, "--name", model, "--model-repository", str(disk), "--work-dir", str(work)])
    _, err = capsys.readouterr()
    assert_one_line_no_space(code, err, "--model-repository DIR on a disk with room")
    assert "nothing of it was left" in err
    assert snapshot(disk) == before  # no version, no staging folder, the same config.pbtxt
    assert staging_folders(disk) == []
    (disk / FILLER).unlink()  # with room again, the same command succeeds
    code = main(["export", SOURCE, "--name", model, "--model-repository", str(disk), "--work-dir", str(work)])
    assert code == 0, capsys.readouterr().err
    assert existing_versions(disk / model) == ([1, 2] if model == "cls" else [1])


def test_a_full_work_folder_is_an_environment_problem_not_a_crash(capsys, tmp_path, disk):
    fill(disk, 0)
    repo = tmp_path / "repo"
    code = main(["export", SOURCE, "--name", "cls", "--model-repository", str(repo),
                 "--work-dir", str(disk / "work")])
    _, err = capsys.readouterr()
    assert_one_line_no_space(code, err, "--work-dir DIR to a disk with room")
    assert not (repo / "cls").exists()


def test_a_version_moved_in_is_taken_back_out_when_the_rest_fails(capsys, tmp_path, monkeypatch):
    """The one write after the version's rename (the warmup files beside config.pbtxt) failing
    with ENOSPC. No small disk hits that point on cue, so the failure is injected there; the
    cases above fill a real disk."""
    export_v1(tmp_path / "repo", tmp_path / "work")
    before = snapshot(tmp_path / "repo")

    def full(model_dir: Path, config: object) -> None:
        assert (model_dir / "2").is_dir()  # the version is in place when this runs
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(model_dir / "warmup"))

    monkeypatch.setattr(repository, "write_warmup_files", full)
    code = main(["export", SOURCE, "--name", "cls", "--model-repository", str(tmp_path / "repo"),
                 "--work-dir", str(tmp_path / "work")])
    assert_one_line_no_space(code, capsys.readouterr().err, "--model-repository DIR on a disk with room")
    assert snapshot(tmp_path / "repo") == before


@pytest.mark.triton
def test_the_served_version_keeps_serving_through_an_export_that_fills_the_disk(tmp_path, disk):
    """The real command line, while Triton serves version 1 from the same disk under traffic;
    then a reload, which would pick up any version the export left behind."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from tests.conftest import start_server
    from tritonstack.server import ModelControl

    work = tmp_path / "work"
    export_v1(disk, work)
    image = np.random.default_rng(0).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
    tensor = grpcclient.InferInput("image", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    results: Counter[str] = Counter()
    stop = threading.Event()

    def traffic(url: str) -> None:
        with grpcclient.InferenceServerClient(url) as client:
            while not stop.is_set():
                try:
                    client.infer("cls", [tensor])
                    results["ok"] += 1
                except InferenceServerException as exc:
                    results[f"error: {exc.message()}"] += 1

    server = start_server(disk, model_control=ModelControl.EXPLICIT, load_models=("cls",))
    try:
        with grpcclient.InferenceServerClient(server.grpc_url) as admin:
            fill(disk, 40_000)
            before = snapshot(disk)
            thread = threading.Thread(target=traffic, args=(server.grpc_url,))
            thread.start()
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "tritonstack.converters", "export", SOURCE, "--name", "cls",
                     "--model-repository", str(disk), "--work-dir", str(work), "--quiet"],
                    capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                    timeout=300)
                admin.load_model("cls")  # a reload: it would load a version the export left
                served_after_reload = results["ok"]
                client = grpcclient.InferenceServerClient(server.grpc_url)
                client.infer("cls", [tensor])
                client.close()
            finally:
                stop.set()
                thread.join()
            err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
            assert proc.returncode == 3, proc.stderr
            assert err.startswith("NoSpace: No space left on device writing version 2 of 'cls'"), proc.stderr
            assert "Traceback" not in proc.stderr
            assert snapshot(disk) == before and staging_folders(disk) == []
            assert admin.is_model_ready("cls", "1") and not admin.is_model_ready("cls", "2")
            index = {(m.name, m.version, m.state) for m in admin.get_model_repository_index().models}
            assert index == {("cls", "1", "READY")}, index
            assert served_after_reload > 0 and set(results) == {"ok"}, results
    finally:
        server.close()
