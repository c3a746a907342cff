"""Rollouts on a real Triton: the digits pipeline (classify_digit) with several versions of
digits_cnn written by the test, under concurrent load that must never see a failed request.

Versions: 1 the primary; 2 a byte-for-byte copy (shadow agreement must be exactly 1.0); 3 a
retrain from another seed (a good candidate); 4 ``mislabelled`` (every label shifted by one:
broken, yet through the export's gates); 5 slow (the same answers, several ms more per image);
6 a truncated ONNX file (fails to load); 7 golden data that do not match (fails the self-check).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import start_server
from tests.helpers import repos
from tritonstack.client import Client
from tritonstack.converters.api import export
from tritonstack.converters.spec import Precision
from tritonstack.demo.data import digits_split
from tritonstack.ensembles.exports import demo_specs
from tritonstack.ensembles.pipelines import digit_steps
from tritonstack.ensembles.writer import write_ensemble
from tritonstack.rollout import repository as rollout_repo
from tritonstack.rollout.controller import Rollout, Target
from tritonstack.rollout.errors import BadRequest
from tritonstack.rollout.slo import Slo
from tritonstack.rollout.state import read_log, read_split
from tritonstack.server import TritonServer

pytestmark = [pytest.mark.triton, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
MODEL = "digits_cnn"
SOURCES = {1: "tritonstack.converters.sources.digits:factory", 3: "tritonstack.converters.sources.digits:retrained",
           4: "tritonstack.converters.sources.digits:mislabelled", 5: "tests.rollout.slow_digits:factory"}
IMAGES = np.array(digits_split(0).x_test_raw, np.float32)


def _export(repo: Path, source: str) -> int:
    spec = dataclasses.replace(demo_specs(repo)[1], source=source, precisions=(Precision.INT8,), keep=20)
    return export(spec, progress=None).models[0].version


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("rollout_repo")
    assert _export(repo, SOURCES[1]) == 1
    shutil.copytree(repo / MODEL / "1", repo / MODEL / "2")
    for version in (3, 4, 5):
        assert _export(repo, SOURCES[version]) == version
    shutil.copytree(repo / MODEL / "1", repo / MODEL / "6")
    onnx = repo / MODEL / "6" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:1000])
    shutil.copytree(repo / MODEL / "1", repo / MODEL / "7")
    golden = dict(np.load(repo / MODEL / "7" / "golden.npz"))
    golden = {k: (np.roll(v, 1, axis=-1) if v.dtype.kind == "f" and k != "input:image" else v)
              for k, v in golden.items()}
    np.savez(repo / MODEL / "7" / "golden.npz", **golden)
    rollout_repo.set_versions(repo, MODEL, [1])  # what a deployment serves before any rollout
    write_ensemble(repo, digit_steps(MODEL))
    repos.write_add_one(repo)  # a model with one version
    return repo


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[TritonServer]:
    srv = start_server(repo, model_control="explicit", load_models=("*",))
    yield srv
    srv.close()


@pytest.fixture
def target(server: TritonServer, repo: Path, tmp_path: Path) -> Target:
    return Target(repository=repo, urls=(server.grpc_url,), metrics_urls=(server.metrics_url,),
                  reports=tmp_path / "reports")


@pytest.fixture(autouse=True)
def from_rest(server: TritonServer, repo: Path, tmp_path: Path) -> Iterator[None]:
    """Each test starts with version 1 served alone, whatever the one before it left."""
    rollout = Rollout(Target(repository=repo, urls=(server.grpc_url,), metrics_urls=(server.metrics_url,),
                             reports=tmp_path / "reports"), MODEL, progress=lambda _: None)
    if read_split(repo / MODEL) is not None or (repo / rollout_repo.router_name(MODEL)).exists():
        rollout.finish(promote=False)
    if _served(server) != [1]:
        rollout_repo.set_versions(repo, MODEL, [1])
        with Client(urls=[server.grpc_url], timeout_s=120) as client:
            client.load_model(MODEL)
    yield


class Load:
    """Callers of classify_digit with a user key each, paced, counting every failure. About 200
    requests a second, as before classify_digit became one step: with 4 ms pauses the one-step
    pipeline drew ~700/s, and the slow candidate's share alone then wanted more CPU than the two
    vCPUs have (its queue grew until requests hit their deadlines)."""

    def __init__(self, url: str, callers: int = 4, pause_s: float = 0.015):
        self.url, self.callers, self.pause_s = url, callers, pause_s
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(callers)]

    def _run(self, caller: int) -> None:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(self.url)
        i = caller
        while not self.stop.is_set():
            image = IMAGES[i % len(IMAGES)][None]
            tensor = grpcclient.InferInput("IMAGE", list(image.shape), "FP32")
            tensor.set_data_from_numpy(image)
            try:
                client.infer("classify_digit", [tensor], parameters={"rollout_key": f"user-{i % 500}"},
                             client_timeout=30)
                with self.lock:
                    self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                with self.lock:
                    self.failures.append(str(exc)[:300])
            i += self.callers
            time.sleep(self.pause_s)
        client.close()

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
        assert self.ok > 0
        total = self.ok + len(self.failures)
        assert self.failures == [], f"{len(self.failures)} failed of {total}: {self.failures[:3]}"


def _served(server: TritonServer) -> list[int]:
    with Client(urls=[server.grpc_url]) as client:
        return sorted(int(m.version) for m in client.list_models()
                      if m.name == MODEL and m.state == "READY")


def _at_rest(repo: Path, server: TritonServer, version: int) -> None:
    """Nothing of a rollout left: the one version served, the ensemble on the model, no router."""
    assert _served(server) == [version]
    assert not (repo / rollout_repo.router_name(MODEL)).exists()
    assert read_split(repo / MODEL) is None
    assert rollout_repo.ensembles_over(repo, MODEL) == ["classify_digit"]


def _cli(server: TritonServer, repo: Path, *argv: str, url: str | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tritonstack.rollout", *argv, "--model-repository", str(repo),
         "--url", url or server.grpc_url, "--metrics-url", server.metrics_url, "--out", str(repo.parent / "reports")],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_bad_input_is_refused_in_one_line_and_the_primary_keeps_serving(server, repo) -> None:
    cases = [
        (("split", "nope", "--candidate", "2", "--weight", "5"), 2, "no model 'nope'"),
        (("split", MODEL, "--candidate", "99", "--weight", "5"), 2, "has no version 99"),
        (("split", MODEL, "--candidate", "2", "--weight", "150"), 2, "percentage from 0 to 100"),
        (("split", "add_one", "--candidate", "1", "--weight", "5"), 2, "has one version"),
        (("split", MODEL, "--candidate", "1", "--weight", "5"), 2, "is the one digits_cnn serves"),
        (("split", "classify_digit", "--candidate", "2", "--weight", "5"), 2, "is an ensemble"),
        (("canary", MODEL, "--candidate", "2", "--steps", "5,25"), 2, "the last step must be 100"),
        (("rollback", MODEL), 2, "no rollout of digits_cnn is under way"),
        (("split", MODEL, "--candidate", "6", "--weight", "5"), 1, "did not load"),
        (("split", MODEL, "--candidate", "7", "--weight", "5"), 1, "did not load"),
    ]
    with Load(server.grpc_url):
        for argv, code, message in cases:
            result = _cli(server, repo, *argv)
            assert result.returncode == code, (argv, result.stderr)
            err = result.stderr.strip()
            assert message in err and "\n" not in err and "Traceback" not in err, (argv, err)
        assert "golden" in _cli(server, repo, "split", MODEL, "--candidate", "7", "--weight", "5").stderr
        no_server = _cli(server, repo, "split", MODEL, "--candidate", "2", "--weight", "5",
                         url="127.0.0.1:1")
        assert no_server.returncode == 3 and "no Triton answers" in no_server.stderr
        garbage = _cli(server, repo, "status", MODEL, url="garbage")  # issue #32, item 13: was exit 1
        assert garbage.returncode == 2 and "is not host:port" in garbage.stderr
    _at_rest(repo, server, 1)
    refused = [e for e in read_log(repo / MODEL) if e["event"] == "refused"]
    assert {e["candidate"] for e in refused} == {6, 7}


def _labels(client: Client, version: int) -> np.ndarray:
    logits = client.infer(MODEL, {"image": IMAGES}, version=str(version))["logits"]
    return logits.argmax(axis=1)


def test_a_sticky_split_holds_its_ratio_and_changes_live(server, repo, target) -> None:
    rollout = Rollout(target, MODEL, progress=lambda _: None)
    with Load(server.grpc_url):
        rollout.start(4, "split")
        rollout.set_split(weight=30)
        with Client(urls=[server.grpc_url]) as client:
            primary, candidate = _labels(client, 1), _labels(client, 4)
            usable = np.flatnonzero(primary != candidate)  # an answer then says which arm gave it
            assert len(usable) > 400

            def arms(weight_keys: range) -> dict[str, int]:
                placed = {}
                for n, key in enumerate(weight_keys):
                    image = usable[n % len(usable)]
                    seen = set()
                    for _ in range(2):
                        label = int(client.infer("classify_digit", {"IMAGE": IMAGES[image][None]},
                                                 parameters={"rollout_key": f"k{key}"})["LABEL"][0, 0])
                        seen.add(4 if label == candidate[image] else 1 if label == primary[image] else 0)
                    assert len(seen) == 1 and 0 not in seen, f"key k{key} saw arms {seen}"
                    placed[f"k{key}"] = seen.pop()
                return placed

            at_30 = arms(range(600))
            share = sum(v == 4 for v in at_30.values()) / len(at_30)
            assert 0.24 <= share <= 0.36  # 600 keys: the binomial sd is 1.9 points
            rollout.set_split(weight=60)
            at_60 = arms(range(600))
            assert all(at_60[k] == 4 for k, v in at_30.items() if v == 4)
            assert 0.54 <= sum(v == 4 for v in at_60.values()) / len(at_60) <= 0.66
        rollout.finish(promote=False)
    _at_rest(repo, server, 1)


def _requests_to(server: TritonServer, version: int) -> float:
    """Requests Triton counts as answered by ``version`` of the model (its own metric)."""
    import urllib.request

    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("nv_inference_request_success{")
               and f'model="{MODEL}"' in line and f'version="{version}"' in line)


def test_a_split_at_weight_0_sends_the_candidate_nothing_from_its_first_request(server, repo, target) -> None:
    """Issue #32, item 6: the candidate was loaded before the router was wired, and the ensemble,
    which asks for the newest loaded version, sent it every request for about 3 s."""
    rollout = Rollout(target, MODEL, progress=lambda _: None)
    with Load(server.grpc_url) as load:
        time.sleep(0.5)
        rollout.start(4, "split")
        time.sleep(1.0)
        assert load.ok > 50
        assert _requests_to(server, 4) == 1  # its own warmup request (batch1), none of the traffic
        rollout.finish(promote=False)
    _at_rest(repo, server, 1)


def test_shadow_of_an_identical_candidate_agrees_exactly(server, repo, target) -> None:
    rollout = Rollout(target, MODEL, progress=lambda _: None)
    with Load(server.grpc_url):
        path = rollout.shadow(2, share=100, duration_s=4)
    report = json.loads(path.with_name("report.json").read_text())
    assert report["agreement"]["compared"] > 200
    assert report["agreement"]["mean"] == 1.0 and report["agreement"]["mean_distance"] < 1e-6
    assert report["arms"]["candidate"]["requests"] == 0  # shadow: the primary answered everything
    assert "mean agreement **1.0000**" in path.read_text()
    _at_rest(repo, server, 1)


def test_a_canary_rolls_back_a_broken_and_a_slow_candidate_by_itself(server, repo, target) -> None:
    rollout = Rollout(target, MODEL, progress=lambda _: None)
    slo = Slo(min_requests=60, min_compared=40, max_p99_ms=1000)
    with Load(server.grpc_url):
        broken = rollout.canary(4, (10, 50, 100), hold_s=30, slo=slo, compare=50)
        slow = rollout.canary(5, (25, 100), hold_s=30, slo=slo, compare=0)
    assert not broken.promoted and broken.breaches[0].slo == "agreement"
    assert broken.breaches[0].measured < 0.2
    assert not slow.promoted and slow.breaches[0].slo == "p99_ratio", slow.breaches
    events = [e["event"] for e in read_log(repo / MODEL)]
    assert events.count("breach") >= 2 and events[-1] == "finished"
    assert "rolled back at 10 %" in broken.report.read_text()
    _at_rest(repo, server, 1)


# This test is about the controller's record and resumption, not latency: a p99 over a few
# seconds of a shared CPU is not what it judges (the canary tests above do).
RESUME_SLOS = ("--min-requests", "50", "--min-compared", "30", "--max-p99-ratio", "5", "--max-p99-ms", "1000")


def test_a_killed_canary_resumes_and_promotes_then_rolls_forward_again(server, repo) -> None:
    log = repo / MODEL / "rollout.jsonl"
    with Load(server.grpc_url):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tritonstack.rollout", "canary", MODEL, "--candidate", "3", "--steps", "20,50,100",
             "--hold", "6s", *RESUME_SLOS, "--model-repository", str(repo),
             "--url", server.grpc_url, "--metrics-url", server.metrics_url,
             "--out", str(repo.parent / "reports")], cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(e["event"] == "held" and e["weight"] == 20 for e in read_log(repo / MODEL)[-5:]):
                break
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        split = read_split(repo / MODEL)
        events = read_log(repo / MODEL)[-6:]
        assert split is not None and split.candidate == 3 and split.weight in (20, 50), events
        status = _cli(server, repo, "status", MODEL)
        assert status.returncode == 0 and json.loads(status.stdout)["split"]["candidate"] == 3
        resumed = _cli(server, repo, "canary", MODEL, "--candidate", "3", "--steps", "20,50,100",
                       "--hold", "6s", *RESUME_SLOS)
        assert resumed.returncode == 0, resumed.stderr
        assert "promoted: digits_cnn v3" in resumed.stdout
        # and back to version 1 the same way: a promoted version is the primary of the next rollout
        back = _cli(server, repo, "canary", MODEL, "--candidate", "1", "--steps", "50,100", "--hold", "4s",
                    *RESUME_SLOS)
        assert back.returncode == 0, back.stderr
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert "resume" in events and events.count("promote") >= 2
    _at_rest(repo, server, 1)


def test_a_second_rollout_waits_for_the_first(server, repo, target) -> None:
    rollout = Rollout(target, MODEL, progress=lambda _: None)
    rollout.start(2, "split")
    try:
        with pytest.raises(BadRequest, match="v2 is under way"):
            rollout.start(3, "split")
        # the same candidate continues the rollout under way; with no traffic there is no evidence
        outcome = Rollout(target, MODEL, progress=lambda _: None).canary(
            2, (100,), hold_s=2, slo=Slo(min_requests=10_000), max_hold_s=3)
        assert not outcome.promoted and outcome.breaches[0].slo == "evidence"
        assert "too little traffic" in outcome.breaches[0].evidence
    finally:
        if read_split(repo / MODEL) is not None:
            rollout.finish(promote=False)
    _at_rest(repo, server, 1)
