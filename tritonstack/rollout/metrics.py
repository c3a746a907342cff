"""Per-arm evidence from Triton's /metrics: the router's counters (``serving.tally``) and
Triton's own per-version request counters, summed over replicas, as differences between two
scrapes (the window a canary step or a report covers)."""

from __future__ import annotations

import collections
import dataclasses
import math
import urllib.error
import urllib.request

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tritonstack.rollout.errors import NoServer

PREFIX = "triton_stack_rollout_"
RESAMPLES = 2000


@dataclasses.dataclass
class Snapshot:
    """Counters of one model, by version (an int)."""

    requests: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # (v, outcome)
    buckets: dict[int, dict[float, float]] = dataclasses.field(default_factory=dict)  # v -> le -> n
    latency_sum: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    compared: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    agreement_sum: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    agreement_sq_sum: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    distance_sum: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    triton_success: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    triton_failure: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def __sub__(self, earlier: Snapshot) -> Snapshot:
        out = Snapshot()
        for field in dataclasses.fields(Snapshot):
            if field.name == "buckets":
                continue
            mine, theirs = getattr(self, field.name), getattr(earlier, field.name)
            setattr(out, field.name, collections.Counter(
                {k: v - theirs.get(k, 0) for k, v in mine.items() if v - theirs.get(k, 0) > 0}))
        for version, bounds in self.buckets.items():
            before = earlier.buckets.get(version, {})
            out.buckets[version] = {le: n - before.get(le, 0) for le, n in bounds.items()}
        return out

    def answered(self, version: int) -> int:
        return int(sum(n for (v, outcome), n in self.requests.items() if v == version and outcome == "ok"))

    def failed(self, version: int) -> int:
        """Requests the version did not answer: errors, and candidate failures the primary
        answered instead (``fallback``)."""
        return int(sum(n for (v, outcome), n in self.requests.items()
                       if v == version and outcome in ("error", "fallback")))

    def quantile(self, version: int, q: float) -> float | None:
        """Seconds, interpolated inside the bucket as Prometheus' ``histogram_quantile`` does."""
        return bucket_quantile(self.buckets.get(version, {}), q)

    def mean_agreement(self, version: int) -> float | None:
        n = self.compared.get(version, 0)
        return self.agreement_sum[version] / n if n else None

    def agreement_upper(self, version: int, z: float = 1.645) -> float | None:
        """A one-sided 95 % upper bound of the mean agreement: Wilson's for 0/1 agreement (labels,
        scores), the normal one from the squares' sum for cosines."""
        n = self.compared.get(version, 0)
        if not n:
            return None
        mean = self.agreement_sum[version] / n
        squares = self.agreement_sq_sum.get(version, 0.0)
        if abs(squares - self.agreement_sum[version]) < 1e-9 * max(n, 1):  # every value 0 or 1
            return wilson_upper(mean, n, z)
        variance = max(squares / n - mean * mean, 0.0)
        return mean + z * math.sqrt(variance / n)

    def mean_distance(self, version: int) -> float | None:
        n = self.compared.get(version, 0)
        return self.distance_sum[version] / n if n else None


def wilson_upper(p: float, n: float, z: float = 1.645) -> float:
    """Wilson score interval's upper end for a proportion ``p`` of ``n``."""
    denominator = 1 + z * z / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / denominator)


def wilson_lower(p: float, n: float, z: float = 1.645) -> float:
    return max(0.0, 1.0 - wilson_upper(1.0 - p, n, z))


def bucket_quantile(cumulative: dict[float, float], q: float) -> float | None:
    """Seconds, interpolated inside the bucket as Prometheus' ``histogram_quantile`` does (past the
    last finite bound: that bound). None for an empty histogram."""
    bounds = np.array(sorted(cumulative))
    if not len(bounds) or cumulative[bounds[-1]] <= 0:
        return None
    cum = np.maximum.accumulate(np.array([cumulative[b] for b in bounds], dtype=float))
    return float(_quantiles(bounds, cum[None], q)[0])


def _quantiles(bounds: np.ndarray, cumulative: np.ndarray, q: float) -> np.ndarray:
    """:func:`bucket_quantile` of each row of cumulative counts [r, b], vectorised."""
    total = cumulative[:, -1]
    rank = q * total
    idx = np.argmax(cumulative >= rank[:, None], axis=1)
    upper = bounds[idx]
    lower = np.where(idx > 0, bounds[np.maximum(idx - 1, 0)], 0.0)
    below = np.where(idx > 0, np.take_along_axis(cumulative, np.maximum(idx - 1, 0)[:, None], 1)[:, 0], 0)
    count = np.take_along_axis(cumulative, idx[:, None], 1)[:, 0]
    width = np.maximum(count - below, 1e-12)
    value = lower + (np.where(np.isfinite(upper), upper, lower) - lower) * (rank - below) / width
    return np.where(total > 0, value, np.nan)


def resampled_quantile(cumulative: dict[float, float], q: float, rng: np.random.Generator,
                       resamples: int = RESAMPLES) -> np.ndarray | None:
    """The quantile of ``resamples`` bootstrap resamples of a histogram (multinomial over its
    buckets, as many requests as it holds), in seconds; None for an empty histogram."""
    bounds = np.array(sorted(cumulative))
    if not len(bounds):
        return None
    cum = np.maximum.accumulate(np.array([cumulative[b] for b in bounds], dtype=float))
    counts = np.diff(np.concatenate([[0.0], cum]))
    n = int(round(counts.sum()))
    if n <= 0:
        return None
    draws = np.cumsum(rng.multinomial(n, counts / counts.sum(), size=resamples), axis=1)
    return _quantiles(bounds, draws, q)


def parse(text: str, model: str, into: Snapshot | None = None) -> Snapshot:
    snap = into or Snapshot()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model or "version" not in labels:
                continue
            try:
                version = int(labels["version"])
            except ValueError:
                continue
            # the parser names every counter's sample ..._total, whatever the exposition said
            name, value = sample.name.removesuffix("_total"), sample.value
            if name == "nv_inference_request_success":
                snap.triton_success[version] += value
            elif name == "nv_inference_request_failure":
                snap.triton_failure[version] += value
            elif not name.startswith(PREFIX):
                continue
            short = name[len(PREFIX):]
            if short == "requests":
                snap.requests[(version, labels.get("outcome", "ok"))] += value
            elif short == "latency_seconds_bucket":
                le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
                bounds = snap.buckets.setdefault(version, {})
                bounds[le] = bounds.get(le, 0) + value
            elif short == "latency_seconds_sum":
                snap.latency_sum[version] += value
            elif short in ("compared", "agreement_sum", "agreement_sq_sum", "distance_sum"):
                getattr(snap, short)[version] += value
            elif short == "compare_skipped":
                snap.skipped[version] += value
    return snap


def scrape(urls: list[str], model: str, timeout_s: float = 5.0) -> Snapshot:
    """One snapshot summed over every replica's metrics endpoint."""
    snap = Snapshot()
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise NoServer(f"cannot read metrics at {url} ({getattr(exc, 'reason', exc)}); start "
                           "Triton or pass --metrics-url URL") from None
        parse(text, model, snap)
    return snap
