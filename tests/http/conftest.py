"""Two real tritonservers for the HTTP front's tests, and the front itself as a subprocess.

* ``demo_triton``: the demo repository (real MiniLM ``embed``), built by the session fixture.
* ``standin_triton``: stand-in Python-backend pipelines with the IO ``ensembles add`` writes:
  ``rerank`` (QUERY, TEXT -> SCORE: shared words), ``sentiment`` (TEXT -> LABEL, PROBABILITIES,
  names in labels.txt), and ``busy_embed`` (TEXT -> EMBEDDING, slow, a queue of one: Triton
  sheds what does not fit, for the 429 tests), and two that fail every request for the 500 tests:
  ``failing_embed`` (answers Triton's error, INTERNAL) and ``nan_embed`` (answers NaN vectors).
* ``restricted_triton``: ``unit_embed`` alone, with the model-repository and inference APIs
  restricted by an access token, for the 502 tests.
* ``start_front(triton_url, *flags)``: ``python -m tritonstack.http serve --port 0`` as a user
  runs it; the URL it prints, and the process, stopped at teardown.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.helpers import repos
from tritonstack.server import TritonServer

ROOT = Path(__file__).resolve().parents[2]

RERANK_MODEL = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            queries = pb_utils.get_input_tensor_by_name(request, "QUERY").as_numpy().reshape(-1)
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            scores = [float(len(set(q.decode().lower().split()) & set(t.decode().lower().split()))) - 1.0
                      for q, t in zip(queries, texts)]
            out = pb_utils.Tensor("SCORE", np.array(scores, dtype=np.float32).reshape(-1, 1))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
'''

# Class 0 "negative", 1 "neutral", 2 "positive": the probability of "positive" grows with the
# count of "good" in the text, of "negative" with the count of "bad".
SENTIMENT_MODEL = '''
import os
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        folder = os.path.join(args["model_repository"])
        with open(os.path.join(folder, "labels.txt")) as f:
            self.labels = f.read().splitlines()

    def execute(self, requests):
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            logits = np.array([[t.decode().count("bad"), 0.5, t.decode().count("good")] for t in texts],
                              dtype=np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
            names = np.array([self.labels[k].encode() for k in probs.argmax(axis=1)], dtype=object)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("LABEL", names.reshape(-1, 1)), pb_utils.Tensor("PROBABILITIES", probs)]))
        return responses
'''

BUSY_EMBED_MODEL = '''
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(0.5)
        responses = []
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().shape[0]
            out = pb_utils.Tensor("EMBEDDING", np.ones((n, 8), dtype=np.float32) / np.sqrt(8))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
'''

# A model that fails the request as a model does (Triton's error object; gRPC INTERNAL).
FAILING_EMBED_MODEL = '''
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("the model failed on purpose"))
                for _ in requests]
'''

# A model whose arithmetic broke (an overflow in reduced precision): NaN where vectors should be.
NAN_EMBED_MODEL = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().shape[0]
            out = pb_utils.Tensor("EMBEDDING", np.full((n, 8), np.nan, dtype=np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
'''

UNIT_EMBED_MODEL = BUSY_EMBED_MODEL.replace("time.sleep(0.5)", "pass")

LABELS = ("negative", "neutral", "positive")


def _embedder(repo: Path, name: str, model_py: str) -> Path:
    return repos.write_python_model(repo, name, model_py, f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: 64
        input [{{ name: "TEXT", data_type: TYPE_STRING, dims: [1] }}]
        output [{{ name: "EMBEDDING", data_type: TYPE_FP32, dims: [8] }}]
        """)


def write_standins(repo: Path) -> Path:
    repos.write_python_model(repo, "rerank", RERANK_MODEL, """\
        name: "rerank"
        backend: "python"
        max_batch_size: 64
        input [{ name: "QUERY", data_type: TYPE_STRING, dims: [1] },
               { name: "TEXT", data_type: TYPE_STRING, dims: [1] }]
        output [{ name: "SCORE", data_type: TYPE_FP32, dims: [1] }]
        """)
    folder = repos.write_python_model(repo, "sentiment", SENTIMENT_MODEL, """\
        name: "sentiment"
        backend: "python"
        max_batch_size: 64
        input [{ name: "TEXT", data_type: TYPE_STRING, dims: [1] }]
        output [{ name: "LABEL", data_type: TYPE_STRING, dims: [1] },
                { name: "PROBABILITIES", data_type: TYPE_FP32, dims: [3] }]
        """)
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    repos.write_python_model(repo, "busy_embed", BUSY_EMBED_MODEL, """\
        name: "busy_embed"
        backend: "python"
        max_batch_size: 1
        input [{ name: "TEXT", data_type: TYPE_STRING, dims: [1] }]
        output [{ name: "EMBEDDING", data_type: TYPE_FP32, dims: [8] }]
        dynamic_batching { max_queue_delay_microseconds: 0 default_queue_policy { max_queue_size: 1 } }
        """)
    _embedder(repo, "failing_embed", FAILING_EMBED_MODEL)
    _embedder(repo, "nan_embed", NAN_EMBED_MODEL)
    return repo


@pytest.fixture(scope="session")
def demo_triton(demo_repository: Path) -> Iterator[TritonServer]:
    server = start_server(demo_repository)
    yield server
    server.close()


@pytest.fixture(scope="session")
def standin_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_standins(tmp_path_factory.mktemp("http_standins"))


@pytest.fixture(scope="session")
def standin_triton(standin_repository: Path) -> Iterator[TritonServer]:
    server = start_server(standin_repository)
    yield server
    server.close()


TRITON_TOKEN = "triton-s3cret"


@pytest.fixture(scope="session")
def restricted_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """``unit_embed`` behind a Triton whose model-repository and inference APIs need
    ``TRITON_TOKEN`` (what the launcher does beyond loopback, and more)."""
    repo = tmp_path_factory.mktemp("http_restricted")
    _embedder(repo, "unit_embed", UNIT_EMBED_MODEL)
    server = start_server(repo, restricted_apis=("model-repository", "inference"), restricted_value=TRITON_TOKEN)
    yield server
    server.close()


class Front:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc, self.url = proc, url


def _launch(argv: list[str], env: dict[str, str]) -> Front:
    proc = subprocess.Popen([sys.executable, "-m", "tritonstack.http", "serve", "--port", "0", *argv],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the one line it prints once listening, or nothing if it failed
    if "listening on " not in line:
        proc.kill()
        raise AssertionError(f"the front did not start: {line}{proc.communicate(timeout=10)[1]}")
    url = line.split("listening on ", 1)[1].split()[0]
    return Front(proc, url)


@pytest.fixture
def start_front() -> Iterator[Callable[..., Front]]:
    """``start_front(triton_url, *flags, token=None, triton_token=None)``: a front on a free
    port; ``token`` its bearer token, ``triton_token`` the access token it sends to Triton."""
    started: list[Front] = []

    def start(triton_url: str, *flags: str, token: str | None = None, triton_token: str | None = None) -> Front:
        env = {k: v for k, v in os.environ.items()
               if k not in ("TRITONSTACK_HTTP_TOKEN", "TRITON_GRPC_URLS", "TRITON_ACCESS_TOKEN")}
        if token is not None:
            env["TRITONSTACK_HTTP_TOKEN"] = token
        if triton_token is not None:
            env["TRITON_ACCESS_TOKEN"] = triton_token
        front = _launch(["--url", triton_url, *flags], env)
        started.append(front)
        return front

    yield start
    for front in started:
        front.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            front.proc.wait(timeout=10)
        if front.proc.poll() is None:
            front.proc.kill()
            front.proc.wait()


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()
