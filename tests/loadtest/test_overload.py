"""Overload through a real Triton: queue policies shed at once, the client and Locust say so.

A model that takes 0.4 s per request with a queue of two is flooded; what is asserted is the
order of events (refusals come back before the first accepted request could finish) and how
each failure is labelled, never how fast anything ran.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import start_server
from tests.helpers import repos
from tritonstack.client import Client, ClientError, Status
from tritonstack.loadtest.cli import main as loadtest_main
from tritonstack.server import TritonServer

pytestmark = pytest.mark.triton

EXEC_S = 0.4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    repo = tmp_path_factory.mktemp("overload")
    # one request at a time, two may wait: the rest are refused on arrival
    repos.write_add_one(repo, "bounded", delay_s=EXEC_S, max_batch_size=1, queue_delay_us=0,
                        queue_policy="max_queue_size: 2")
    # requests that waited over 50 ms are refused (when the instance next looks at its queue)
    repos.write_add_one(repo, "timed", delay_s=EXEC_S, max_batch_size=8, queue_delay_us=0,
                        queue_policy="timeout_action: REJECT default_timeout_microseconds: 50000")
    repos.write_add_two_ensemble(repo, "timed_pipeline", step="timed")
    srv = start_server(repo)
    yield srv
    srv.close()


def _flood(server: TritonServer, model: str, n: int) -> list[tuple[float, ClientError | np.ndarray]]:
    """``n`` concurrent single requests; (seconds to the answer, error or output) for each."""
    results: list[tuple[float, ClientError | np.ndarray]] = []
    gate = threading.Barrier(n)

    def one(client: Client) -> None:
        gate.wait()
        start = time.perf_counter()
        try:
            x = np.zeros((1, 4), np.float32)
            out: ClientError | np.ndarray = client.infer(model, {"INPUT": x})["OUTPUT"]
        except ClientError as exc:
            out = exc
        results.append((time.perf_counter() - start, out))

    with Client(urls=server.grpc_url, timeout_s=30, retries=0) as client:
        threads = [threading.Thread(target=one, args=(client,)) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(results) == n, "every request got an answer"
    return results


def test_a_full_queue_refuses_at_once_and_serves_what_it_accepted(server: TritonServer) -> None:
    results = _flood(server, "bounded", 10)
    shed = [(t, r) for t, r in results if isinstance(r, ClientError)]
    served = [(t, r) for t, r in results if not isinstance(r, ClientError)]
    assert shed and served, "ten requests at a model that holds three must split"
    for _, err in shed:
        assert isinstance(err, ClientError)
        assert (err.status, err.shed, err.attempts) == (Status.OVERLOADED, True, 1)
        assert "Exceeds maximum queue size" in err.server_message
    # refused on arrival: before the first accepted request could have been computed
    assert max(t for t, _ in shed) < min(t for t, _ in served)
    assert min(t for t, _ in served) >= EXEC_S * 0.9
    for _, out in served:
        np.testing.assert_array_equal(out, np.ones((1, 4), np.float32))


def test_queue_timeout_through_an_ensemble_is_overloaded_not_unavailable(server: TritonServer) -> None:
    results = _flood(server, "timed_pipeline", 6)
    errors = [r for _, r in results if isinstance(r, ClientError)]
    assert errors, "six requests at one 0.4 s instance with a 50 ms queue timeout must shed some"
    for err in errors:
        assert err.status is Status.OVERLOADED, err
        assert "Request timeout expired" in err.server_message and "is Triton running" not in str(err)
    # still serving: a caller that opts in to retrying shed requests gets through
    with Client(urls=server.grpc_url, timeout_s=30, retries=30, retry_overloaded=True,
                backoff_initial_s=0.1, backoff_max_s=0.5) as client:
        out = client.infer("timed_pipeline", {"INPUT": np.zeros((1, 4), np.float32)})["OUTPUT"]
    np.testing.assert_array_equal(out, np.full((1, 4), 2, np.float32))


BOUNDED_TRAFFIC = """[[traffic]]
model = "bounded"
[traffic.inputs.INPUT]
datatype = "FP32"
shape = [1, 4]
"""


def _run_on_bounded(server: TritonServer, tmp_path: Path, name: str, body: str) -> tuple[int, Path]:
    """Run campaign ``name`` (``body``: its SLOs and load shape) against the "bounded" model;
    returns the exit code and the report folder."""
    campaign = tmp_path / f"{name}.toml"
    campaign.write_text(f'name = "{name}"\n{body}{BOUNDED_TRAFFIC}')
    report = tmp_path / "report"
    code = loadtest_main(["run", str(campaign), "--url", server.grpc_url, "--metrics-url", server.metrics_url,
                          "--out", str(report)])
    return code, report


def test_a_locust_campaign_times_shed_requests_apart(server: TritonServer, tmp_path: Path) -> None:
    code, report = _run_on_bounded(server, tmp_path, "flood", """\
slo = ["shed_rate > 0", "hard_error_rate <= 0"]
[[stages]]
duration_s = 3
users = 8
""")
    total = json.loads((report / "summary.json").read_text())["slo_window"]["stats"]["Aggregated"]
    assert code == 0, total
    assert total["shed"] > 0 and total["errors"] == total["shed"]
    assert total["requests"] > total["shed"]  # some were accepted and timed
    assert total["shed_p99_ms"] < total["p50_ms"]  # refusals do not wait for the model
    assert "| shed |" in (report / "report.md").read_text()


def test_a_concurrency_sweep_records_goodput_and_refusals_per_level(
        server: TritonServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # "bounded" holds three requests (one running, two queued): one closed-loop user is never
    # refused; four always have one over, refused and sending again at once (no back-off).
    code, report = _run_on_bounded(server, tmp_path, "sweep", """\
slo = ["max(hard_error_rate) <= 0", "min(goodput_rps) > 0", "max(p99_ms) < 5000"]
[concurrency]
levels = [1, 4]
seconds_per_level = 3
warmup_s = 1
""")
    summary = json.loads((report / "summary.json").read_text())
    assert code == 0, summary["verdicts"]
    sweep = summary["concurrency"]
    one, four = sweep["levels"]
    assert (one["users"], four["users"]) == (1, 4)
    assert one["refused_rps"] == 0 and four["refused_rps"] > 0 and one["goodput_rps"] > 0
    assert four["offered_rps"] > four["goodput_rps"] > 0 and four["other_errors"] == 0
    assert four["p99_ms"] >= EXEC_S * 1000 * 0.9  # accepted: answers only, the refusals timed apart
    assert sweep["saturating_users"] in (1, 4)
    assert sweep["highest_ratio"] == pytest.approx(four["goodput_rps"] / sweep["peak_goodput_rps"])
    assert "saturating level:" in capsys.readouterr().out
    assert (report / "goodput-vs-concurrency.png").stat().st_size > 0
    assert "## Goodput against concurrency" in (report / "report.md").read_text()
    page = (report / "report.html").read_text()
    assert "<h2>Goodput against concurrency</h2>" in page and "alt='goodput and accepted p99" in page
