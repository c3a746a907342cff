"""Goodput and accepted latency against concurrency, for ``[concurrency]`` campaigns.

Each level of the sweep is one measured window of N closed-loop users (each sends its next request
as soon as it has an answer or an error: no pacing, no retries, no back-off). Per level:

* offered: attempts per second (answered, refused and failed);
* goodput: successful answers per second;
* refused: requests the server shed for load (UNAVAILABLE: a queue policy's "Exceeds maximum
  queue size" or "Request timeout expired", or the python-ort runner's "overloaded: ..." past
  ``admit_rows``; ``client.is_shed``), per second;
* other errors: every other failure (count and per second);
* accepted p50/p99: response times of the requests not refused (the failures among them
  included; when other errors are 0, as the bundled campaign requires, these are the
  successful requests' times).

Across levels: the *peak* is the level with the highest goodput (the lowest such level on a tie);
the *saturating* level is the lowest level whose goodput is at least ``1 - tolerance`` of the
peak's (tolerance 0.05 unless the campaign says otherwise); each level's *multiple* is its users
divided by the saturating level's, and its *ratio* is its goodput divided by the peak's.

Pure functions over the recorded windows (``summary.json``'s ``windows``), plus the plot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tritonstack.loadtest.campaign.slo import TOTAL, limit
from tritonstack.loadtest.campaign.spec import Campaign

PLOT_FILE = "goodput-vs-concurrency.png"


@dataclasses.dataclass(frozen=True)
class Level:
    """One level of the sweep, measured after its warm-up."""

    users: int
    name: str
    seconds: float
    offered_rps: float
    goodput_rps: float
    refused_rps: float
    other_errors: int
    other_error_rps: float
    p50_ms: float
    p99_ms: float
    server_cpu_pct: float | None
    generator_cpu_pct: float | None

    @classmethod
    def from_window(cls, window: dict[str, Any]) -> Level:
        row = window["stats"].get(TOTAL) or {}
        seconds = float(window["duration_s"])
        other = int(row.get("errors", 0) - row.get("shed", 0))
        return cls(users=int(window["users"]), name=str(window["name"]), seconds=seconds,
                   offered_rps=float(row.get("rps", 0.0)), goodput_rps=float(row.get("goodput_rps", 0.0)),
                   refused_rps=row.get("shed", 0.0) / seconds if seconds > 0 else 0.0,
                   other_errors=other, other_error_rps=other / seconds if seconds > 0 else 0.0,
                   p50_ms=float(row.get("p50_ms", 0.0)), p99_ms=float(row.get("p99_ms", 0.0)),
                   server_cpu_pct=window.get("server_cpu_pct"),
                   generator_cpu_pct=window.get("generator_cpu_pct"))


@dataclasses.dataclass(frozen=True)
class Curve:
    """The levels in order of concurrency, with the peak and the saturating level."""

    levels: tuple[Level, ...]
    tolerance: float = 0.05

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("a goodput curve needs at least one level")

    @property
    def peak(self) -> Level:
        best = max(level.goodput_rps for level in self.levels)
        return next(level for level in self.levels if level.goodput_rps == best)

    @property
    def saturating(self) -> Level:
        """The lowest level whose goodput is within ``tolerance`` of the peak's."""
        floor = (1.0 - self.tolerance) * self.peak.goodput_rps
        return next(level for level in self.levels if level.goodput_rps >= floor)

    @property
    def highest(self) -> Level:
        return self.levels[-1]

    def ratio(self, level: Level) -> float | None:
        """Goodput as a fraction of the peak's (None when nothing was answered at any level)."""
        peak = self.peak.goodput_rps
        return level.goodput_rps / peak if peak > 0 else None

    def multiple(self, level: Level) -> float:
        """Users as a multiple of the saturating level's."""
        return level.users / self.saturating.users

    def at_multiple(self, k: int) -> Level | None:
        """The level with exactly ``k`` times the saturating level's users, if the sweep has one."""
        return next((level for level in self.levels if level.users == k * self.saturating.users), None)

    def to_dict(self) -> dict[str, Any]:
        """summary.json's ``concurrency``: each level with its ratio and multiple; peak, saturation."""
        return {
            "tolerance": self.tolerance, "peak_users": self.peak.users,
            "peak_goodput_rps": self.peak.goodput_rps, "saturating_users": self.saturating.users,
            "highest_users": self.highest.users, "highest_multiple": self.multiple(self.highest),
            "highest_ratio": self.ratio(self.highest),
            "levels": [{**dataclasses.asdict(level), "ratio": self.ratio(level),
                        "multiple": self.multiple(level)} for level in self.levels],
        }


def curve(campaign: Campaign, windows: Sequence[dict[str, Any]]) -> Curve | None:
    """The sweep's curve from its recorded windows; None for a campaign without ``[concurrency]``
    or a run that recorded no level."""
    if campaign.concurrency is None:
        return None
    levels = sorted((Level.from_window(w) for w in windows), key=lambda level: level.users)
    return Curve(tuple(levels), campaign.concurrency.saturation_tolerance) if levels else None


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(fraction: float | None) -> str:
    return "–" if fraction is None else f"{100 * fraction:.1f} %"


