"""Service-level objectives: ``"p99_ms < 100"``, ``"rps >= 1000"``, ``"embed: error_rate <= 0.001"``.

An SLO names a metric of a measured window (see :data:`METRICS`), a comparison and a number,
optionally prefixed by a stats name (the model or label) to gate one model of a mixed campaign.

The SLO window is the union of several windows (the measured stages, the levels of a concurrency
sweep), and some objectives are about each of them rather than their union: ``"max(p99_ms) < 100"``
holds when every window's p99 is under 100 ms (the union's p99 can be under while one level is
over), and ``"last(goodput_rps) / max(goodput_rps) >= 0.9"`` compares the last window with the
best (see :data:`AGGREGATES`). A metric and its divisor are each plain (the SLO window) or an
aggregate over the SLO window's windows, in the order they ran.
Pure functions: parsed when the campaign is loaded, evaluated on the run's measured window.
"""

from __future__ import annotations

import dataclasses
import difflib
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tritonstack.loadtest.errors import CampaignError

METRICS = {
    "rps": "requests per second (successful, failed and shed)",
    "accepted_rps": "requests per second the server accepted (not shed)",
    "goodput_rps": "successful answers per second (neither shed nor failed)",
    "requests": "number of requests",
    "errors": "number of failed requests (shed ones included)",
    "error_rate": "failed / all requests (0..1), shed ones included",
    "hard_error_rate": "failed for a reason other than shedding / all requests (0..1)",
    "shed": "requests the server shed (queue full or queue timeout: UNAVAILABLE)",
    "shed_rate": "shed / all requests (0..1)",
    "shed_p99_ms": "99th percentile time to the shed answer (how promptly overload is refused)",
    "avg_ms": "mean response time of accepted requests",
    "p50_ms": "median response time of accepted requests",
    "p90_ms": "90th percentile response time of accepted requests",
    "p95_ms": "95th percentile response time of accepted requests",
    "p99_ms": "99th percentile response time of accepted requests",
    "p999_ms": "99.9th percentile response time of accepted requests",
    "max_ms": "slowest accepted response",
}
# Over the windows that make up the SLO window, in the order they ran.
AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "max": max, "min": min, "first": lambda values: values[0], "last": lambda values: values[-1],
}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq,
}
_PATTERN = re.compile(
    r"^\s*(?:(?P<scope>[A-Za-z0-9_.\-]+)\s*:\s*)?(?P<expr>[^:<>=]+?)\s*"
    r"(?P<op><=|>=|==|<|>)\s*(?P<value>[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$"
)
_TERM = re.compile(r"^\s*(?:(?P<agg>[a-z]+)\s*\(\s*(?P<inner>[a-z0-9_]+)\s*\)|(?P<metric>[a-z0-9_]+))\s*$")
_EXAMPLES = ("for example \"p99_ms < 100\", \"rps >= 1000\", \"embed: error_rate <= 0.001\", "
             "\"max(p99_ms) < 100\", \"last(goodput_rps) / max(goodput_rps) >= 0.9\"")
TOTAL = "Aggregated"


@dataclasses.dataclass(frozen=True)
class Term:
    """A metric of the SLO window (``agg`` None) or an aggregate of it over the SLO window's windows."""

    metric: str
    agg: str | None = None

    @classmethod
    def parse(cls, text: str, slo_text: str) -> Term:
        match = _TERM.match(text)
        if not match:
            raise CampaignError(f"SLO {slo_text!r}: {text.strip()!r} is not METRIC or AGGREGATE(METRIC) "
                                f"with AGGREGATE one of {', '.join(AGGREGATES)}; {_EXAMPLES}")
        agg, metric = match["agg"], match["inner"] or match["metric"]
        if agg is not None and agg not in AGGREGATES:
            close = difflib.get_close_matches(agg, AGGREGATES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(AGGREGATES)}"
            raise CampaignError(f"SLO {slo_text!r}: unknown aggregate {agg!r}{hint}")
        if metric not in METRICS:
            close = difflib.get_close_matches(metric, METRICS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(METRICS)}"
            raise CampaignError(f"SLO {slo_text!r}: unknown metric {metric!r}{hint}")
        return cls(metric, agg)

    def __str__(self) -> str:
        return f"{self.agg}({self.metric})" if self.agg else self.metric


