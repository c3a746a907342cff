"""The python-ort runner's pure functions (no Triton) and the runner inside a real Triton."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.converters import tiny
from tritonstack.converters import carry
from tritonstack.converters.triton_config import DynamicBatching, config_for_target, io_from_onnx
from tritonstack.serving import admission, batching, requests, session
from tritonstack.serving.errors import InvalidInput
from tritonstack.serving.text import TextFront

INPUTS = [requests.TensorInfo("input_ids", np.dtype(np.int64), ("sequence",)),
          requests.TensorInfo("attention_mask", np.dtype(np.int64), ("sequence",))]


def ids(batch: int, length: int, value: int = 3) -> np.ndarray:
    return np.full((batch, length), value, dtype=np.int64)


def test_a_version_carries_serving_code_that_imports_from_its_own_folder_alone(tmp_path):
    """What a python-ort version carries imports in an isolated interpreter whose path is the
    version folder (as in NVIDIA's image, where the project is not installed), and pulls in no
    other project package."""
    carry.copy_into(tmp_path, "ort_runner")
    code = ("import sys; sys.path[:] = [p for p in sys.path if 'site-packages' in p or 'lib/python' in p]; "
            f"sys.path.insert(0, {str(tmp_path)!r}); "
            "import serving.batching, serving.cpu, serving.golden, serving.metrics, serving.priority, "
            "serving.requests, serving.session, serving.text, serving.drift, serving.split, serving.tally, "
            "serving.agreement, serving.classes; "
            "assert serving.__file__.startswith(" + repr(str(tmp_path)) + "), serving.__file__; "
            "print(sorted(m for m in sys.modules if m.startswith('tritonstack')))")
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=False,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "model.py").read_bytes() == (carry.PACKAGE / "models" / "ort_runner.py").read_bytes()


def test_check_request_returns_sizes_per_named_axis():
    sizes = requests.check_request({"input_ids": ids(2, 5), "attention_mask": ids(2, 5, 1)}, INPUTS)
    assert sizes == {"batch": 2, "sequence": 5}


@pytest.mark.parametrize(("arrays", "message"), [
    ({"input_ids": ids(1, 5), "attention_mask": ids(1, 4)}, "disagree on 'sequence': 5 vs 4"),
    ({"input_ids": ids(1, 5), "attention_mask": ids(2, 5)}, "disagree on 'batch'"),
    ({"input_ids": ids(1, 5).astype(np.int32), "attention_mask": ids(1, 5)}, "dtype int32"),
    ({"input_ids": np.zeros((1, 5, 2), np.int64), "attention_mask": ids(1, 5)}, "expected rank 2"),
    ({"attention_mask": ids(1, 5)}, "'input_ids' is missing"),
    ({"input_ids": ids(1, 0), "attention_mask": ids(1, 0)}, "'sequence' has length 0"),
])
def test_check_request_rejects_bad_requests(arrays, message):
    with pytest.raises(InvalidInput, match=message):
        requests.check_request(arrays, INPUTS)


LIMITS = requests.Limits.from_parameters({"value_ranges": "attention_mask:0:2,input_ids:0:100",
                                        "axis_limits": "sequence:8"})


def test_limits_parse_from_the_config_parameters():
    assert LIMITS.value_ranges == {"attention_mask": (0, 2), "input_ids": (0, 100)}
    assert LIMITS.axis_limits == {"sequence": 8}
    assert requests.Limits.from_parameters({}) == requests.Limits()


@pytest.mark.parametrize(("arrays", "message"), [
    ({"input_ids": ids(1, 5, 100), "attention_mask": ids(1, 5, 1)}, "holds 100, outside 0..99"),
    ({"input_ids": ids(1, 5, -1), "attention_mask": ids(1, 5, 1)}, "holds -1, outside 0..99"),
    ({"input_ids": ids(1, 5), "attention_mask": ids(1, 5, 2)}, "'attention_mask' holds 2"),
    ({"input_ids": ids(1, 9), "attention_mask": ids(1, 9, 1)}, "'sequence' is 9 .* longer than this model"),
])
def test_limits_refuse_values_and_lengths_the_model_cannot_take(arrays, message):
    with pytest.raises(InvalidInput, match=message):
        requests.check_request(arrays, INPUTS, LIMITS)
    assert requests.check_request({"input_ids": ids(1, 8, 99), "attention_mask": ids(1, 8, 1)}, INPUTS,
                                LIMITS) == {"batch": 1, "sequence": 8}


PIXELS = requests.Limits.from_parameters({"value_ranges": "image:0.0:16.0"})
IMAGE = [requests.TensorInfo("image", np.dtype(np.float32), (8, 8))]


@pytest.mark.parametrize(("value", "message", "reason"), [
    (255.0, r"holds 0..255, outside 0..16, the scale this model was trained on", "out_of_range"),
    (-0.5, r"holds -0.5..0, outside 0..16", "out_of_range"),
    (np.nan, "contains NaN or Inf", "not_finite"),
    (np.inf, "contains NaN or Inf", "not_finite"),
])
def test_float_inputs_are_held_to_their_range_both_ends_included(value, message, reason):
    image = np.zeros((2, 8, 8), np.float32)
    image[1, 3, 4] = value
    with pytest.raises(InvalidInput, match=message) as caught:
        requests.check_request({"image": image}, IMAGE, PIXELS)
    assert caught.value.reason == reason
    edges = np.zeros((2, 8, 8), np.float32)
    edges[1] = 16.0
    assert requests.check_request({"image": edges}, IMAGE, PIXELS) == {"batch": 2}


@pytest.mark.parametrize(("arrays", "reason"), [
    ({"attention_mask": ids(1, 5)}, "missing"),
    ({"input_ids": ids(1, 5).astype(np.int32), "attention_mask": ids(1, 5)}, "bad_dtype"),
    ({"input_ids": ids(1, 5), "attention_mask": ids(1, 4)}, "bad_shape"),
    ({"input_ids": ids(1, 0), "attention_mask": ids(1, 0)}, "empty"),
    ({"input_ids": ids(1, 9), "attention_mask": ids(1, 9, 1)}, "too_long"),
    ({"input_ids": ids(1, 5, 100), "attention_mask": ids(1, 5, 1)}, "out_of_range"),
])
def test_every_refusal_names_its_reason_for_the_data_quality_counter(arrays, reason):
    with pytest.raises(InvalidInput) as caught:
        requests.check_request(arrays, INPUTS, LIMITS)
    assert caught.value.reason == reason


def test_text_front_tokenizes_like_the_tokenizer_step_and_refuses_bad_text():
    from tritonstack.ensembles.build import minilm_tokenizer_file
    from tritonstack.serving.text import encode, load_tokenizer

    front = TextFront(str(minilm_tokenizer_file().parent),
                      {"text_input": "TEXT", "max_length": "8"},
                      ["input_ids", "attention_mask", "token_type_ids"])
    requests = [["a short one", "and a rather longer sentence than that"], ["hi"]]
    arrays, truncated = front.encode(requests)
    reference = encode(load_tokenizer(minilm_tokenizer_file(), 8), requests[0])
    assert [len(parts) for parts in arrays] == [1, 1]  # one set per request
    np.testing.assert_array_equal(arrays[0][0]["input_ids"], reference.input_ids)
    assert arrays[1][0]["input_ids"].shape == (1, 3)  # its own length: [CLS] hi [SEP], no padding
    assert truncated == 1  # the long sentence, cut at 8 tokens
    per_text, _ = front.encode(requests, per_text=True)  # one set per text, each unpadded
    assert [[p["input_ids"].shape for p in parts] for parts in per_text] == [[(1, 5), (1, 8)], [(1, 3)]]
    np.testing.assert_array_equal(per_text[0][1]["input_ids"], reference.input_ids[1:])
    np.testing.assert_array_equal(per_text[0][0]["input_ids"][0], reference.input_ids[0, :5])
    assert front.decode(np.array([[b"caf\xc3\xa9"]], dtype=object)) == ["caf\u00e9"]
    with pytest.raises(InvalidInput, match=r"TEXT\[0\] is empty") as caught:
        front.decode(np.array([[b"  "]], dtype=object))
    assert caught.value.reason == "empty"


def test_an_all_zero_attention_mask_is_refused():
    """Issue #32, item 13: a row whose mask hides every token was answered with a zero embedding."""
    mask = ids(2, 5, 1)
    mask[1] = 0
    with pytest.raises(InvalidInput, match="row 1 of input 'attention_mask' is all zeros") as caught:
        requests.check_request({"input_ids": ids(2, 5), "attention_mask": mask}, INPUTS)
    assert caught.value.reason == "empty"


def test_check_request_rejects_wrong_fixed_dim():
    image = [requests.TensorInfo("image", np.dtype(np.float32), (1, 8, 8))]
    with pytest.raises(InvalidInput, match="fixed dims"):
        requests.check_request({"image": np.zeros((2, 1, 8, 7), np.float32)}, image)


def test_concat_pads_to_longest_with_zeros():
    batches = [{"input_ids": ids(1, 2, 7), "attention_mask": ids(1, 2, 1)},
               {"input_ids": ids(2, 4, 9), "attention_mask": ids(2, 4, 1)}]
    merged = batching.concat_padded(batches, INPUTS)
    assert merged["input_ids"].tolist() == [[7, 7, 0, 0], [9, 9, 9, 9], [9, 9, 9, 9]]
    assert merged["attention_mask"][0].tolist() == [1, 1, 0, 0]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 9)), min_size=1, max_size=6))
