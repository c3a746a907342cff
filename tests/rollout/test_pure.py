"""The rollout's arithmetic without a server: placement, agreement, SLO judgement, the report's
statistics, the state file and the metrics parser."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tritonstack.rollout.controller import parse_steps
from tritonstack.rollout.errors import BadRequest
from tritonstack.rollout.metrics import Snapshot, bucket_quantile, parse
from tritonstack.rollout.report import bootstrap_diff, newcombe, summarize, two_proportions, wilson
from tritonstack.rollout.slo import Slo, judge
from tritonstack.rollout.state import log_event, read_log, read_split, write_split
from tritonstack.serving.agreement import compare, kind_for
from tritonstack.serving.errors import InvalidSplit
from tritonstack.serving.split import Split, bucket, choose, compared
from tritonstack.serving.tally import LATENCY_BUCKETS_S, Tally


def test_a_key_always_lands_on_one_arm_and_a_higher_weight_only_moves_users_to_the_candidate() -> None:
    rng = random.Random(0)
    keys = [f"user-{i}" for i in range(2000)]
    at = {w: {k: choose(Split("m", 1, 2, weight=w), k, rng) for k in keys} for w in (5, 25, 50)}
    assert all(choose(Split("m", 1, 2, weight=25), k, rng) == at[25][k] for k in keys)
    for low, high in ((5, 25), (25, 50)):
        assert all(at[high][k] == 2 for k in keys if at[low][k] == 2)
    share = sum(v == 2 for v in at[25].values()) / len(keys)
    assert 0.22 < share < 0.28  # 2,000 keys: the binomial sd is ~1 point
    assert {choose(Split("m", 1, 2, weight=0), k, rng) for k in keys} == {1}
    assert {choose(Split("m", 1, 2, weight=100), k, rng) for k in keys} == {2}


def test_without_a_key_the_split_is_random_at_its_weight() -> None:
    rng = random.Random(1)
    split = Split("m", 1, 2, weight=10, compare=30)
    picks = [choose(split, None, rng) for _ in range(20_000)]
    assert 0.09 < picks.count(2) / len(picks) < 0.11
    assert 0.29 < sum(compared(split, rng) for _ in range(20_000)) / 20_000 < 0.31
    assert bucket("m", "k") == bucket("m", "k") != bucket("other", "k")


def test_agreement_per_kind() -> None:
    a = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    agree, distance = compare("embedding", a, a)
    assert np.allclose(agree, 1) and np.allclose(distance, 0)
    agree, _ = compare("embedding", a, a[::-1])
    assert np.allclose(agree, 0)
    logits = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    agree, distance = compare("classification", logits, logits[:, [1, 0, 2]])
    assert agree.tolist() == [0.0, 0.0] and (distance > 0.3).all()
    agree, distance = compare("classification", logits, logits + 5)  # softmax is shift-invariant
    assert agree.tolist() == [1.0, 1.0] and np.allclose(distance, 0)
    agree, _ = compare("score", np.array([[2.0], [2.0]]), np.array([[2.1], [2.5]]))
    assert agree.tolist() == [1.0, 0.0]
    assert compare("classification", logits, logits[:1])[0].tolist() == [0.0, 0.0]  # other shape
    assert kind_for("feature-extraction", (384,)) == "embedding"
    assert kind_for("text-classification", (1,)) == "score"
    assert kind_for("image-classification", (10,)) == "classification"


def test_a_split_refuses_what_is_not_a_split() -> None:
    for bad in ({"weight": 101}, {"weight": -1}, {"compare": 200}, {"weight": True}):
        with pytest.raises(InvalidSplit, match="percentage from 0 to 100"):
            Split("m", 1, 2, **bad)
    with pytest.raises(InvalidSplit, match="is the primary"):
        Split("m", 2, 2, weight=5)
    with pytest.raises(InvalidSplit, match="needs a candidate"):
        Split("m", 1, None, weight=5)
    with pytest.raises(InvalidSplit, match="mode"):
        Split("m", 1, 2, mode="yolo")
    for bad_steps in ("5,25", "25,5,100", "0,100", "5,x,100", "5,5,100", "5,150"):
        with pytest.raises(BadRequest, match="--steps"):
            parse_steps(bad_steps)
    assert parse_steps("5,25,50,100") == (5, 25, 50, 100)


def test_the_router_keeps_the_last_good_split_through_bad_files_and_counts_them(tmp_path) -> None:
    """Issue #32, item 7: "key": 5 failed most requests, and weight 150, NaN, mode "x", a JSON list
    or candidate = primary failed some with INTERNAL. Each is refused where the router reads it;
    the last good split stays in force and each bad version of the file is counted once."""
    import json
    import os

    from tritonstack.serving.split import SplitFile

    path = tmp_path / "rollout.json"
    good = Split("m", 1, 2, weight=25)
    path.write_text(good.to_json())
    split_file = SplitFile(path, refresh_s=0)
    bad = [{**json.loads(good.to_json()), **change} for change in (
        {"key": 5}, {"weight": 150}, {"weight": float("nan")}, {"mode": "x"}, {"candidate": 1},
        {"primary": "1"}, {"key": ""})]
    for i, data in enumerate([*bad, [1, 2], "not json"]):
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        os.utime(path, ns=(i + 10**18, i + 10**18))  # a new stamp even within one clock tick
        assert split_file.current() == good
        assert split_file.current() == good
        assert split_file.refused == i + 1
    path.write_text(Split("m", 1, 2, weight=50).to_json())
    assert split_file.current().weight == 50


def test_state_and_log_survive_on_disk(tmp_path) -> None:
    split = write_split(tmp_path, Split("m", 1, 2, weight=25, compare=10, mode="canary"))
    assert read_split(tmp_path) == split and split.changed_at > 0
    log_event(tmp_path, "step", weight=25)
    with open(tmp_path / "rollout.jsonl", "a") as f:
        f.write('{"event": "cut sho')  # a crash mid-line
    log_event(tmp_path, "held", weight=25)
    assert [e["event"] for e in read_log(tmp_path)] == ["step", "held"]
    (tmp_path / "rollout.json").write_text("{nonsense")
    with pytest.raises(BadRequest, match="not a rollout state"):
        read_split(tmp_path)


def _window(ok: dict[int, int], failed: dict[int, int], seconds: dict[int, float],
            compared: int = 0, agreement: float = 1.0) -> Snapshot:
    """A window where every request of version v took ``seconds[v]``."""
    snap = Snapshot()
    tally = Tally()
    for v in ok:
        tally.served(v, "x", "ok", ok[v], seconds[v])
        tally.served(v, "x", "error", failed.get(v, 0), seconds[v])
    for v, counts in tally.cumulative_buckets().items():
        snap.buckets[v] = dict(zip(LATENCY_BUCKETS_S, counts, strict=True))
    for (v, _, outcome), n in tally.requests.items():
        snap.requests[(v, outcome)] += n
    snap.compared[2] = compared
    snap.agreement_sum[2] = snap.agreement_sq_sum[2] = compared * agreement  # 0/1 agreement (labels)
    return snap


def test_the_slos_break_only_on_enough_evidence_and_name_it() -> None:
    split = Split("m", 1, 2, weight=25, compare=20)
    slo = Slo(min_requests=100, min_compared=50)
    good = _window({1: 300, 2: 120}, {}, {1: 0.002, 2: 0.002}, compared=60, agreement=0.99)
    assert judge(good, split, slo, "classification", 10) == []
    errors = _window({1: 300, 2: 110}, {2: 5}, {1: 0.002, 2: 0.002})
    (breach,) = judge(errors, split, slo, "classification", 10)
    assert breach.slo == "error_rate" and breach.version == 2 and "4.3% of 115 requests" in breach.evidence
    few = _window({1: 300, 2: 20}, {2: 5}, {1: 0.002, 2: 0.002})
    assert judge(few, split, slo, "classification", 10) == []  # 5 of 25: not yet evidence
    slow = _window({1: 300, 2: 150}, {}, {1: 0.002, 2: 0.04})
    assert [b.slo for b in judge(slow, split, slo, "classification", 10)] == ["p99_ratio"]
    slower = _window({1: 300, 2: 150}, {}, {1: 0.002, 2: 0.3})
    assert [b.slo for b in judge(slower, split, slo, "classification", 10)] == ["p99", "p99_ratio"]
    disagree = _window({1: 300, 2: 150}, {}, {1: 0.002, 2: 0.002}, compared=80, agreement=0.5)
    (breach,) = judge(disagree, split, slo, "classification", 10)
    assert breach.slo == "agreement" and breach.measured == pytest.approx(0.5)
    unlucky = _window({1: 300, 2: 150}, {}, {1: 0.002, 2: 0.002}, compared=56, agreement=52 / 56)
    assert judge(unlucky, split, slo, "classification", 10) == []  # 0.93 of 56 rows: not conclusive
    (breach,) = judge(unlucky, split, slo, "classification", 10, final=True)  # the step's verdict
    assert breach.slo == "agreement"
    one_error = _window({1: 300, 2: 150}, {2: 2}, {1: 0.002, 2: 0.002})
    assert judge(one_error, split, slo, "classification", 10) == []  # 1.3 % of 152: not conclusive
    assert judge(one_error, split, Slo(max_error_rate=0), "classification", 10)[0].slo == "error_rate"
    quiet = _window({1: 300, 2: 10}, {}, {1: 0.002, 2: 0.002}, compared=3)
    assert judge(quiet, split, slo, "classification", 10) == []
    (breach,) = judge(quiet, split, slo, "classification", 10, final=True)
    assert breach.slo == "evidence" and "10 requests answered" in breach.evidence


def test_histogram_quantiles_and_the_reports_statistics() -> None:
    cumulative = {0.001: 50, 0.002: 90, 0.005: 100, float("inf"): 100}
    assert bucket_quantile(cumulative, 0.5) == pytest.approx(0.001)
    assert bucket_quantile(cumulative, 0.99) == pytest.approx(0.002 + 0.003 * 0.9)
    rng = np.random.default_rng(0)
    same = bootstrap_diff(cumulative, cumulative, 0.5, rng)
    assert same is not None and same[0] == 0 and same[1] <= 0 <= same[2]
    slower = {0.002: 0, 0.005: 50, 0.0075: 100, float("inf"): 100}
    diff = bootstrap_diff(cumulative, slower, 0.5, rng)
    assert diff is not None and diff[1] > 0.002  # clearly slower, and the interval says so
    test = two_proportions(0, 1000, 30, 1000)
    assert test["p_value"] < 1e-5 and test["low"] > 0
    assert two_proportions(5, 1000, 5, 1000)["p_value"] == pytest.approx(1.0)
    window = _window({1: 2000, 2: 2000}, {}, {1: 0.002, 2: 0.002}, compared=100)
    summary = summarize(window, Split("m", 1, 2, weight=50, compare=20), "classification", 30)
    assert summary["comparison"]["not_worse"] and summary["agreement"]["mean"] == 1.0
    # 400 clean requests per arm cannot show the error rate within the 0.5 % margin: at zero
    # errors the interval still reaches ~0.95 % (a Wald interval said [0, 0] and "not worse")
    few = summarize(_window({1: 400, 2: 400}, {}, {1: 0.002, 2: 0.002}), Split("m", 1, 2, weight=50),
                    "classification", 30)
    assert not few["comparison"]["not_worse"]
    assert few["comparison"]["error_rate"]["high"] == pytest.approx(0.0095, abs=1e-4)


def test_error_rate_intervals_are_wilson_and_newcombe_not_wald() -> None:
    low, high = wilson(0, 100)
    assert low == 0 and high == pytest.approx(0.0370, abs=5e-4)  # Wald: [0, 0]
    assert wilson(100, 100) == (pytest.approx(0.9630, abs=5e-4), 1.0)
    low, high = wilson(10, 100)  # Newcombe (1998), table I: 10/100 -> 0.0552 .. 0.1744
    assert low == pytest.approx(0.0552, abs=1e-4) and high == pytest.approx(0.1744, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)  # no requests: no knowledge
    # Newcombe (1998), table II, example (h): 56/70 - 48/80 -> 0.0524 .. 0.3339 (method 10)
    low, high = newcombe(80 - 48, 80, 70 - 56, 70)  # failures of the complements: same difference
    assert -high == pytest.approx(0.0524, abs=1e-4) and -low == pytest.approx(0.3339, abs=1e-4)
    both_clean = two_proportions(0, 100, 0, 100)
    assert both_clean["difference"] == 0 and both_clean["high"] == pytest.approx(0.0370, abs=5e-4)
    assert both_clean["low"] == pytest.approx(-0.0370, abs=5e-4)


def test_metrics_parse_sums_replicas_and_subtracts_windows() -> None:
    text = "\n".join([
        "# TYPE triton_stack_rollout_requests_total counter",
        'triton_stack_rollout_requests_total{model="m",outcome="ok",role="primary",version="1"} 10',
        'triton_stack_rollout_requests_total{model="m",outcome="fallback",role="candidate",version="2"} 3',
        'triton_stack_rollout_requests_total{model="other",outcome="ok",role="primary",version="1"} 99',
        "# TYPE triton_stack_rollout_latency_seconds_bucket counter",
        'triton_stack_rollout_latency_seconds_bucket{le="0.001",model="m",version="1"} 4',
        'triton_stack_rollout_latency_seconds_bucket{le="+Inf",model="m",version="1"} 10',
        "# TYPE triton_stack_rollout_agreement_sum counter",
        'triton_stack_rollout_agreement_sum{model="m",version="2"} 1.5',
        "# TYPE triton_stack_rollout_compared_total counter",
        'triton_stack_rollout_compared_total{model="m",version="2"} 2',
        "# TYPE nv_inference_request_failure counter",
        'nv_inference_request_failure{model="m",version="2"} 3',
        ""])
    one = parse(text, "m")
    two = parse(text, "m", parse(text, "m"))  # two replicas
    assert one.answered(1) == 10 and one.failed(2) == 3 and one.triton_failure[2] == 3
    assert one.mean_agreement(2) == pytest.approx(0.75)
    window = two - one
    assert window.answered(1) == 10 and window.buckets[1][float("inf")] == 10
