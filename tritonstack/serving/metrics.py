"""What a serving step publishes on Triton's own /metrics (``pb_utils.MetricFamily``): drift
scores against the export's profile, and refusals per reason. Each is updated once per batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import numpy as np

from . import drift


def _pb_utils():
    import triton_python_backend_utils as pb_utils  # only inside Triton

    return pb_utils


class DriftMetrics:
    """A drift window whose PSI per feature is published on Triton's /metrics (custom metrics of
    the Python backend), at most once every ``interval_s``: a metric update is a message to
    the Triton process, too dear for every batch. A batch that comes too soon schedules one
    publication at the end of the interval, so the last batch of a burst is published too."""

    def __init__(self, window, model: str, version: str, interval_s: float = 1.0, sample_s: float = 0.02):
        self.window = window
        self.interval_s = interval_s
        self.sample_s = sample_s
        self.sampled = 0.0
        self.published = 0.0
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None
        pb_utils = _pb_utils()
        psi = pb_utils.MetricFamily(
            name="triton_stack_drift_psi", kind=pb_utils.MetricFamily.GAUGE,
            description="Population Stability Index of a feature over the last window of rows "
                        "against the export's reference profile (> 0.25: shifted)")
        rows = pb_utils.MetricFamily(
            name="triton_stack_drift_window_rows", kind=pb_utils.MetricFamily.GAUGE,
            description="rows in the drift window the scores are measured over")
        self.labels = {"model": model, "version": version}
        # a feature's series appears with its first score (window >= min_rows): never a 0 that
        # would read as "no drift" before there is anything to judge
        self.gauges: dict[str, object] = {}
        self.rows = rows.Metric(labels=self.labels)
        self.psi_family, self.rows_family = psi, rows  # kept alive with their metrics

    def observe(self, feed: Mapping[str, np.ndarray], output: np.ndarray) -> None:
        now = time.monotonic()
        if now - self.sampled < self.sample_s:
            return
        self.sampled = now
        with self.lock:
            self.window.observe(feed, output)
            wait = self.published + self.interval_s - time.monotonic()
            if wait > 0:
                if self.timer is None:
                    self.timer = threading.Timer(wait, self.publish)
                    self.timer.daemon = True
                    self.timer.start()
                return
        self.publish()

    def publish(self) -> None:
        with self.lock:
            self.timer = None
            self.published = time.monotonic()
            rows = float(self.window.rows)
            scores = self.window.scores()
        self.rows.set(rows)
        for feature, score in scores.items():
            gauge = self.gauges.get(feature)
            if gauge is None:
                gauge = self.gauges[feature] = self.psi_family.Metric(
                    labels={**self.labels, "feature": feature})
            gauge.set(score)  # type: ignore[attr-defined]


def drift_metrics(folder: str, params: Mapping[str, str], model: str, version: str) -> DriftMetrics | None:
    """The version's drift monitor, or None (no ``profile.json`` or ``drift_window`` 0)."""
    profile = drift.load_profile(folder)
    if profile is None or params.get("drift_window") == "0":
        return None
    if params.get("drift_window"):
        profile["window"] = int(params["drift_window"])
        profile["min_rows"] = min(int(profile.get("min_rows") or 0), profile["window"])
    sample_ms = float(params.get("drift_sample_ms") or 20)
    return DriftMetrics(drift.DriftWindow(profile), model, version, sample_s=sample_ms / 1000)


class RefusalCounter:
    """Requests refused, per reason, on Triton's /metrics: by default as invalid input,
    ``triton_stack_data_quality_total{model, reason}``, the series the Python steps that see raw
    input count in (a series appears with its first refusal)."""

    def __init__(self, model: str, name: str = "triton_stack_data_quality_total",
                 description: str = "inputs refused (empty, too_long, out_of_range, ...) or repaired "
                                    "(truncated), per reason"):
        self.model = model
        pb_utils = _pb_utils()
        self.family = pb_utils.MetricFamily(name=name, kind=pb_utils.MetricFamily.COUNTER,
                                            description=description)
        self.counters: dict[str, object] = {}

    def count(self, reason: str, n: int = 1) -> None:
        if n <= 0:
            return
        counter = self.counters.get(reason)
        if counter is None:
            counter = self.counters[reason] = self.family.Metric(
                labels={"model": self.model, "reason": reason})
        counter.increment(n)  # type: ignore[attr-defined]
