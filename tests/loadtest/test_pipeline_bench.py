"""bench-pipelines' in-process side: the limit it divides by, and ORT on the batches as served."""

from __future__ import annotations

import numpy as np
import pytest

from tritonstack.loadtest.bench.pipeline import _text_feeds, bench_texts, sweep_until_shed
from tritonstack.loadtest.errors import RunFailed
from tritonstack.serving.batching import plan_runs


def _padding(feeds: list[dict[str, np.ndarray]]) -> float:
    mask = [f["attention_mask"] for f in feeds]
    return 1 - sum(int(m.sum()) for m in mask) / sum(m.size for m in mask)


@pytest.mark.parametrize("length", ["short", "long"])
def test_limit_and_as_served_feeds_hold_the_same_sentences_and_the_limit_pads_least(length):
    texts = bench_texts(length)
    limit, served, single, tokens = _text_feeds(8, texts)
    batches = len(texts) // 8
    assert sum(len(f["input_ids"]) for f in limit) == sum(len(f["input_ids"]) for f in served) == 8 * batches
    # the same tokens on both sides, only grouped differently
    tokens_in = [sum(int(f["attention_mask"].sum()) for f in feeds) for feeds in (limit, served)]
    assert tokens_in[0] == tokens_in[1]
    assert _padding(limit) < min(0.05, _padding(served))  # sorted by length against arrival order
    assert len(served) > batches  # arrival-order batches are cut into runs, as the runner cuts them
    assert 10 < tokens < 40 and len(single) == 64
    for f in limit + served:
        assert set(f) == {"input_ids", "attention_mask", "token_type_ids"}
        assert f["attention_mask"][:, 0].all()  # no row is all padding


SHED = ("perf_analyzer exited with 99: Thread [53] had error: in ensemble 'embed', overloaded: more "
        "rows queued than the model computes at once (64 rows waited for one execution of at most 32, "
        "admit_rows)")  # what perf_analyzer printed at 64 callers against the demo (2026-12-05)


def _measure(shed_from: int, error: str = SHED):
    def measure(level: int) -> dict:
        if level >= shed_from:
            raise RunFailed(error)
        return {"concurrency": level}
    return measure


def test_a_level_the_server_sheds_at_ends_the_sweep_and_the_levels_below_stand():
    sweep, shed_at = sweep_until_shed((16, 32, 64, 128), _measure(64))
    assert [r["concurrency"] for r in sweep] == [16, 32] and shed_at == 64
    assert sweep_until_shed((16, 32), _measure(64)) == ([{"concurrency": 16}, {"concurrency": 32}], None)


def test_shedding_at_the_first_level_or_another_failure_is_still_an_error():
    with pytest.raises(RunFailed, match="overloaded"):
        sweep_until_shed((64, 128), _measure(64))  # nothing measured
    with pytest.raises(RunFailed, match="connection refused"):
        sweep_until_shed((16, 32), _measure(32, "perf_analyzer exited with 99: connection refused"))


def test_as_served_runs_are_the_runners_own_cuts():
    texts = bench_texts("short")[:8]
    _, served, _, _ = _text_feeds(8, texts)
    _, _, single, _ = _text_feeds(1, texts)
    lengths = [s["input_ids"]["shape"][0] for s in single[:8]]
    runs = plan_runs([{"batch": 1, "sequence_length": n} for n in lengths])
    assert [len(f["input_ids"]) for f in served] == [len(r) for r in runs]
    assert [f["input_ids"].shape[1] for f in served] == [max(lengths[i] for i in r) for r in runs]


@pytest.mark.triton
def test_bench_pipelines_reports_the_servers_cpu_per_request_against_in_process_ort(
        demo_repository, tmp_path, capsys):
    """The command end to end on the demo repository (it used to die on its own --concurrency)
    gives issue #35's figure: the server's CPU per request beside in-process ORT's per row."""
    import json

    from tritonstack.loadtest.bench.pipeline import BEST_LAYOUT_BATCHES
    from tritonstack.loadtest.cli import main

    code = main(["bench-pipelines", "--model-repository", str(demo_repository), "--pipeline", "classify_digit",
                 "--concurrency", "4", "--duration", "2s", "--out", str(tmp_path), "--json"])
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)["results"]
    by_process = row["best"]["cpu_us_per_request"]
    assert row["server_cpu_us_per_request"] == by_process["server"] > 0
    assert by_process["server"] >= by_process["tritonserver"] + by_process["digits_cnn"] - 2  # rounding
    assert row["generator_cpu_us_per_request"] == by_process["perf_analyzer"] > 0  # apart, not counted
    layout = row["in_process_best_layout"]
    assert layout["batch"] in BEST_LAYOUT_BATCHES and set(layout["by_batch"]) == {str(b) for b in BEST_LAYOUT_BATCHES}
    assert layout["cpu_us_per_row"] == min(layout["by_batch"].values()) > 0
    assert row["cpu_ratio"] == round(row["server_cpu_us_per_request"] / layout["cpu_us_per_row"], 2)
    assert (tmp_path / "pipeline-bench.json").exists()
