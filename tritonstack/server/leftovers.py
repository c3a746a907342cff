"""What a killed writer leaves in a model repository, removed before Triton scans it.

The writers (``tritonstack.converters``, ``tritonstack.ensembles``) assemble a new version or
model in a hidden ``.staging-*`` folder beside its place, then rename it in; a writer killed in
between leaves the folder. In explicit model control the launcher never loads hidden folders,
but under ``--model-control none`` or ``poll`` Triton loads every folder it finds, and one left
at the root fails the start. So each start removes the staging folders whose writer is dead.

A staging folder names its writer in ``.owner`` (JSON: ``host``, ``pid``, ``started``, epoch
seconds). A writer on this host is dead when no process with that pid started at that time
runs; a writer on another host (a repository shared with a container) when its folder is older
than :data:`FOREIGN_MAX_AGE_S`. A folder without ``.owner`` counts as foreign.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

STAGING_PREFIX = ".staging-"
OWNER_FILE = ".owner"
FOREIGN_MAX_AGE_S = 3600.0


def staging_folders(repository: Path) -> list[Path]:
    """``.staging-*`` folders at the root of ``repository`` and inside its model folders."""
    repository = Path(repository)
    found = []
    for parent in [repository, *(p for p in repository.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        found += [p for p in parent.iterdir() if p.is_dir() and p.name.startswith(STAGING_PREFIX)]
    return sorted(found)


def writer_is_dead(folder: Path, *, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    try:
        owner = json.loads((Path(folder) / OWNER_FILE).read_text())
        host, pid, started = str(owner["host"]), int(owner["pid"]), float(owner["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return now - Path(folder).stat().st_mtime > FOREIGN_MAX_AGE_S
    if host != socket.gethostname():
        return now - started > FOREIGN_MAX_AGE_S
    return not _running(pid, started)


def _running(pid: int, started: float) -> bool:
    import psutil

    try:
        # A pid the kernel gave to a later process is not the writer.
        return psutil.Process(pid).create_time() <= started + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _restore_swapped_out(repository: Path, folder: Path, log: Callable[[str], None]) -> None:
    """A writer replacing a model moves the old folder into staging, then the new one into place:
    killed between the two, the model's only copy is in staging. Put it back."""
    if folder.parent != repository:
        return
    for model in (p for p in folder.iterdir() if p.is_dir() and (p / "config.pbtxt").is_file()):
        if not (repository / model.name).exists():
            os.replace(model, repository / model.name)
            log(f"restored {repository / model.name} from {folder}: its writer died while replacing it")


def remove_dead_staging(repository: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Remove the staging folders of dead writers; returns them. A read-only repository (an
    image's ``:ro`` mount) is left as it is."""
    removed = []
    for folder in staging_folders(repository):
        if not writer_is_dead(folder):
            continue
        try:
            _restore_swapped_out(Path(repository), folder, log)
            shutil.rmtree(folder)
        except OSError as exc:
            log(f"note: cannot remove {folder}, left by a killed export ({exc.strerror}); remove it by hand")
            continue
        log(f"removed {folder}: left by a writer that died before it finished")
        removed.append(folder)
    return removed


# What a Triton killed with SIGKILL leaves on the host: its Python-backend stubs, which a busy stub
# does not notice (measured: two MiniLM stubs ran on for half an hour), and their shared-memory
# regions (166 of them, 167 MB, on a machine after a day of tests). Triton removes both on a clean
# exit; after a kill, the next start does.
SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"
SHM_MIN_AGE_S = 60.0  # a region Triton has just created may not be mapped yet


def remove_orphaned_stubs(log: Callable[[str], None] = print) -> list[int]:
    """Kill the backend stubs whose tritonserver is gone (their parent is not a tritonserver)."""
    import psutil

    from tritonstack.server.stubs import parse_cmdline

    killed = []
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        try:
            if parse_cmdline(proc.info["cmdline"] or []) is None:
                continue
            parent = psutil.Process(proc.info["ppid"]) if proc.info["ppid"] else None
            if parent is not None and parent.name() == "tritonserver":
                continue
            proc.kill()
            killed.append(proc)
        except psutil.Error:
            continue
    psutil.wait_procs(killed, timeout=3)  # their mappings go with them
    if killed:
        log(f"killed {len(killed)} backend stub(s) left running by a tritonserver that was killed: "
            f"{[p.pid for p in killed]}")
    return [p.pid for p in killed]


def remove_unmapped_shm_regions(log: Callable[[str], None] = print, shm_dir: Path = SHM_DIR) -> list[Path]:
    """Remove the stubs' shared-memory regions that no live process maps (older than a minute)."""
    try:
        regions = [p for p in Path(shm_dir).iterdir() if p.name.startswith(SHM_PREFIX)]
    except OSError:
        return []
    if not regions:
        return []
    mapped = _mapped_files()
    now = time.time()
    removed = []
    for region in regions:
        try:
            if str(region) in mapped or now - region.stat().st_mtime < SHM_MIN_AGE_S:
                continue
            region.unlink()
            removed.append(region)
        except OSError:
            continue
    if removed:
        total = len(removed)
        log(f"removed {total} shared-memory region(s) of killed backend stubs from {shm_dir}")
    return removed


def _mapped_files() -> set[str]:
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:
            continue
        mapped.update(line.split(None, 5)[5] for line in text.splitlines()
                      if SHM_PREFIX in line and len(line.split(None, 5)) == 6)
    return mapped
