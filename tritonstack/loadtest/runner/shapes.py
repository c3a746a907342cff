"""Campaign stages and the find-max search as Locust ``LoadTestShape`` classes.

Both run where the shape runs (the single process, or the master) and record *windows*: the
difference of Locust's counters (and of the server's CPU time and Triton metrics) between the end
of a stage's warm-up and the end of the stage. Per-user pacing follows the stage's target rate;
in distributed runs the master sends it to the workers as a ``loadtest_rate`` message.
"""

from __future__ import annotations

import time
from typing import Any

from locust import LoadTestShape
from locust.runners import MasterRunner

from tritonstack.loadtest.campaign.slo import TOTAL, bounds, limit
from tritonstack.loadtest.campaign.spec import Campaign, Stage
from tritonstack.loadtest.runner import metrics, stats
from tritonstack.loadtest.runner.users import Pacing

RATE_MESSAGE = "loadtest_rate"


def set_rate(runner: Any, per_user: float | None) -> None:
    """Set this process's pacing and, on a master, every worker's."""
    if Pacing.per_user == per_user:
        return
    Pacing.per_user = per_user
    if isinstance(runner, MasterRunner):
        runner.send_message(RATE_MESSAGE, {"per_user": per_user})


class Recorder:
    """Takes snapshots (Locust counters, generator and server CPU, Triton metrics) and diffs them."""

    def __init__(self, runner: Any, server_pid: int | None, metrics_url: str | None) -> None:
        self.runner, self.server_pid, self.metrics_url = runner, server_pid, metrics_url
        self.windows: list[dict[str, Any]] = []

    def snapshot(self) -> dict[str, Any]:
        """Copy every counter the window report needs, with the time it was taken."""
        s = self.runner.stats
        counters = stats.with_total({
            e.name: stats.snapshot_entry(e.num_requests, e.num_failures, e.total_response_time,
                                         e.response_times)
            for e in s.entries.values()})
        return {"t": time.monotonic(), "stats": counters, "generator_cpu_s": time.process_time(),
                "server_cpu_s": metrics.tree_cpu_s(self.server_pid),
                "server_rss": metrics.tree_rss_by_process(self.server_pid),
                "triton": metrics.scrape(self.metrics_url)}

    def close(self, start: dict[str, Any], name: str, target_rps: float | None, users: int,
              started_at_s: float) -> dict[str, Any]:
        """Record the window from ``start`` to now and return it."""
        end = self.snapshot()
        duration = end["t"] - start["t"]
        counts = stats.diff(end["stats"], start["stats"])
        rss = None if end["server_rss"] is None else {k: b / 2**20 for k, b in end["server_rss"].items()}
        window = {
            "name": name, "target_rps": target_rps, "users": users, "start_s": started_at_s,
            "duration_s": duration, "counts": counts, "stats": stats.summarize(counts, duration),
            "generator_cpu_pct": metrics.cpu_percent(end["generator_cpu_s"], start["generator_cpu_s"],
                                                     duration),
            "server_cpu_pct": metrics.cpu_percent(end["server_cpu_s"], start["server_cpu_s"], duration),
            "server_rss_mb": None if rss is None else sum(rss.values()),
            "server_rss_by_process_mb": rss or {},
            "triton": metrics.model_deltas(end["triton"], start["triton"], duration),
        }
        self.windows.append(window)
        return window


class CampaignShape(LoadTestShape):
    """Plays the campaign's stages in order; ramps interpolate users and rate from the stage before."""

    abstract = True  # the locustfile subclasses it with the campaign
    campaign: Campaign
    recorder: Recorder

    def __init__(self) -> None:
        super().__init__()
        self._index = -1
        self._stage_start = 0.0
        self._window: dict[str, Any] | None = None
        self._done = False
        # A campaign with no measured stage is judged on all of them.
        self._measure_all = not any(s.measure for s in self.campaign.stages)

    def _begin(self, index: int, now: float) -> None:
        self._end_window(now)
        self._index, self._stage_start = index, now

    def _end_window(self, now: float) -> None:
        if self._window is not None:
            stage = self.campaign.stages[self._index]
            name = stage.name
            if stage.window_s:  # one of several windows of a long stage: say which part
                name += f" [{self._window_start - self._stage_start:.0f}-{now - self._stage_start:.0f} s]"
            self.recorder.close(self._window, name, stage.rps, stage.users, self._window_start)
            self._window = None

    def _level(self, stage: Stage, elapsed: float) -> tuple[int, float | None]:
        if not stage.ramp:
            return stage.users, stage.rps
        if self._index == 0:  # a first ramp starts from one user at a tenth of the rate
            prev_users, prev_rps = 1, (stage.rps or 0.0) / 10
        else:
            prev = self.campaign.stages[self._index - 1]
            prev_users, prev_rps = prev.users, prev.rps or 0.0
        f = min(1.0, elapsed / stage.duration_s)
        users = round(prev_users + (stage.users - prev_users) * f)
        rps = None if stage.rps is None else prev_rps + (stage.rps - prev_rps) * f
        return max(1, users), rps

    def tick(self) -> tuple[int, float] | None:
        if self._done:
            return None
        now = self.get_run_time()
        bounds, end = [], 0.0
        for s in self.campaign.stages:
            end += s.duration_s
            bounds.append(end)
        index = next((i for i, b in enumerate(bounds) if now < b), None)
        if index is None:
            self._end_window(now)
            self._done = True
            return None
        if index != self._index:
            self._begin(index, now)
        stage = self.campaign.stages[index]
        elapsed = now - self._stage_start
        if self._window is not None and stage.window_s and now - self._window_start >= stage.window_s:
            self._end_window(now)  # a long stage as a time series (soak: latency, memory)
        if (stage.measure or self._measure_all) and self._window is None and elapsed >= stage.warmup_s:
            self._window, self._window_start = self.recorder.snapshot(), now
        users, rps = self._level(stage, elapsed)
        set_rate(self.runner, None if rps is None else rps / users)
        return users, stage.spawn_rate or float(max(users, 1))


