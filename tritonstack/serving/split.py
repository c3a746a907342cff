"""A model's rollout split, as the router step reads it: the schema of ``REPO/MODEL/rollout.json``
(written by ``python -m tritonstack.rollout``), the file re-read when it changes, and which arm
answers a request.

Placement by key is a hash, not a table: every router (one per Triton replica) places a user
the same way with no shared state, and raising the weight only moves users towards the
candidate (a user in the candidate's 5 % stays there at 25 %).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import threading
import time
from pathlib import Path

from .errors import InvalidSplit

STATE_FILE = "rollout.json"
REFRESH_S = 0.1  # the router re-reads the split file at most this often
MODES = ("split", "shadow", "canary")
KEY_PARAMETER = "rollout_key"  # the request parameter that makes the split sticky


def percentage(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise InvalidSplit(f"{name} must be a percentage from 0 to 100, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class Split:
    """Who answers: ``weight`` % of requests go to ``candidate``, the rest to ``primary``.

    ``compare`` % of requests are also sent to the other arm, whose answer is compared with the
    served one and dropped (shadow traffic: ``weight`` 0, ``compare`` 100). A request that carries
    the parameter ``key`` is placed by a hash of its value, so one user sees one arm.
    """

    model: str
    primary: int
    candidate: int | None = None
    weight: float = 0.0
    compare: float = 0.0
    mode: str = "split"
    key: str = KEY_PARAMETER
    changed_at: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise InvalidSplit(f"model must be a model name, got {self.model!r}")
        for name in ("primary", "candidate"):
            value = getattr(self, name)
            if (value is not None or name == "primary") and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidSplit(f"{name} must be a version number (>= 1), got {value!r}")
        if not isinstance(self.key, str) or not self.key:
            raise InvalidSplit(f"key must be the name of a request parameter, got {self.key!r}")
        if isinstance(self.changed_at, bool) or not isinstance(self.changed_at, int | float):
            raise InvalidSplit(f"changed_at must be a time in seconds, got {self.changed_at!r}")
        for name in ("weight", "compare"):
            percentage(name, getattr(self, name))
        if self.mode not in MODES:
            raise InvalidSplit(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.candidate is None and (self.weight or self.compare):
            raise InvalidSplit(f"{self.model}: a split needs a candidate version")
        if self.candidate is not None and self.candidate == self.primary:
            raise InvalidSplit(f"{self.model}: the candidate is the primary (version {self.primary}); "
                             "pick another version")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Split:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidSplit(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidSplit(f"a split is a JSON object, got a JSON {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


class SplitFile:
    """The split in ``rollout.json``, re-read within ``REFRESH_S`` of a change (one ``stat`` per
    check). A file that disappears or is not a valid split leaves the last good split in force;
    ``refused`` counts the versions of the file that were not."""

    def __init__(self, path: Path, refresh_s: float = REFRESH_S):
        self.path, self.refresh_s = Path(path), refresh_s
        self._stamp: tuple[int, int] | None = None
        self.refused = 0  # versions of the file that were not a split (the last good one held)
        self._checked = 0.0
        self._split = self._read()
        if self._split is None:
            raise FileNotFoundError(f"{self.path} is missing or unreadable: start the rollout with "
                                    "python -m tritonstack.rollout")
        self._lock = threading.Lock()

    def _read(self) -> Split | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return None
        self._stamp = stamp  # a bad file is refused once, and read again when it changes
        try:
            return Split.from_json(self.path.read_text())
        except (OSError, ValueError, TypeError):  # InvalidSplit is a ValueError
            self.refused += 1
            return None

    def current(self) -> Split:
        now = time.monotonic()
        if now - self._checked >= self.refresh_s:
            with self._lock:
                self._checked = now
                fresh = self._read()
                if fresh is not None:
                    self._split = fresh
        return self._split


def bucket(model: str, key: str) -> float:
    """A stable position in [0, 100) for ``key`` (salted by model: arms of two models are
    independent)."""
    digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 * 100


def choose(split: Split, key: str | None, rng: random.Random) -> int:
    """The version that answers: by the key's bucket when there is one, else at random."""
    if split.candidate is None or split.weight <= 0:
        return split.primary
    if split.weight >= 100:
        return split.candidate
    position = bucket(split.model, key) if key else rng.random() * 100
    return split.candidate if position < split.weight else split.primary


def compared(split: Split, rng: random.Random) -> bool:
    return split.candidate is not None and split.compare > 0 and rng.random() * 100 < split.compare