def test_concat_padded_puts_each_request_at_its_rows_and_pads_the_rest(shapes):
    batches = [{"input_ids": np.full((rows, length), k + 1, np.int64),
                "attention_mask": np.ones((rows, length), np.int64)}
               for k, (rows, length) in enumerate(shapes)]
    merged = batching.concat_padded(batches, INPUTS)
    longest = max(length for _, length in shapes)
    assert merged["input_ids"].shape == (sum(rows for rows, _ in shapes), longest)
    assert merged["input_ids"].flags.c_contiguous and merged["input_ids"].dtype == np.int64
    row = 0
    for k, (rows, length) in enumerate(shapes):
        assert (merged["input_ids"][row:row + rows, :length] == k + 1).all()
        assert (merged["input_ids"][row:row + rows, length:] == 0).all()
        assert merged["attention_mask"][row:row + rows].sum() == rows * length
        row += rows


def _seq(rows, length):
    return {"batch": rows, "sequence": length}


def test_plan_runs_keeps_long_requests_from_padding_short_ones():
    sizes = [_seq(1, 10), _seq(1, 12), _seq(1, 100), _seq(1, 11), _seq(2, 90)]
    assert batching.plan_runs(sizes) == [[0, 3, 1], [4, 2]]
    assert batching.plan_runs(sizes, max_padding_fraction=1.0) == [[0, 3, 1, 4, 2]]
    assert batching.plan_runs([{"batch": 3}, {"batch": 2}]) == [[0, 1]]  # fixed shapes: one run


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 128)), min_size=1, max_size=64),
       st.sampled_from([0.0, 0.1, 0.25, 0.5]))