def headline(c: Curve) -> str:
    """The peak, the saturating level, the levels at 2x and 4x it, and where the highest level stands."""
    high = c.highest
    multiples = []
    for k in (2, 4):
        level = c.at_multiple(k)
        multiples.append(f"At {k}x ({k * c.saturating.users} users): " + (
            "not measured" if level is None else
            f"goodput {_pct(c.ratio(level))} of the peak, accepted p99 {level.p99_ms:.0f} ms"))
    return (f"Peak goodput {c.peak.goodput_rps:,.0f}/s at {c.peak.users} users; saturating level "
            f"{c.saturating.users} users (the lowest with goodput >= {100 * (1 - c.tolerance):.0f} % of the "
            f"peak). {'. '.join(multiples)}. Highest level {high.users} users = "
            f"{c.multiple(high):.2g}x the saturating level: goodput {_pct(c.ratio(high))} of the peak, "
            f"accepted p99 {high.p99_ms:.0f} ms.")


HEADERS = ["users", "x saturating", "offered /s", "goodput /s", "of peak", "refused /s", "other errors",
           "p50 ms", "p99 ms", "server CPU %", "generator CPU %"]


def rows(c: Curve) -> list[list[str]]:
    """The per-level table's cells, as text (report.md and report.html share them)."""
    return [[str(level.users), f"{c.multiple(level):.2g}", _num(level.offered_rps),
             _num(level.goodput_rps), _pct(c.ratio(level)), _num(level.refused_rps),
             f"{level.other_errors:,}", f"{level.p50_ms:.0f}", f"{level.p99_ms:.0f}",
             _num(level.server_cpu_pct), _num(level.generator_cpu_pct)] for level in c.levels]


DEFINITIONS = ("Closed loop: each user sends its next request as soon as it has an answer or an error "
               "(no pacing, no retries, no back-off). Offered: attempts/s. Goodput: successful answers/s. "
               "Refused: requests the server shed for load (UNAVAILABLE), per second. Accepted "
               "p50/p99: requests not refused (with no other errors, the successful ones). CPU: percent "
               "of one core.")


def markdown(c: Curve) -> list[str]:
    """report.md's section: definitions, the headline, the table and the plot."""
    lines = ["## Goodput against concurrency", "", DEFINITIONS, "", headline(c), "",
             "| " + " | ".join(HEADERS) + " |", "|---|" + "---:|" * (len(HEADERS) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(c)]
    return lines + ["", f"![goodput and accepted p99 against concurrency]({PLOT_FILE})"]


def plot(c: Curve, path: Path, title: str, p99_limit: float | None = None) -> None:
    """Goodput (top) and accepted p50/p99 (bottom) against concurrency, one point per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    users = [level.users for level in c.levels]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    # offered and refused rates run to several times the goodput and would flatten its curve: they
    # are in the table (and in report.html's refusals over time); this panel is goodput alone
    goodputs = [level.goodput_rps for level in c.levels]
    top.plot(users, goodputs, "o-", color="#17803d", label="goodput (successful answers/s)")
    top.axhline(0.9 * c.peak.goodput_rps, color="#17803d", linestyle=":", linewidth=1,
                label="90 % of the peak")
    for level in c.levels:
        top.annotate(_pct(c.ratio(level)), (level.users, level.goodput_rps), textcoords="offset points",
                     xytext=(0, -14), ha="center", fontsize="small")
    top.set_ylim(0, 1.2 * max(max(goodputs), 1.0))
    top.set_ylabel("goodput (per second)")
    bottom.plot(users, [level.p99_ms for level in c.levels], "^-", color="#4b6bfb", label="accepted p99")
    bottom.plot(users, [level.p50_ms for level in c.levels], "o-", color="#9aa9f7", label="accepted p50")
    if p99_limit is not None:
        bottom.axhline(p99_limit, color="red", linestyle="--", linewidth=1, label=f"p99 SLO {p99_limit:g} ms")
    bottom.set_ylabel("response time (ms)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("concurrency (closed-loop users)")
    for ax in (top, bottom):
        ax.axvline(c.saturating.users, color="#555", linestyle="-.", linewidth=1,
                   label=f"saturating ({c.saturating.users})" if ax is top else None)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    # doubling levels are evenly spaced on a log axis; tick each level, not powers of ten
    if users[-1] / users[0] >= 4:
        bottom.set_xscale("log", base=2)
    bottom.xaxis.set_major_locator(FixedLocator(users))
    bottom.xaxis.set_minor_locator(NullLocator())
    bottom.set_xticklabels([str(u) for u in users])
    top.set_title(f"{title}: goodput and accepted latency against concurrency")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def p99_line(campaign: Campaign) -> float | None:
    """The p99 bound to draw: the tightest plain or ``max(p99_ms)`` SLO over all traffic."""
    return limit(list(campaign.slos), "p99_ms")
