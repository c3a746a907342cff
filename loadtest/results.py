"""From recorded windows to the run's SLO window and verdicts (pure; shared by Locust and the CLI).

The SLO window of a staged campaign is the union of its measured stages (each after its warm-up);
that of a find-max campaign is its best passing step. A campaign without measured stages is
judged on all of them.
"""

from __future__ import annotations

from typing import Any

from loadtest import stats
from loadtest.campaign import Campaign
from loadtest.slo import Verdict, evaluate


def slo_window(campaign: Campaign, windows: list[dict[str, Any]],
               find_max: dict[str, Any] | None) -> tuple[dict[str, dict[str, float]], float]:
    """The per-name metrics the SLOs are checked against, and the window's length in seconds."""
    if campaign.find_max:
        if not find_max:
            return {}, 0.0
        return find_max["stats"], find_max["duration_s"]
    parts = [w for w in windows if w.get("measured", True)]
    if not parts:
        return {}, 0.0
    duration = sum(w["duration_s"] for w in parts)
    return stats.summarize(stats.merge([w["counts"] for w in parts]), duration), duration


def verdicts(campaign: Campaign, windows: list[dict[str, Any]],
             find_max: dict[str, Any] | None) -> list[Verdict]:
    """Every SLO of the campaign checked on its SLO window."""
    rows, _ = slo_window(campaign, windows, find_max)
    return evaluate(list(campaign.slos), rows)