def test_plan_runs_covers_every_request_once_within_the_padding_bound(pairs, fraction):
    sizes = [_seq(rows, length) for rows, length in pairs]
    runs = batching.plan_runs(sizes, fraction)
    assert sorted(i for run in runs for i in run) == list(range(len(sizes)))
    for run in runs:
        padded = sum(sizes[i]["batch"] for i in run) * max(sizes[i]["sequence"] for i in run)
        real = sum(sizes[i]["batch"] * sizes[i]["sequence"] for i in run)
        assert len(run) == 1 or padded - real <= fraction * padded + 1e-9


def test_split_outputs_returns_rows_and_trims_padded_axes():
    outputs = {"emb": np.arange(6, dtype=np.float32).reshape(3, 2),
               "tokens": np.ones((3, 4, 2), np.float32)}
    infos = [requests.TensorInfo("emb", np.dtype(np.float32), (2,)),
             requests.TensorInfo("tokens", np.dtype(np.float32), ("sequence", 2))]
    parts = batching.split_outputs(outputs, [{"batch": 1, "sequence": 2}, {"batch": 2, "sequence": 4}], infos)
    assert parts[0]["emb"].tolist() == [[0, 1]]
    assert parts[1]["emb"].tolist() == [[2, 3], [4, 5]]
    assert parts[0]["tokens"].shape == (1, 2, 2)
    assert parts[1]["tokens"].shape == (2, 4, 2)


