"""Service-level objectives: ``"p99_ms < 100"``, ``"rps >= 1000"``, ``"embed: error_rate <= 0.001"``.

An SLO names a metric of a measured window (see :data:`METRICS`), a comparison and a number,
optionally prefixed by a stats name (the model or label) to gate one model of a mixed campaign.
Pure functions: parsed when the campaign is loaded, evaluated on the run's measured window.
"""

from __future__ import annotations

import dataclasses
import difflib
import operator
import re
from collections.abc import Callable, Mapping

from loadtest.errors import CampaignError

METRICS = {
    "rps": "requests per second (successful, failed and shed)",
    "accepted_rps": "requests per second the server accepted (not shed)",
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
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq,
}
_PATTERN = re.compile(
    r"^\s*(?:(?P<scope>[A-Za-z0-9_.\-]+)\s*:\s*)?(?P<metric>[a-z0-9_]+)\s*"
    r"(?P<op><=|>=|==|<|>)\s*(?P<value>[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$"
)
TOTAL = "Aggregated"


@dataclasses.dataclass(frozen=True)
class Slo:
    """One objective: ``scope`` (None = all traffic) ``metric`` ``op`` ``threshold``."""

    metric: str
    op: str
    threshold: float
    scope: str | None = None

    @classmethod
    def parse(cls, text: str) -> Slo:
        """Parse ``"[scope:] metric op number"``; raise :class:`CampaignError` naming the fix."""
        if not isinstance(text, str):
            raise CampaignError(f"SLO {text!r} must be a string like \"p99_ms < 100\"")
        match = _PATTERN.match(text)
        if not match:
            raise CampaignError(
                f"SLO {text!r} is not 'METRIC OP NUMBER' (for example \"p99_ms < 100\", "
                f"\"rps >= 1000\", \"embed: error_rate <= 0.001\"); OP is one of {', '.join(_OPS)}"
            )
        metric = match["metric"]
        if metric not in METRICS:
            close = difflib.get_close_matches(metric, METRICS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(METRICS)}"
            raise CampaignError(f"SLO {text!r}: unknown metric {metric!r}{hint}")
        return cls(metric=metric, op=match["op"], threshold=float(match["value"]), scope=match["scope"])

    def __str__(self) -> str:
        prefix = f"{self.scope}: " if self.scope else ""
        return f"{prefix}{self.metric} {self.op} {self.threshold:g}"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of one SLO: the measured value and how far it is from the threshold."""

    slo: Slo
    value: float | None
    passed: bool

    @property
    def margin(self) -> float | None:
        """Measured minus threshold (positive = above the threshold)."""
        return None if self.value is None else self.value - self.slo.threshold

    def describe(self) -> str:
        """``"PASS p99_ms < 100: 41.0 (59.0 under)"`` / ``"FAIL rps >= 1000: 812.3 (187.7 short)"``."""
        status = "PASS" if self.passed else "FAIL"
        if self.value is None:
            return f"{status} {self.slo}: no requests were measured for {self.slo.scope or 'the run'}"
        margin = self.margin or 0.0
        if self.slo.op in ("<", "<="):
            how = f"{abs(margin):.4g} under" if margin <= 0 else f"{margin:.4g} over"
        elif self.slo.op in (">", ">="):
            how = f"{margin:.4g} above" if margin >= 0 else f"{abs(margin):.4g} short"
        else:
            how = f"off by {margin:.4g}"
        return f"{status} {self.slo}: measured {self.value:.4g} ({how})"


def evaluate(slos: list[Slo], stats: Mapping[str, Mapping[str, float]]) -> list[Verdict]:
    """Check each SLO against ``stats[scope or TOTAL][metric]``; a missing scope fails."""
    verdicts = []
    for slo in slos:
        row = stats.get(slo.scope or TOTAL)
        if not row or not row.get("requests"):
            verdicts.append(Verdict(slo, None, False))
            continue
        value = float(row[slo.metric])
        verdicts.append(Verdict(slo, value, _OPS[slo.op](value, slo.threshold)))
    return verdicts


def limit(slos: list[Slo], metric: str) -> float | None:
    """The tightest upper bound the SLOs put on ``metric`` over all traffic (for find-max)."""
    bounds = [s.threshold for s in slos if s.metric == metric and s.scope is None and s.op in ("<", "<=")]
    return min(bounds) if bounds else None
