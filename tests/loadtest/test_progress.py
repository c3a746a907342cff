"""Live campaign progress, read from Locust's stats history (no Locust needed)."""

from __future__ import annotations

import io
import time
from pathlib import Path

from rich.console import Console

from tritonstack.loadtest.campaign import spec as campaigns
from tritonstack.loadtest.runner.progress import LiveProgress, latest, line, stage_at

HEADER = ("Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
          "99.99%,100%,Total Request Count,Total Failure Count\n")


def _campaign():
    return campaigns.parse({"traffic": [{"pipeline": "embed"}],
                            "stages": [{"name": "warm", "duration_s": 5, "users": 2, "rps": 10},
                                       {"name": "hold", "duration_s": 20, "users": 4, "rps": 50}]}, "demo")


def _history(tmp_path: Path) -> Path:
    path = tmp_path / "locust_stats_history.csv"
    path.write_text(HEADER + "1,0,,Aggregated,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0\n"
                    "2,4,,Aggregated,49.5,0.5,8,9,9,10,11,12,13,14,20,20,21,990,3\n")
    return path


def test_the_line_names_the_stage_the_rate_and_the_failures(tmp_path) -> None:
    c = _campaign()
    assert (stage_at(c, 2), stage_at(c, 6), stage_at(c, 30)) == ("warm (1/2)", "hold (2/2)", "finishing")
    row = latest(_history(tmp_path))
    text = line(c, 12, row)
    assert text.startswith("demo: hold (2/2)    12/25 s")
    assert "49.5 rps" in text and "p50 8 ms" in text and "p99 14 ms" in text
    assert "failed/refused 3 of 990" in text
    assert line(c, 0, None).endswith("starting...") and latest(tmp_path / "none.csv") is None


def test_live_progress_draws_on_its_console_and_only_when_enabled(tmp_path) -> None:
    stream = io.StringIO()
    with LiveProgress(_campaign(), _history(tmp_path), enabled=True, interval_s=0.05,
                      console=Console(file=stream, force_terminal=True, width=160)):
        time.sleep(0.3)
    assert "49.5 rps" in stream.getvalue()
    quiet = io.StringIO()
    with LiveProgress(_campaign(), _history(tmp_path), enabled=False, console=Console(file=quiet)):
        time.sleep(0.1)
    assert quiet.getvalue() == ""
