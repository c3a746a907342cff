"""The SLOs a canary step must hold, per arm, and the judgement with its evidence.

Each check needs enough evidence before it can break (``min_requests`` answered requests,
``min_compared`` compared rows). During a step a measure breaks only when it is conclusively on
the wrong side of its bound: the one-sided 95 % Wilson or normal bound for error rates and
agreement, the bootstrap's 5th percentile (of each arm's latency histogram) for p99. A run of
bad luck in a small window then cannot roll back a good candidate, while a broken one rolls
back at once. At the end of the step the measured values themselves must meet the bounds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tritonstack.rollout.errors import BadRequest
from tritonstack.rollout.metrics import Snapshot, resampled_quantile, wilson_lower
from tritonstack.serving.split import Split

DEFAULT_MIN_AGREEMENT = {"embedding": 0.99, "classification": 0.95, "score": 0.95}


@dataclasses.dataclass(frozen=True)
class Slo:
    max_error_rate: float = 0.01  # of each arm's requests
    max_p99_ms: float = 100.0  # each arm's p99 as the router sees it
    max_p99_ratio: float = 1.5  # candidate p99 / primary p99 ...
    p99_slack_ms: float = 5.0  # ... and more than this many ms slower
    min_agreement: float | None = None  # None: DEFAULT_MIN_AGREEMENT of the model's kind
    min_requests: int = 100
    min_compared: int = 50

    def __post_init__(self) -> None:
        if not 0 <= self.max_error_rate <= 1:
            raise BadRequest(f"--max-error-rate must be a fraction from 0 to 1, got {self.max_error_rate}")
        if self.max_p99_ms <= 0 or self.max_p99_ratio < 1 or self.p99_slack_ms < 0:
            raise BadRequest("--max-p99-ms must be > 0 and --max-p99-ratio >= 1")
        if self.min_agreement is not None and not -1 <= self.min_agreement <= 1:
            raise BadRequest(f"--min-agreement must be from -1 to 1, got {self.min_agreement}")
        if self.min_requests < 1 or self.min_compared < 1:
            raise BadRequest("--min-requests and --min-compared must be >= 1")

    def agreement_bar(self, kind: str) -> float:
        return self.min_agreement if self.min_agreement is not None else DEFAULT_MIN_AGREEMENT[kind]


@dataclasses.dataclass(frozen=True)
class Breach:
    slo: str  # error_rate | p99 | p99_ratio | agreement | evidence
    arm: str  # primary | candidate
    version: int
    measured: float
    bound: float
    evidence: str

    def __str__(self) -> str:
        return f"{self.slo} of the {self.arm} (v{self.version}): {self.evidence}"


def judge(window: Snapshot, split: Split, slo: Slo, kind: str, seconds: float,
          final: bool = False) -> list[Breach]:
    """The SLOs ``window`` breaks. With ``final`` (end of a hold), too little evidence for the
    candidate is itself a breach: a canary promotes only on evidence."""
    breaches: list[Breach] = []
    arms = [("primary", split.primary)]
    if split.candidate is not None:
        arms.append(("candidate", split.candidate))
    p99s: dict[str, float] = {}
    for arm, version in arms:
        ok, failed = window.answered(version), window.failed(version)
        total = ok + failed
        if total >= slo.min_requests:
            rate = failed / total
            sure = rate if final else wilson_lower(rate, total)
            if rate > slo.max_error_rate and sure > slo.max_error_rate:
                breaches.append(Breach("error_rate", arm, version, rate, slo.max_error_rate,
                                       f"{rate:.1%} of {total} requests failed in {seconds:.0f} s "
                                       f"(bound {slo.max_error_rate:.1%})"))
            p99 = window.quantile(version, 0.99)
            if p99 is not None and ok >= slo.min_requests:
                p99s[arm] = p99 * 1000
                if p99s[arm] > slo.max_p99_ms and (final or _surely_above(
                        window, version, lambda p: p * 1000 - slo.max_p99_ms)):
                    breaches.append(Breach("p99", arm, version, p99s[arm], slo.max_p99_ms,
                                           f"p99 {p99s[arm]:.1f} ms over {ok} requests in {seconds:.0f} s "
                                           f"(bound {slo.max_p99_ms:g} ms)"))
    if "primary" in p99s and "candidate" in p99s:
        ours, theirs = p99s["candidate"], p99s["primary"]

        def excess(candidate_ms: np.ndarray, primary_ms: np.ndarray) -> np.ndarray:
            return candidate_ms - np.maximum(slo.max_p99_ratio * primary_ms, primary_ms + slo.p99_slack_ms)

        if excess(np.array(ours), np.array(theirs)) > 0 and (final or _surely_slower(window, split, excess)):
            breaches.append(Breach("p99_ratio", "candidate", split.candidate, ours / theirs,
                                   slo.max_p99_ratio,
                                   f"p99 {ours:.1f} ms vs the primary's {theirs:.1f} ms "
                                   f"({ours / theirs:.1f}x; bound {slo.max_p99_ratio:g}x)"))
    if split.candidate is not None:
        compared = int(window.compared.get(split.candidate, 0))
        mean = window.mean_agreement(split.candidate)
        bar = slo.agreement_bar(kind)
        if mean is not None and compared >= slo.min_compared and mean < bar:
            upper = window.agreement_upper(split.candidate)
            if final or (upper is not None and upper < bar):
                bound = "" if final else f"; its 95 % upper bound {upper:.4f}"
                breaches.append(Breach("agreement", "candidate", split.candidate, mean, bar,
                                       f"mean {kind} agreement {mean:.4f} with the primary over "
                                       f"{compared} compared rows{bound} (bound {bar:g})"))
        if final and not breaches:
            served = window.answered(split.candidate) + window.failed(split.candidate)
            missing = []
            if split.weight > 0 and served < slo.min_requests:
                missing.append(f"{served} requests answered (needs {slo.min_requests})")
            if split.compare > 0 and compared < slo.min_compared:
                missing.append(f"{compared} rows compared (needs {slo.min_compared})")
            if missing:
                breaches.append(Breach("evidence", "candidate", split.candidate, 0, 0,
                                       f"too little traffic to judge it in {seconds:.0f} s: "
                                       + ", ".join(missing)))
    return breaches


def _surely_above(window: Snapshot, version: int, margin) -> bool:  # noqa: ANN001
    """The bootstrap's 5th percentile of ``margin(p99)`` is above 0: conclusively over."""
    resampled = resampled_quantile(window.buckets.get(version, {}), 0.99, np.random.default_rng(0))
    return resampled is not None and float(np.nanpercentile(margin(resampled), 5)) > 0


def _surely_slower(window: Snapshot, split: Split, excess) -> bool:  # noqa: ANN001
    rng = np.random.default_rng(0)
    ours = resampled_quantile(window.buckets.get(split.candidate, {}), 0.99, rng)
    theirs = resampled_quantile(window.buckets.get(split.primary, {}), 0.99, rng)
    if ours is None or theirs is None:
        return False
    return float(np.nanpercentile(excess(ours * 1000, theirs * 1000), 5)) > 0
