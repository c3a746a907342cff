"""A real Prometheus scraping a real Triton, with the stack's own alert rules: normal traffic leaves
every drift score under the threshold and the drift alert silent; shifted traffic raises the
score of the feature that moved and puts that alert in pending (its `for: 1m` makes it fire a
minute later; promtool's unit tests cover the firing). Every dashboard query runs here too.

The model is a tiny CNN exported in the test (its profile.json is the export's reference on its
200 held-out images, uniform pixels in 0..1); its python-ort runner measures the drift."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from tests.conftest import start_server
from tests.monitoring.test_rules import MONITORING, dashboard_queries
from tritonstack.client import Client
from tritonstack.converters.api import ExportSpec, export
from tritonstack.server import TritonServer
from tritonstack.server.process import free_port

pytestmark = [pytest.mark.triton, pytest.mark.prometheus]
MODEL = "cnn"


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    tmp = tmp_path_factory.mktemp("monitored")
    export(ExportSpec("tests.converters.tiny:classifier_factory", MODEL, repository=tmp / "repo",
                      work_dir=tmp / "work"), progress=None)
    server = start_server(tmp / "repo")
    yield server
    server.close()


@pytest.fixture(scope="module")
def prometheus(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("prometheus")
    metrics = urllib.parse.urlparse(triton.metrics_url)
    config = tmp / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(MONITORING / "alerts.yml")],
        "scrape_configs": [{"job_name": "triton", "static_configs": [{"targets": [metrics.netloc]}]}],
    }))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("wb"))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    log = (tmp / "prometheus.log").read_text()[-2000:]
                    pytest.fail(f"Prometheus did not become ready: {log}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _api(url: str, path: str, **params: str) -> dict:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}/api/v1/{path}{query}", timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def _psi(url: str) -> dict[str, float]:
    rows = _api(url, "query", query=f'triton_stack_drift_psi{{model="{MODEL}"}}')["result"]
    return {r["metric"]["feature"]: float(r["value"][1]) for r in rows}


def _drift_alerts(url: str) -> list[dict]:
    return [a for a in _api(url, "alerts")["alerts"] if a["labels"]["alertname"] == "TritonModelDrift"]


def _send(triton: TritonServer, images: np.ndarray) -> None:
    """In requests of 25 rows (the model's max_batch_size is 32: a larger request would be split
    in two, back to back) 30 ms apart: the runner measures one batch per 20 ms at most."""
    with Client(urls=[triton.grpc_url], timeout_s=30) as client:
        for batch in np.array_split(images, len(images) // 25):
            client.infer(MODEL, {"image": batch})
            time.sleep(0.03)


def _until(check, timeout_s: float = 30.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def test_normal_traffic_stays_quiet_and_shifted_traffic_raises_the_drift_alert(triton, prometheus) -> None:
    rng = np.random.default_rng(11)
    normal = rng.uniform(0, 1, size=(1000, 1, 8, 8)).astype(np.float32)  # as the reference
    _send(triton, normal)
    window_full = f'triton_stack_drift_window_rows{{model="{MODEL}"}} >= 1000'
    assert _until(lambda: _api(prometheus, "query", query=window_full)["result"])
    time.sleep(3)  # a few more scrapes and rule evaluations of the full window
    scores = _psi(prometheus)
    assert scores and max(scores.values()) < 0.25, scores
    assert _drift_alerts(prometheus) == []

    _send(triton, normal * 0.3)  # the same images, darker: the pixel mean moves
    shifted = _until(lambda: _psi(prometheus).get("image_mean", 0.0) > 0.25 and _psi(prometheus))
    assert shifted, _psi(prometheus)
    assert shifted["image_mean"] > 1.0  # far past the threshold, not noise at its edge
    alerts = _until(lambda: _drift_alerts(prometheus), timeout_s=15)
    assert alerts and {a["state"] for a in alerts} <= {"pending", "firing"}
    moved = {a["labels"]["feature"] for a in alerts}
    assert "image_mean" in moved and all(shifted[f] > 0.25 for f in moved)
    assert all(a["labels"]["model"] == MODEL and a["labels"]["severity"] == "warning" for a in alerts)


def test_every_dashboard_query_runs_on_prometheus(triton, prometheus) -> None:
    for _title, expr in dashboard_queries():
        _api(prometheus, "query", query=expr)  # a query Prometheus cannot parse fails here
    assert _api(prometheus, "query", query="sum(nv_inference_request_success)")["result"]