def test_padding_does_not_change_masked_mean_embeddings(tmp_path):
    session = ort.InferenceSession(str(tiny.export_embedder_onnx(tmp_path / "m.onnx")))
    a = {"input_ids": np.array([[5, 6]], np.int64), "attention_mask": ids(1, 2, 1)}
    b = {"input_ids": np.array([[1, 2, 3, 4, 5]], np.int64), "attention_mask": ids(1, 5, 1)}
    merged = batching.concat_padded([a, b], INPUTS)
    together = session.run(["embedding"], merged)[0]
    alone = session.run(["embedding"], a)[0]
    np.testing.assert_allclose(together[:1], alone, atol=1e-6)


def test_onnx_axes_and_provider_choice():
    assert requests.onnx_axes(["batch", "seq", 384], [-1, 384]) == ("seq", 384)
    assert requests.onnx_axes([None, None], [-1]) == ("axis1",)
    usable, dropped = session.choose_providers("CUDAExecutionProvider,CPUExecutionProvider",
                                              ["CPUExecutionProvider"])
    assert usable == ["CPUExecutionProvider"] and dropped == ["CUDAExecutionProvider"]
    assert session.parse_parameters({"parameters": {"k": {"string_value": "v"}}}) == {"k": "v"}


@pytest.mark.parametrize(("rows", "limit", "served"), [
    ([1, 1, 1, 1, 1], 2, 2),      # the newest two
    ([1, 1, 1], 0, 3),            # no limit
    ([1, 1, 1], 3, 3),            # exactly at the limit
    ([2, 1, 4], 5, 2),            # 4 + 1 fit, the oldest 2 rows would not
    ([1, 1, 9], 4, 1),            # a request larger than the limit is served alone, never refused
    ([3, 0, 1], 2, 2),            # a refused (invalid, 0-row) request costs nothing
    ([], 4, 0),
])
def test_admission_serves_the_newest_requests_that_fit(rows, limit, served):
    assert admission.admitted(rows, limit) == served


@given(st.lists(st.integers(0, 8), max_size=40), st.integers(0, 16))
@settings(max_examples=200, deadline=None)
def test_admission_never_computes_more_than_the_limit_unless_one_request_needs_it(rows, limit):
    n = admission.admitted(rows, limit)
    kept = rows[len(rows) - n:]
    assert (n >= 1) == bool(rows)
    if limit and n > 1:
        assert sum(kept) <= limit
    if limit and n < len(rows):
        assert sum(kept) + rows[-n - 1] > limit, "refused a request that would have fit"


def test_the_clients_know_the_runners_overload_refusal():
    from tritonstack.client import is_shed

    assert is_shed(f"in ensemble 'embed', {admission.SHED_MESSAGE} (40 rows waited ...)")


def test_a_budget_in_milliseconds_admits_what_fits_at_the_measured_time():
    budget = admission.Admission(budget_ms=30, cold=0)
    assert budget.limit() == 0, "nothing measured yet: nothing is refused"
    budget.observe(16, 0.040)  # 2.5 ms a row on a slow CPU
    assert budget.limit() == 12
    assert budget.why() == ("admit_ms 30 of which 0.0 waited: 0.00 ms + 2.50 ms of CPU a row x 1.00 "
                            "wall/CPU measured here")
    fast = admission.Admission(budget_ms=30, cold=0)
    fast.observe(30, 0.030)  # 1 ms a row: the same budget admits more rows on a faster CPU
    assert fast.limit() == 30
    assert admission.Admission(max_rows=16, budget_ms=30).limit() == 16
    capped = admission.Admission(max_rows=16, budget_ms=30, cold=0)
    capped.observe(16, 0.016)  # the budget would admit 30: the cap in rows is the smaller
    assert capped.limit() == 16 and capped.why() == "admit_rows"
    slow = admission.Admission(budget_ms=1, cold=0)
    slow.observe(8, 0.040)
    assert slow.limit() == 1, "the newest request is always served"
    rows_only = admission.Admission(max_rows=4)
    rows_only.observe(4, 1.0)
    assert rows_only.limit() == 4, "no budget: times are not used"