class FindMaxShape(LoadTestShape):
    """Steps the target rate up until a step fails the SLOs, then bisects between pass and fail.

    The result (``self.result``) is the passing step with the highest achieved RPS.
    """

    abstract = True  # the locustfile subclasses it with the campaign
    campaign: Campaign
    recorder: Recorder

    def __init__(self) -> None:
        super().__init__()
        spec = self.campaign.find_max
        assert spec is not None
        self.spec = spec
        self.p99_limit = limit(list(self.campaign.slos), "p99_ms")
        self.error_limit = limit(list(self.campaign.slos), "error_rate") or 0.0
        self.target = spec.start_rps
        self.phase = "step"
        self.lo, self.hi, self.rounds_left = 0.0, 0.0, spec.bisect_rounds
        self._step_start: float | None = None
        self._window: dict[str, Any] | None = None
        self._done = False
        self.result: dict[str, Any] | None = None

    def judge(self, window: dict[str, Any]) -> tuple[bool, str]:
        """Whether a step met the SLOs, and why not."""
        row = window["stats"][TOTAL]
        strict = any(s.op == "<" for s in bounds(list(self.campaign.slos), "p99_ms"))
        p99_ok = row["p99_ms"] < self.p99_limit if strict else row["p99_ms"] <= self.p99_limit
        reasons = []
        if not row["requests"]:
            reasons.append("no requests completed")
        if not p99_ok:
            reasons.append(f"p99 {row['p99_ms']:.0f} ms over {self.p99_limit:g} ms")
        if row["error_rate"] > self.error_limit:
            reasons.append(f"error rate {row['error_rate']:.4f} over {self.error_limit:g}")
        if row["rps"] < self.spec.min_achieved * window["target_rps"]:
            reasons.append(f"achieved {row['rps']:.0f} of {window['target_rps']:.0f} rps")
        return not reasons, "; ".join(reasons)

    def _next_target(self, passed: bool) -> float | None:
        spec = self.spec
        if self.phase == "step":
            if passed:
                self.lo = self.target
                nxt = self.target + spec.step_rps
                return nxt if nxt <= spec.max_rps + 1e-9 else None
            self.phase, self.hi = "bisect", self.target
        elif passed:
            self.lo = self.target
        else:
            self.hi = self.target
        if self.rounds_left <= 0:
            return None
        self.rounds_left -= 1
        return (self.lo + self.hi) / 2 if self.hi - self.lo > 1 else None

    def tick(self) -> tuple[int, float] | None:
        if self._done:
            return None
        now = self.get_run_time()
        if self._step_start is None:
            self._step_start = now
        elapsed = now - self._step_start
        if self._window is None and elapsed >= self.spec.warmup_s:
            self._window, self._window_start = self.recorder.snapshot(), now
        if elapsed >= self.spec.step_s and self._window is not None:
            window = self.recorder.close(self._window, f"{self.target:.0f} rps", self.target,
                                         self.spec.users, self._window_start)
            self._window = None
            passed, reason = self.judge(window)
            window["passed"], window["reason"] = passed, reason
            if passed and (self.result is None
                           or window["stats"][TOTAL]["rps"] > self.result["stats"][TOTAL]["rps"]):
                self.result = window
            nxt = self._next_target(passed)
            if nxt is None or now + self.spec.step_s > self.campaign.duration_s + self.spec.step_s:
                self._done = True
                return None
            self.target, self._step_start = nxt, now
        set_rate(self.runner, self.target / self.spec.users)
        return self.spec.users, self.spec.spawn_rate or float(self.spec.users)
