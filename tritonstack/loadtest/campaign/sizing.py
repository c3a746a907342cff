"""Campaigns sized by the machine: rates written as multiples of the server's capacity.

A campaign file may write a stage's rate as ``rps = "3x capacity"`` and an SLO's threshold as
``"max(rps) >= 2.4x capacity"``. Before it runs, the capacity (requests/s the server sustains for
the campaign's traffic with p99 under the probe's bound and nothing refused) comes from, in order:

1. ``--capacity RPS``;
2. ``--capacity-from DIR``: a find-max report's summary.json (its highest passing rate);
3. a measurement on the target itself (:func:`ceiling_probe`, then :func:`find_max_probe`): a
   closed-loop window gives the ceiling C, then a find-max of the same traffic from 0.5 C to
   1.25 C in steps of 0.25 C, with a few bisections; bounded by ``[capacity]`` (CapacityProbe).

:func:`resolve` then turns every relative rate and threshold into requests/s. Pure, except
:func:`from_report`, which reads a file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tritonstack.loadtest.campaign.slo import Slo
from tritonstack.loadtest.campaign.spec import MAX_RPS, Campaign, FindMax, Stage
from tritonstack.loadtest.errors import CampaignError


@dataclasses.dataclass(frozen=True)
class Capacity:
    """The capacity a campaign's relative rates are resolved against, and where it came from."""

    rps: float
    source: str


def given(rps: float) -> Capacity:
    """``--capacity RPS``."""
    if not 0 < rps <= MAX_RPS:
        raise CampaignError(f"--capacity must be requests/s in (0, {MAX_RPS}], got {rps:g}")
    return Capacity(rps, f"--capacity {rps:g}")


def from_report(folder: str | Path) -> Capacity:
    """``--capacity-from DIR``: the highest passing rate of a find-max run's summary.json."""
    from tritonstack.loadtest.report import summary

    found = summary.read(folder)
    if found.find_max is None:
        raise CampaignError(f"--capacity-from {folder}: campaign {found.campaign!r} is not a find-max run "
                            "(its summary has no find_max result); pass a `loadtest find-max` report folder")
    return Capacity(found.find_max.max_rps,
                    f"--capacity-from {folder} (find-max {found.campaign!r} on {found.machine.label})")


def resolve(campaign: Campaign, capacity: float) -> Campaign:
    """The campaign with every rate and SLO threshold relative to the capacity in requests/s."""
    if not campaign.sized_by_capacity:
        return campaign
    if not capacity > 0:
        raise CampaignError(f"capacity must be above 0 requests/s, got {capacity:g}")
    stages = []
    for stage in campaign.stages:
        if stage.capacity_factor is not None:
            rps = stage.capacity_factor * capacity
            if rps > MAX_RPS:
                raise CampaignError(f"stage {stage.name!r}: {stage.capacity_factor:g}x capacity is {rps:,.0f} rps, "
                                    f"over the limit of {MAX_RPS:,}")
            stage = dataclasses.replace(stage, rps=round(rps, 1))
        stages.append(stage)
    slos = [*campaign.slos, *(Slo.parse(f"{head}{factor * capacity:.1f}") for head, factor in campaign.capacity_slos)]
    return dataclasses.replace(campaign, stages=tuple(stages), slos=tuple(slos), capacity_slos=())


def ceiling_probe(campaign: Campaign) -> Campaign:
    """One closed-loop window of the campaign's traffic at ``[capacity].users``: the ceiling."""
    probe = campaign.capacity_probe
    stage = Stage(name=f"ceiling ({probe.users} users, closed loop)", duration_s=probe.step_s + probe.warmup_s,
                  users=probe.users, warmup_s=probe.warmup_s)
    return Campaign(name=f"{campaign.name}-capacity-ceiling", traffic=campaign.traffic, stages=(stage,),
                    target=campaign.target, processes=campaign.processes,
                    description=f"capacity probe of {campaign.name}: closed-loop ceiling",
                    response_cache_mb=campaign.response_cache_mb)


def find_max_probe(campaign: Campaign, ceiling_rps: float) -> Campaign:
    """A find-max of the campaign's traffic from 0.5x to 1.25x the ceiling, p99 under the probe's
    bound and nothing refused (a step that sheds is past the capacity)."""
    if not ceiling_rps > 0:
        raise CampaignError("the capacity probe's closed-loop window completed no request")
    probe = campaign.capacity_probe
    step = max(0.25 * ceiling_rps, 1.0)
    search = FindMax(users=probe.users, start_rps=round(0.5 * ceiling_rps, 1), step_rps=round(step, 1),
                     max_rps=round(0.5 * ceiling_rps + 3 * step, 1), step_s=probe.step_s, warmup_s=probe.warmup_s,
                     bisect_rounds=probe.bisect_rounds, min_achieved=0.95)
    return Campaign(name=f"{campaign.name}-capacity", traffic=campaign.traffic, find_max=search,
                    slos=(Slo.parse(f"p99_ms < {probe.p99_ms:g}"), Slo.parse("error_rate <= 0")),
                    target=campaign.target, processes=campaign.processes,
                    description=f"capacity probe of {campaign.name}: find-max around the ceiling",
                    response_cache_mb=campaign.response_cache_mb)