def test_the_budget_counts_the_wait_behind_the_previous_execution():
    """A batch handed over as the previous execution ends queued during it: the two share the
    budget. One handed to an idle instance waited for nothing and gets all of it."""
    budget = admission.Admission(budget_ms=60, cold=0)
    budget.observe(10, 0.020, end=100.0)  # 2 ms a row, ended at t = 100 s
    assert budget.limit(100.0005) == 20, "right after a 20 ms execution: 40 ms are left"
    assert budget.waited == pytest.approx(0.0195)
    assert budget.limit(100.5) == 30, "after half a second idle: all 60 ms"
    assert budget.limit(100.010) == 25, "10 ms idle: what queued waited at most 10 ms"
    budget.observe(30, 0.060, end=200.0)
    assert budget.limit(200.0) == 1, "the previous execution took the whole budget: serve the newest"


def test_the_time_of_an_execution_is_learnt_as_a_fixed_part_and_a_part_per_row():
    learnt = admission.ExecutionTime(cold=0)
    assert learnt.line() is None and learnt.rows_within(0.04) is None
    learnt.observe(0, 0.5)  # computed nothing (every request refused or invalid): no figure
    learnt.observe(1, float("nan"))
    assert learnt.line() is None
    for rows in [1, 3, 2, 6, 4, 1, 5, 8, 2, 3]:  # light load: 3 ms a run + 2 ms a row
        learnt.observe(rows, 0.003 + 0.002 * rows)
    fixed, per_row = learnt.line()
    assert fixed == pytest.approx(0.003) and per_row == pytest.approx(0.002)
    # A burst: 40 ms holds 18 rows. A plain time per row at light load (2.9 ms) would allow 13.
    assert learnt.rows_within(0.040) == 18


def test_wall_time_stretches_the_cpu_line_but_a_preempted_execution_does_not_bend_it():
    shared = admission.ExecutionTime(cold=0)
    for rows in [1, 3, 2, 6, 4, 1, 5, 8, 2, 3]:  # the core is shared: wall time is twice the CPU
        cpu = 0.003 + 0.002 * rows
        shared.observe(rows, 2 * cpu, cpu)
    assert shared.stretch == pytest.approx(2.0)
    assert shared.rows_within(0.040) == 8  # 20 ms of CPU: (20 - 3) / 2
    # One row that waited 9 ms for the core: on wall time it would make a line of ~9 ms a row
    shared.observe(1, 0.014, 0.005)
    fixed, per_row = shared.line()
    assert fixed == pytest.approx(0.003, abs=1e-4) and per_row == pytest.approx(0.002, abs=1e-4)
    assert 2.0 < shared.stretch < 2.1, "the stretch grows a little"
    assert shared.rows_within(0.040) == 8


def test_the_first_executions_and_small_ones_of_one_size_refuse_nothing():
    """perf_analyzer's 8 callers were refused at start: the warmup's cold execution and one-row
    ones made 5 ms of CPU a row where the line is 1.3 ms + 1.9 ms a row (AMD EPYC Zen 4)."""
    learnt = admission.ExecutionTime()  # three cold executions
    for _ in range(3):
        learnt.observe(1, 0.050)
    assert learnt.line() is None, "the cold executions are not counted"
    for _ in range(10):
        learnt.observe(1, 0.0032)  # one row each: the fixed part cannot be told from the row's
    assert learnt.line() is None and learnt.rows_within(0.040) is None
    learnt.observe(3, 0.0070)
    learnt.observe(5, 0.0108)
    assert learnt.line() is not None, "sizes that vary by a row or more: the line is determined"
    noisy = admission.ExecutionTime(cold=0)
    for rows, cpu in [(2, 0.0036), (6, 0.0124), (2, 0.0034), (6, 0.0126)]:  # fixed part < 0
        noisy.observe(rows, cpu)
    assert noisy.line() == (0.0, pytest.approx(0.00205, rel=0.01)), "the line through 0 instead"


