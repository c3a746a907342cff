"""Which arm answers a request, and whether its answer is also compared with the other arm's.

Placement by key is a hash, not a table: every router (one per Triton replica) places a user
the same way with no shared state, and raising the weight only moves users towards the
candidate (a user in the candidate's 5 % stays there at 25 %).
"""

from __future__ import annotations

import hashlib
import random

from rollout.state import Split


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
