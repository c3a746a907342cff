"""Live progress of a campaign in the terminal: stage, elapsed/total, rps, p50/p99, failures.

Read every ``interval_s`` from Locust's own stats history (``locust_stats_history.csv``, which it
appends to while it runs), drawn with rich on stderr, so stdout stays the result. Off with
``--quiet`` or when stderr is not a terminal (CI logs get the summary only).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.text import Text

from tritonstack.loadtest.campaign.spec import Campaign
from tritonstack.loadtest.report.html import history


def latest(history_csv: Path) -> dict[str, float] | None:
    """The newest all-traffic row of Locust's stats history (:func:`loadtest.html_report.history`)."""
    rows = history(history_csv)
    return rows[-1] if rows else None


def stage_at(campaign: Campaign, elapsed_s: float) -> str:
    """``name (i/n)`` of the stage running ``elapsed_s`` into the campaign."""
    if campaign.find_max is not None:
        return "find-max search"
    start = 0.0
    for i, stage in enumerate(campaign.stages):
        start += stage.duration_s
        if elapsed_s < start:
            return f"{stage.name} ({i + 1}/{len(campaign.stages)})"
    return "finishing"


def line(campaign: Campaign, elapsed_s: float, row: dict[str, float] | None) -> str:
    total = campaign.duration_s
    head = f"{campaign.name}: {stage_at(campaign, elapsed_s)}  {elapsed_s:4.0f}/{total:.0f} s"
    if row is None:
        return head + "  starting..."

    def ms(v: float) -> str:
        return "–" if v != v else f"{v:.0f} ms"  # NaN before the first response

    return (f"{head}  {row['rps']:7.1f} rps  p50 {ms(row['p50'])}  p99 {ms(row['p99'])}  "
            f"failed/refused {row['failures']:.0f} of {row['requests']:.0f}  users {row['users']:.0f}")


class LiveProgress:
    """A thread redrawing :func:`line` until stopped; does nothing when disabled."""

    def __init__(self, campaign: Campaign, history_csv: Path, *, enabled: bool, interval_s: float = 2.0,
                 console: Console | None = None) -> None:
        self.campaign, self.history_csv = campaign, history_csv
        self.enabled, self.interval_s = enabled, interval_s
        self.console = console or Console(stderr=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        with Live(Text(line(self.campaign, 0.0, None)), console=self.console, transient=False,
                  refresh_per_second=4) as live:
            while not self._stop.wait(self.interval_s):
                live.update(Text(line(self.campaign, time.monotonic() - start, latest(self.history_csv))))

    def __enter__(self) -> LiveProgress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