def test_steady_overload_uses_the_time_per_row_at_its_size_and_forgets_older_executions():
    learnt = admission.ExecutionTime(decay=0.5, cold=0)
    for rows in [1, 4, 2]:
        learnt.observe(rows, 0.005 * rows)
    for _ in range(30):  # the CPU got slower (a neighbour): 16 rows now take 48 ms
        learnt.observe(16, 0.048)
    assert learnt.line() == (0.0, pytest.approx(0.003, rel=1e-3))
    assert learnt.rows_within(0.040) == 13


@pytest.mark.parametrize(("rows", "ms"), [(-1, 0.0), (0, -1.0), (0, float("inf")), (0, float("nan"))])
def test_an_admission_out_of_range_is_refused(rows, ms):
    with pytest.raises(ValueError, match="admit_rows must be >= 0 and admit_ms a finite number"):
        admission.Admission(rows, ms)


# --- inside a real Triton -------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder_repo(tmp_path_factory) -> Path:
    from tritonstack.converters.repository import write_version

    repo = tmp_path_factory.mktemp("ort_runner_repo")
    onnx_path = tiny.export_embedder_onnx(repo.parent / "embedder.onnx")
    inputs, outputs = io_from_onnx(onnx_path)
    config = config_for_target("python-ort", "tiny_embedder", inputs, outputs, max_batch_size=8,
                               intra_op_threads=1)
    # A long queue delay and no preferred sizes so that concurrent requests share one batch.
    config = dataclasses.replace(config, dynamic_batching=DynamicBatching((), 500_000))
    write_version(repo, config, {"model.onnx": onnx_path, **carry.version_files("ort_runner")}, {"test": True})
    admitting = config_for_target("python-ort", "tiny_admit", inputs, outputs, max_batch_size=8,
                                  intra_op_threads=1, admit_rows=2)
    admitting = dataclasses.replace(admitting, dynamic_batching=DynamicBatching((), 500_000))
    write_version(repo, admitting, {"model.onnx": onnx_path, **carry.version_files("ort_runner")},
                  {"test": True})
    # A budget of 1 us: whatever this CPU's time per row, it admits one row an execution.
    budget = config_for_target("python-ort", "tiny_budget", inputs, outputs, max_batch_size=8,
                               intra_op_threads=1, admit_ms=0.001)
    budget = dataclasses.replace(budget, dynamic_batching=DynamicBatching((), 500_000))
    write_version(repo, budget, {"model.onnx": onnx_path, **carry.version_files("ort_runner")},
                  {"test": True})
    return repo


def _send_together(client, model: str, requests: list[tuple[np.ndarray, np.ndarray]]) -> list:
    """One async request per (input_ids, attention_mask), all in flight at once; results or
    errors in order."""
    import tritonclient.grpc as grpcclient

    results: list = [None] * len(requests)
    done = threading.Event()
    lock = threading.Lock()

    def callback(i, result, error):
        with lock:
            results[i] = error if error is not None else result
            if all(r is not None for r in results):
                done.set()

    for i, (input_ids, mask) in enumerate(requests):
        tensors = [grpcclient.InferInput("input_ids", list(input_ids.shape), "INT64"),
                   grpcclient.InferInput("attention_mask", list(mask.shape), "INT64")]
        tensors[0].set_data_from_numpy(input_ids)
        tensors[1].set_data_from_numpy(mask)
        client.async_infer(model, tensors, lambda result, error, i=i: callback(i, result, error))
    assert done.wait(30), "Triton did not answer every request"
    return results


@pytest.mark.triton
def test_runner_in_triton_batches_ragged_requests_and_isolates_a_bad_one(embedder_repo, tmp_path):
    import tritonclient.grpc as grpcclient

    from tests.conftest import start_server

    reference = ort.InferenceSession(str(tiny.export_embedder_onnx(tmp_path / "ref.onnx")))
    good = [np.array([[4, 5, 6]], np.int64),
            np.array([[1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1]], np.int64),
            np.array([[9]], np.int64)]
    requests = [(g, np.ones_like(g)) for g in good]
    requests.insert(2, (np.array([[1, 2, 3, 4]], np.int64), np.ones((1, 3), np.int64)))  # mismatched

    with start_server(embedder_repo) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        results = _send_together(client, "tiny_embedder", requests)
        bad = results.pop(2)
        assert isinstance(bad, grpcclient.InferenceServerException)
        assert "disagree on 'sequence': 4 vs 3" in bad.message()
        for (input_ids, mask), result in zip([requests[i] for i in (0, 1, 3)], results, strict=True):
            assert not isinstance(result, Exception), result
            expected = reference.run(["embedding"], {"input_ids": input_ids, "attention_mask": mask})[0]
            np.testing.assert_allclose(result.as_numpy("embedding"), expected, atol=1e-5)

        stats = client.get_inference_statistics("tiny_embedder").model_stats[0]
        assert stats.execution_count < 4, "the four concurrent requests were never batched together"
        client.close()


