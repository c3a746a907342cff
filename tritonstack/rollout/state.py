"""The split of one model between its primary and candidate versions, and the rollout's log.

Both live beside the model in the repository, so every router that serves it (one per Triton
replica sharing the repository) reads the same split, and the record outlives the controller:

* ``REPO/MODEL/rollout.json``: the live split, replaced atomically; the router re-reads it when it
  changes (within ``REFRESH_S``), so a change needs no reload and fails no request;
* ``REPO/MODEL/rollout.jsonl``: one JSON line per event (start, step, breach, rollback, promote),
  appended and flushed before the controller acts on it.

Triton ignores both: only numeric folders in a model folder are versions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from tritonstack.converters.repository import as_if_created
from tritonstack.rollout.errors import BadRequest
from tritonstack.serving.split import STATE_FILE, Split

LOG_FILE = "rollout.jsonl"


def read_split(model_dir: Path) -> Split | None:
    path = Path(model_dir) / STATE_FILE
    try:
        return Split.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{path} is not a rollout state ({exc}); delete it and start again") from exc


def write_split(model_dir: Path, split: Split) -> Split:
    """Replace the live split atomically (a router never reads half a file)."""
    split = dataclasses.replace(split, changed_at=time.time())
    path = Path(model_dir) / STATE_FILE
    fd, tmp = tempfile.mkstemp(prefix=f".{STATE_FILE}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(split.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        as_if_created(Path(tmp))  # the router may run as another user (the images: uid 1000)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return split


def clear_split(model_dir: Path) -> None:
    (Path(model_dir) / STATE_FILE).unlink(missing_ok=True)


def log_event(model_dir: Path, event: str, **fields: object) -> dict:
    """Append one event to the rollout log, flushed to disk before the caller acts on it."""
    record = {"time": round(time.time(), 3), "event": event, **fields}
    with open(Path(model_dir) / LOG_FILE, "ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":  # a line a crash cut short stays alone on its line
                f.write(b"\n")
        f.write((json.dumps(record, sort_keys=True, default=str) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())
    return record


def read_log(model_dir: Path) -> list[dict]:
    path = Path(model_dir) / LOG_FILE
    if not path.is_file():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line cut short by a crash: the events before it still stand
    return events
