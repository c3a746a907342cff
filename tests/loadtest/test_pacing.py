"""Open-loop pacing: a population of users keeps its phases spread across rate changes and stalls."""

from __future__ import annotations

import random

import pytest

from tritonstack.loadtest.runner.pacing import Pacer


def _fire_times(pacers: list[Pacer], rate_at, until: float, response_s=lambda t: 0.002) -> list[float]:
    """Event-driven simulation: each user waits, fires, gets its answer after ``response_s(t)``."""
    clocks = [0.0] * len(pacers)
    fires: list[float] = []
    while True:
        i = min(range(len(pacers)), key=clocks.__getitem__)
        now = clocks[i]
        if now >= until:
            return sorted(fires)
        fire = now + pacers[i].wait(now, rate_at(now))
        fires.append(fire)
        clocks[i] = fire + response_s(fire)


def _worst_bin(fires: list[float], start: float, end: float, bin_s: float = 0.1) -> tuple[int, float]:
    """The busiest ``bin_s`` window in [start, end) and the mean count per window."""
    counts: dict[int, int] = {}
    for t in fires:
        if start <= t < end:
            counts[int((t - start) / bin_s)] = counts.get(int((t - start) / bin_s), 0) + 1
    return max(counts.values()), sum(counts.values()) / ((end - start) / bin_s)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_rate_drop_keeps_the_population_spread(seed: int) -> None:
    rng = random.Random(seed)
    pacers = [Pacer(rng) for _ in range(200)]
    fires = _fire_times(pacers, lambda t: 6.0 if t < 5.0 else 1.0, until=10.0)
    worst, mean = _worst_bin(fires, 6.0, 10.0)
    assert mean == pytest.approx(20, rel=0.1)  # 200 rps in 100 ms bins
    # Kept phases would put all 200 users in the first 1/6 s of each second (~120 per bin).
    assert worst < 2.5 * mean


@pytest.mark.parametrize("seed", [0, 1])
def test_users_late_after_a_stall_are_spread_again(seed: int) -> None:
    rng = random.Random(seed)
    pacers = [Pacer(rng) for _ in range(200)]
    # Every answer between t=2 and t=3 s takes until t=3 s (a stalled server), then 2 ms again.
    fires = _fire_times(pacers, lambda t: 2.0, until=8.0,
                        response_s=lambda t: 3.0 - t if 2.0 <= t < 3.0 else 0.002)
    worst, mean = _worst_bin(fires, 4.0, 8.0)
    assert mean == pytest.approx(40, rel=0.1)
    assert worst < 2.5 * mean


def test_rate_tracks_the_target_through_a_ramp() -> None:
    rng = random.Random(3)
    pacers = [Pacer(rng) for _ in range(100)]
    # The rate steps up once a second from 1 to 5 per user; each second should see ~100 * rate.
    fires = _fire_times(pacers, lambda t: 1.0 + min(int(t), 4), until=7.0)
    for second in range(1, 7):
        sent = sum(second <= t < second + 1 for t in fires)
        assert sent == pytest.approx(100 * (1 + min(second, 4)), rel=0.15), second


def test_closed_loop_and_paused() -> None:
    pacer = Pacer(random.Random(0))
    assert pacer.wait(0.0, None) == 0.0
    assert pacer.wait(0.0, 0.0) == 1.0
    first = pacer.wait(10.0, 4.0)
    assert 0.0 <= first <= 0.25