@pytest.mark.triton
def test_admission_refuses_the_oldest_past_admit_rows_before_computing(embedder_repo, tmp_path):
    """Five single rows queue into one batch (500 ms batcher delay) of a model that computes two
    at a time: two are answered exactly, three are refused as overload, which the client reads
    as OVERLOADED and Triton's /metrics counts; one request of three rows is still served."""
    import urllib.request

    import tritonclient.grpc as grpcclient

    from tests.conftest import start_server
    from tritonstack.client import is_shed

    reference = ort.InferenceSession(str(tiny.export_embedder_onnx(tmp_path / "ref.onnx")))
    rows = [np.array([[i + 1, i + 2, i + 3]], np.int64) for i in range(5)]
    with start_server(embedder_repo) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        results = _send_together(client, "tiny_admit", [(r, np.ones_like(r)) for r in rows])
        refused = [r for r in results if isinstance(r, grpcclient.InferenceServerException)]
        assert len(refused) == 3, [str(r) for r in refused]
        for error in refused:
            assert error.status() == "StatusCode.UNAVAILABLE" and is_shed(error.message()), error
            assert "5 rows waited for one execution of at most 2" in error.message()
        for input_ids, result in zip(rows, results, strict=True):
            if not isinstance(result, Exception):
                expected = reference.run(["embedding"], {"input_ids": input_ids,
                                                         "attention_mask": np.ones_like(input_ids)})[0]
                np.testing.assert_allclose(result.as_numpy("embedding"), expected, atol=1e-5)

        big = np.arange(1, 10, dtype=np.int64).reshape(3, 3)
        (alone,) = _send_together(client, "tiny_admit", [(big, np.ones_like(big))])
        assert not isinstance(alone, Exception), alone
        assert alone.as_numpy("embedding").shape[0] == 3
        client.close()

        metrics = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        line = next(m for m in metrics.splitlines() if m.startswith("triton_stack_shed_total{"))
        assert 'model="tiny_admit"' in line and 'reason="overloaded"' in line
        assert float(line.rsplit(" ", 1)[1]) == 3


@pytest.mark.triton
def test_a_budget_in_milliseconds_sheds_by_the_instances_own_time_per_row(embedder_repo):
    """admit_ms turns into rows by what this instance measured: with a budget shorter than any
    row, an execution of five queued rows serves one and refuses four, and says why (which one
    is served is the order they reached Triton in, which gRPC does not keep)."""
    import tritonclient.grpc as grpcclient

    from tests.conftest import start_server
    from tritonstack.client import is_shed

    rows = [np.array([[i + 1, i + 2, i + 3]], np.int64) for i in range(5)]
    with start_server(embedder_repo) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for _ in range(5):  # past the cold executions, executions of 8 rows tell the cost of a row
            ids = np.arange(1, 25, dtype=np.int64).reshape(8, 3)
            (alone,) = _send_together(client, "tiny_budget", [(ids, np.ones_like(ids))])
            assert not isinstance(alone, Exception), alone  # one request alone is always served
        results = _send_together(client, "tiny_budget", [(r, np.ones_like(r)) for r in rows])
        refused = [r for r in results if isinstance(r, grpcclient.InferenceServerException)]
        assert len(refused) == 4, [str(r) for r in refused]
        for error in refused:
            assert error.status() == "StatusCode.UNAVAILABLE" and is_shed(error.message()), error
            assert "5 rows waited for one execution of at most 1, admit_ms 0.001 of which " in error.message()
            assert "ms of CPU a row x " in error.message() and "wall/CPU measured here" in error.message()
        client.close()
