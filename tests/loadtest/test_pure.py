"""SLOs, window statistics, Triton metrics parsing and payload serialization (no Triton)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from tritonstack.loadtest.campaign.slo import TOTAL, Slo, evaluate
from tritonstack.loadtest.campaign.spec import InputSpec, Traffic
from tritonstack.loadtest.runner import metrics, payloads, stats


def test_slo_parse_and_describe_margins() -> None:
    slos = [Slo.parse(t) for t in ("p99_ms < 100", "rps >= 1000", "embed: error_rate <= 0.001")]
    assert slos[2].scope == "embed" and str(slos[1]) == "rps >= 1000"
    rows = {TOTAL: {"requests": 10, "p99_ms": 120.0, "rps": 1200.0, "error_rate": 0.0}}
    verdicts = evaluate(slos, rows)
    assert [v.passed for v in verdicts] == [False, True, False]
    assert verdicts[0].describe() == "FAIL p99_ms < 100: measured 120 (20 over)"
    assert verdicts[1].describe() == "PASS rps >= 1000: measured 1200 (200 above)"
    assert "no requests were measured for embed" in verdicts[2].describe()
    short = evaluate([slos[1]], {TOTAL: {"requests": 5, "rps": 812.5}})[0]
    assert short.describe() == "FAIL rps >= 1000: measured 812.5 (187.5 short)"


def test_window_diff_merge_and_percentiles() -> None:
    old = {TOTAL: stats.snapshot_entry(10, 0, 100.0, {10: 10})}
    new = {TOTAL: stats.snapshot_entry(110, 1, 1100.0 + 10_000, {10: 108, 99: 1, 250: 1}),
           "m": stats.snapshot_entry(5, 0, 50.0, {10: 5})}
    window = stats.diff(new, old)
    assert window[TOTAL]["requests"] == 100 and window[TOTAL]["hist"] == {10: 98, 99: 1, 250: 1}
    rows = stats.summarize(window, duration_s=2.0)
    assert rows[TOTAL]["rps"] == 50.0 and rows[TOTAL]["error_rate"] == 0.01
    assert rows[TOTAL]["p50_ms"] == 10 and rows[TOTAL]["p95_ms"] == 10 and rows[TOTAL]["max_ms"] == 250
    assert rows[TOTAL]["p99_ms"] == 250  # Locust's definition: 1 of 100 at 250 ms makes the p99
    merged = stats.merge([window, window])
    assert merged[TOTAL]["requests"] == 200 and merged[TOTAL]["hist"][10] == 196
    assert stats.percentile({}, 0.99) == 0.0


def test_shed_requests_count_as_errors_but_are_timed_apart() -> None:
    counters = stats.with_total({
        "embed": stats.snapshot_entry(90, 1, 90 * 40.0, {40: 89, 95: 1}),
        stats.shed_name("embed"): stats.snapshot_entry(10, 10, 10 * 2.0, {2: 9, 60: 1}),
    })
    assert counters[TOTAL]["requests"] == 90 and counters[stats.shed_name(TOTAL)]["requests"] == 10
    rows = stats.summarize(counters, duration_s=1.0)
    assert stats.shed_name("embed") not in rows and stats.shed_name(TOTAL) not in rows
    for name in ("embed", TOTAL):
        row = rows[name]
        assert (row["requests"], row["errors"], row["shed"]) == (100, 11, 10)
        assert (row["rps"], row["accepted_rps"]) == (100.0, 90.0)
        assert row["error_rate"] == pytest.approx(0.11) and row["hard_error_rate"] == pytest.approx(0.01)
        assert row["shed_rate"] == pytest.approx(0.10) and row["shed_p99_ms"] == 60
        assert row["p99_ms"] == 95 and row["p50_ms"] == 40  # accepted requests only
    verdicts = evaluate([Slo.parse("p99_ms < 100"), Slo.parse("shed_rate <= 0.05")], rows)
    assert [v.passed for v in verdicts] == [True, False]


def test_memory_trend_is_a_least_squares_slope_per_minute() -> None:
    flat = metrics.memory_trend([(60.0 * i, 900.0 + (i % 2)) for i in range(10)])
    assert flat is not None and abs(flat["slope_mb_per_min"]) < 0.2 and flat["max_mb"] == 901
    leak = metrics.memory_trend([(60.0 * i, 900.0 + 5 * i) for i in range(10)])
    assert leak is not None and leak["slope_mb_per_min"] == pytest.approx(5.0)
    assert (leak["first_mb"], leak["last_mb"], leak["span_s"]) == (900.0, 945.0, 540.0)
    assert metrics.memory_trend([(0.0, 900.0)]) is None


def test_memory_trend_tells_warm_up_from_a_leak_by_the_second_half() -> None:
    warm_up = metrics.memory_trend([(60.0 * i, 900.0 + min(i, 4) * 3) for i in range(10)])
    assert warm_up is not None and warm_up["slope_mb_per_min"] > 1
    assert warm_up["late_slope_mb_per_min"] == pytest.approx(0.0)
    leak = metrics.memory_trend([(60.0 * i, 900.0 + i) for i in range(10)])
    assert leak is not None and leak["late_slope_mb_per_min"] == pytest.approx(1.0)
    assert metrics.memory_trend([(0.0, 1.0), (60.0, 2.0)])["late_slope_mb_per_min"] is None


def test_process_memory_trends_follow_each_process_seen_in_every_window() -> None:
    windows = [{"start_s": 60.0 * i, "duration_s": 60.0,
                "server_rss_by_process_mb": {"tritonserver": 50.0, "minilm_0_0": 140.0 + i,
                                             **({"late_stub": 1.0} if i else {})}}
               for i in range(4)]
    for w in windows:
        w["server_rss_mb"] = sum(w["server_rss_by_process_mb"].values())
    total, trends = metrics.window_memory_trends(windows)
    assert total is not None and total["samples"] == 4 and total["first_mb"] == 190.0
    assert sorted(trends) == ["minilm_0_0", "tritonserver"]
    assert trends["minilm_0_0"]["slope_mb_per_min"] == pytest.approx(1.0)
    assert trends["tritonserver"]["last_mb"] == 50.0


PROM = """# HELP x
nv_inference_request_success{model="m",version="1"} 110
nv_inference_request_failure{model="m",reason="BACKEND",version="1"} 2
nv_inference_request_failure{model="m",reason="OTHER",version="1"} 1
nv_inference_count{model="m",version="1"} 110
nv_inference_exec_count{model="m",version="1"} 11
nv_inference_queue_duration_us{model="m",version="1"} 5500
nv_inference_compute_infer_duration_us{model="m",version="1"} 11000
nv_inference_request_success{model="idle",version="1"} 0
nv_cpu_utilization 0.5
"""


def test_triton_metrics_deltas_per_model() -> None:
    after = metrics.parse_prometheus(PROM)
    assert after["m"]["nv_inference_request_failure"] == 3
    before = {"m": {"nv_inference_request_success": 10, "nv_inference_count": 10,
                    "nv_inference_exec_count": 1}}
    rows = metrics.model_deltas(after, before, duration_s=2.0)
    assert set(rows) == {"m"}
    assert rows["m"]["rps"] == 50 and rows["m"]["avg_batch"] == 10.0
    assert rows["m"]["avg_queue_us"] == 55.0 and rows["m"]["failures"] == 3
    assert rows["m"]["avg_compute_infer_us"] == 110.0 and rows["m"]["avg_compute_input_us"] == 0.0
    assert metrics.model_deltas(None, before, 1.0) == {}


def test_requests_are_serialized_once_with_raw_contents() -> None:
    traffic = Traffic(model="add_one", inputs=(InputSpec("INPUT", "FP32", (2, 4), 3.0),),
                      outputs=("OUTPUT",))
    pool = payloads.build_pool(traffic)
    assert len(pool) == 1
    request = service_pb2.ModelInferRequest.FromString(pool[0])
    assert request.model_name == "add_one" and list(request.inputs[0].shape) == [2, 4]
    assert np.frombuffer(request.raw_input_contents[0], np.float32).tolist() == [3.0] * 8
    assert request.outputs[0].name == "OUTPUT"


def test_bytes_layout_and_random_pool() -> None:
    assert payloads.serialize_bytes([b"ab", b""]) == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)
    traffic = Traffic(model="t", inputs=(InputSpec("TEXT", "BYTES", (1, 1), "hi", random=True),), pool=5)
    assert len(set(payloads.build_pool(traffic))) > 1


@pytest.mark.parametrize("weights", [[1.0], [3.0, 1.0], [0.2, 0.3, 0.5]])
def test_mix_schedule_follows_weights(weights: list[float]) -> None:
    schedule = payloads.mix_schedule(weights)
    for i, w in enumerate(weights):
        assert schedule.count(i) / len(schedule) == pytest.approx(w / sum(weights), abs=0.01)


def test_keyed_traffic_gives_each_row_one_users_rollout_key() -> None:
    from tritonstack.loadtest.campaign.spec import CampaignError

    traffic = Traffic(model="t", inputs=(InputSpec("TEXT", "BYTES", (1, 1), "hi", random=True),), pool=7,
                      keys=3)
    keys = [service_pb2.ModelInferRequest.FromString(raw).parameters["rollout_key"].string_param
            for raw in payloads.build_pool(traffic)]
    assert keys == ["user-0", "user-1", "user-2", "user-0", "user-1", "user-2", "user-0"]
    parsed = Traffic.from_dict("traffic[0]", {"pipeline": "classify_digit", "keys": 10,
                                              "key_parameter": "uid"})
    assert parsed.keys == 10 and parsed.key_parameter == "uid"
    with pytest.raises(CampaignError, match="parameter name"):
        Traffic.from_dict("traffic[0]", {"pipeline": "classify_digit", "keys": 10, "key_parameter": "a b"})
