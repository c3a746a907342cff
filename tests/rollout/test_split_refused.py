"""A bad ``rollout.json`` on a real Triton: the router keeps the last good split, answers every
request, and counts each bad version of the file once in
``triton_stack_rollout_split_refused_total{model}`` on Triton's /metrics (issue #32, item 7).

The digits pipeline (classify_digit) with two byte-identical versions of digits_cnn; the split
wired at weight 0 to version 2, and every bad file asks for weight 100: had the router taken
any of them, version 2 would have answered traffic.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.rollout.test_served import Load  # paced classify_digit callers; none may fail
from tritonstack.converters.api import export
from tritonstack.converters.spec import Precision
from tritonstack.ensembles.exports import demo_specs
from tritonstack.ensembles.pipelines import digit_steps
from tritonstack.ensembles.writer import write_ensemble
from tritonstack.rollout import repository as rollout_repo
from tritonstack.rollout.controller import Rollout, Target
from tritonstack.rollout.state import read_split, write_split
from tritonstack.server import TritonServer
from tritonstack.serving.split import STATE_FILE

pytestmark = [pytest.mark.triton, pytest.mark.slow]
MODEL = "digits_cnn"
REFUSED = "triton_stack_rollout_split_refused_total"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("split_refused_repo")
    spec = dataclasses.replace(demo_specs(repo)[1], precisions=(Precision.INT8,))
    assert export(spec, progress=None).models[0].version == 1
    shutil.copytree(repo / MODEL / "1", repo / MODEL / "2")
    rollout_repo.set_versions(repo, MODEL, [1])
    write_ensemble(repo, digit_steps(MODEL))
    return repo


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[TritonServer]:
    srv = start_server(repo, model_control="explicit", load_models=("*",))
    yield srv
    srv.close()


def _samples(server: TritonServer) -> list:
    """Every sample on Triton's /metrics, parsed by prometheus_client's parser (as the project's
    readers of /metrics do)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def refused(server: TritonServer) -> float:
    return sum(s.value for s in _samples(server) if s.name == REFUSED and s.labels.get("model") == MODEL)


def answered_by(server: TritonServer, version: int) -> float:
    """Requests Triton counts as answered by ``version`` of the model (its own counter)."""
    return sum(s.value for s in _samples(server)
               if s.name == "nv_inference_request_success_total" and s.labels.get("model") == MODEL
               and s.labels.get("version") == str(version))


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not seen within {timeout_s:.0f} s: {what}"
        time.sleep(0.1)


def write_raw(model_dir: Path, text: str) -> None:
    """Replace rollout.json at once (a reader sees the old file or the new one), as a hand edit
    saved by an editor, or a newer controller's file, would."""
    fd, tmp = tempfile.mkstemp(dir=model_dir, prefix=f".{STATE_FILE}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, model_dir / STATE_FILE)


def test_each_bad_split_file_is_refused_counted_once_and_the_last_good_split_serves(server, repo) -> None:
    target = Target(repository=repo, urls=(server.grpc_url,), metrics_urls=(server.metrics_url,),
                    reports=repo.parent / "reports")
    rollout = Rollout(target, MODEL, progress=lambda _: None)
    folder = repo / MODEL
    good = rollout.start(2, "split")  # the router wired, candidate 2 at weight 0
    assert good.weight == 0
    want = json.loads(good.to_json()) | {"weight": 100}
    bad = {
        "a key that is not a parameter name": json.dumps(want | {"key": 5}),
        "weight 150": json.dumps(want | {"weight": 150}),
        "weight NaN": json.dumps(want | {"weight": float("nan")}),
        "mode x": json.dumps(want | {"mode": "x"}),
        "a JSON list": json.dumps([want]),
        "the candidate is the primary": json.dumps(want | {"candidate": good.primary}),
        "not JSON": json.dumps(want)[:-5],
        "no model and no primary": json.dumps({"weight": 100, "candidate": 2}),
    }
    try:
        with Load(server.grpc_url) as load:
            wait_for(lambda: load.ok >= 20, "traffic through the router")
            before = refused(server)
            assert before == 0  # the series appears with its first refusal
            candidate_before = answered_by(server, 2)
            for n, (case, text) in enumerate(bad.items(), 1):
                write_raw(folder, text)
                # published within about half a second of the refusal; each file refused once
                wait_for(lambda n=n: refused(server) >= n, f"refusal {n} ({case}) on /metrics")
                assert refused(server) == n, case
            served_meanwhile = load.ok
            wait_for(lambda: load.ok >= served_meanwhile + 20, "traffic on the last good split")
            assert answered_by(server, 2) == candidate_before  # weight 0 held: v2 answered nothing
            assert refused(server) == len(bad)  # the same bad file read again is not counted again

            write_split(folder, dataclasses.replace(good, weight=100))  # a good file is taken at once
            wait_for(lambda: answered_by(server, 2) > candidate_before + 10, "the good split taking effect")
            assert refused(server) == len(bad)
    finally:
        if read_split(folder) is None:
            write_split(folder, good)
        rollout.finish(promote=False)
    assert read_split(folder) is None and not (repo / rollout_repo.router_name(MODEL)).exists()
