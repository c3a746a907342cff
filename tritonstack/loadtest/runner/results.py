"""From recorded windows to the run's SLO window and verdicts (pure; shared by Locust and the CLI).

The SLO window of a staged campaign is the union of its measured stages (each after its warm-up);
that of a find-max campaign is its best passing step. A campaign without measured stages is
judged on all of them. SLOs with an aggregate (``max(p99_ms) < 100``) are judged on each of the
windows that make up the SLO window.
"""

from __future__ import annotations

from typing import Any

from tritonstack.loadtest.campaign.slo import Verdict, evaluate
from tritonstack.loadtest.campaign.spec import Campaign
from tritonstack.loadtest.runner import stats


def slo_parts(campaign: Campaign, windows: list[dict[str, Any]],
              find_max: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The windows the SLO window is made of, in the order they ran (what ``max(...)`` and the
    other aggregates of an SLO run over)."""
    if campaign.find_max:
        return [find_max] if find_max else []
    return [w for w in windows if w.get("measured", True)]


def slo_window(campaign: Campaign, windows: list[dict[str, Any]],
               find_max: dict[str, Any] | None) -> tuple[dict[str, dict[str, float]], float]:
    """The per-name metrics the SLOs are checked against, and the window's length in seconds."""
    parts = slo_parts(campaign, windows, find_max)
    if not parts:
        return {}, 0.0
    if campaign.find_max:
        return parts[0]["stats"], parts[0]["duration_s"]
    duration = sum(w["duration_s"] for w in parts)
    return stats.summarize(stats.merge([w["counts"] for w in parts]), duration), duration


def verdicts(campaign: Campaign, windows: list[dict[str, Any]],
             find_max: dict[str, Any] | None) -> list[Verdict]:
    """Every SLO of the campaign checked on its SLO window (aggregates: on each of its windows)."""
    rows, _ = slo_window(campaign, windows, find_max)
    return evaluate(list(campaign.slos), rows, slo_parts(campaign, windows, find_max))
