"""Progress bars for the countable work of an export (evaluation and calibration batches).

Off by default (library use, tests, logs); the CLI turns it on when stderr is a terminal and
neither ``--quiet`` nor ``--json`` was given. Bars go to stderr and vanish when done, leaving
the one-line step summaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

T = TypeVar("T")
_enabled = False


def set_enabled(enabled: bool) -> None:
    global _enabled
    _enabled = enabled


def bar(items: Iterable[T], label: str) -> Iterator[T]:
    """``items``, with a transient progress bar on stderr when progress is on."""
    if not _enabled:
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    total = len(items) if isinstance(items, Sized) else None
    yield from track(items, description=f"  {label}", total=total, transient=True,
                     console=Console(stderr=True))