@dataclasses.dataclass(frozen=True)
class Slo:
    """One objective: ``scope`` (None = all traffic) ``[agg(]metric[)] [/ divisor]`` ``op`` ``threshold``."""

    metric: str
    op: str
    threshold: float
    scope: str | None = None
    agg: str | None = None  # None: the SLO window's value; else over its windows (AGGREGATES)
    divisor: Term | None = None

    @property
    def term(self) -> Term:
        return Term(self.metric, self.agg)

    @classmethod
    def parse(cls, text: str) -> Slo:
        """Parse ``"[scope:] term [/ term] op number"``; raise :class:`CampaignError` naming the fix."""
        if not isinstance(text, str):
            raise CampaignError(f"SLO {text!r} must be a string like \"p99_ms < 100\"")
        match = _PATTERN.match(text)
        if not match or match["expr"].count("/") > 1:
            raise CampaignError(f"SLO {text!r} is not 'METRIC OP NUMBER' ({_EXAMPLES}); OP is one of "
                                f"{', '.join(_OPS)}")
        head, _, tail = match["expr"].partition("/")
        term = Term.parse(head, text)
        divisor = Term.parse(tail, text) if tail else None
        return cls(metric=term.metric, op=match["op"], threshold=float(match["value"]), scope=match["scope"],
                   agg=term.agg, divisor=divisor)

    def __str__(self) -> str:
        prefix = f"{self.scope}: " if self.scope else ""
        ratio = f" / {self.divisor}" if self.divisor else ""
        return f"{prefix}{self.term}{ratio} {self.op} {self.threshold:g}"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of one SLO: the measured value and how far it is from the threshold."""

    slo: Slo
    value: float | None
    passed: bool
    # why there is no value (None: no requests for the scope), or which windows gave it
    note: str | None = None
    at: str | None = None

    @property
    def margin(self) -> float | None:
        """Measured minus threshold (positive = above the threshold)."""
        return None if self.value is None else self.value - self.slo.threshold

    def describe(self) -> str:
        """``"PASS p99_ms < 100: 41.0 (59.0 under)"`` / ``"FAIL rps >= 1000: 812.3 (187.7 short)"``."""
        status = "PASS" if self.passed else "FAIL"
        if self.value is None:
            why = self.note or f"no requests were measured for {self.slo.scope or 'the run'}"
            return f"{status} {self.slo}: {why}"
        margin = self.margin or 0.0
        if self.slo.op in ("<", "<="):
            how = f"{abs(margin):.4g} under" if margin <= 0 else f"{margin:.4g} over"
        elif self.slo.op in (">", ">="):
            how = f"{margin:.4g} above" if margin >= 0 else f"{abs(margin):.4g} short"
        else:
            how = f"off by {margin:.4g}"
        where = f" at {self.at}" if self.at else ""
        return f"{status} {self.slo}: measured {self.value:.4g}{where} ({how})"


class _Unmeasured(Exception):
    """A term has no value: the reason goes into the verdict."""


def _term_value(term: Term, name: str, stats: Mapping[str, Mapping[str, float]],
                windows: Sequence[Mapping[str, Any]]) -> tuple[float, str | None]:
    """The term's value and, for a single window's value (min, max, first, last), that window's name."""
    if term.agg is None:
        row = stats.get(name)
        if not row or not row.get("requests"):
            raise _Unmeasured(None)
        return float(row[term.metric]), None
    if not windows:
        raise _Unmeasured("no windows were measured")
    rows = [w["stats"].get(name) for w in windows]
    for window, row in zip(windows, rows, strict=True):
        # a window without requests has no latency to aggregate; taking its zeros would pass max(p99_ms)
        if not row or not row.get("requests"):
            raise _Unmeasured(f"window {window.get('name', '?')!r} measured no requests for "
                              f"{'the run' if name == TOTAL else name}")
    values = [float(r[term.metric]) for r in rows]  # type: ignore[index]
    value = AGGREGATES[term.agg](values)
    if len(set(values)) == 1:  # every window alike: naming the first would suggest it stood out
        return value, None
    return value, str(windows[values.index(value)].get("name", ""))


def _judge(slo: Slo, stats: Mapping[str, Mapping[str, float]],
           windows: Sequence[Mapping[str, Any]]) -> Verdict:
    name = slo.scope or TOTAL
    try:
        value, at = _term_value(slo.term, name, stats, windows)
        if slo.divisor is not None:
            below, at_below = _term_value(slo.divisor, name, stats, windows)
            if below == 0:
                raise _Unmeasured(f"{slo.divisor} is 0")
            value /= below
            at = f"{at or 'SLO window'} / {at_below or 'SLO window'}" if at or at_below else None
    except _Unmeasured as missing:
        return Verdict(slo, None, False, note=missing.args[0])
    return Verdict(slo, value, _OPS[slo.op](value, slo.threshold), at=at)


def evaluate(slos: list[Slo], stats: Mapping[str, Mapping[str, float]],
             windows: Sequence[Mapping[str, Any]] = ()) -> list[Verdict]:
    """Check each SLO against ``stats[scope or TOTAL][metric]`` (aggregates: against each of
    ``windows``, the windows the SLO window is made of, each with its ``stats`` and ``name``).
    A missing scope, a window without requests or a zero divisor fails."""
    return [_judge(slo, stats, windows) for slo in slos]


def bounds(slos: list[Slo], metric: str) -> list[Slo]:
    """The SLOs that put an upper bound on ``metric`` over all traffic in every window of the SLO
    window: plain ones and ``max(metric)`` (they coincide when the SLO window is one window)."""
    return [s for s in slos if s.metric == metric and s.scope is None and s.op in ("<", "<=")
            and s.divisor is None and s.agg in (None, "max")]


def limit(slos: list[Slo], metric: str) -> float | None:
    """The tightest upper bound the SLOs put on ``metric`` over all traffic (for find-max)."""
    found = [s.threshold for s in bounds(slos, metric)]
    return min(found) if found else None
