"""``python -m tritonstack.ensembles serve FOLDER --name NAME``: one command from a tiny random HF folder to a
pipeline a running Triton (explicit model control, as the launcher starts it) serves, through the
converters' checks (INT8 and its gate by default), ``add``, and the repository API. The calls it
prints are run as printed: the Python snippet, the client's command line, the HTTP front's start
command, curl, and OpenAI's SDK. Each refusal is one line with its exit code, and a refusal before
the export leaves the repository as it was."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import start_server
from tests.converters import tiny
from tests.helpers import repos
from tritonstack.client import Client
from tritonstack.ensembles.cli import main
from tritonstack.server import TritonServer

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["where is my parcel", "How do I reset my password? The link has expired twice.", "ok"]
TOKEN = "serve-test-token"

pytestmark = pytest.mark.triton


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_printed(command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """A printed shell command as a user runs it (``python`` is this interpreter)."""
    argv = shlex.split(command)
    if argv[0] == "python":
        argv[0] = sys.executable
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
                          **kwargs)  # type: ignore[call-overload]


@contextlib.contextmanager
def _front(command: str) -> Iterator[None]:
    """The HTTP front, started with the printed command."""
    argv = shlex.split(command)
    env = {k: v for k, v in os.environ.items() if k not in ("TRITONSTACK_HTTP_TOKEN", "TRITON_GRPC_URLS")}
    proc = subprocess.Popen([sys.executable, *argv[1:]], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on " in line, f"the front did not start: {line}{proc.stderr.read() if proc.stderr else ''}"
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("serve-folders")
    return {"embedder": tiny.write_tiny_family(tmp / "bert", "bert"),
            "classifier": tiny.write_tiny_family(tmp / "distilbert", "distilbert", classifier=True),
            "cross-encoder": tiny.write_tiny_family(tmp / "ce", "bert", reranker=True)}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve") / "model_repository"


@pytest.fixture(scope="module")
def triton(repo: Path) -> Iterator[TritonServer]:
    """A running Triton as the launcher starts it by default (explicit model control) on an empty
    repository: everything in it comes from ``serve``."""
    repo.mkdir()
    server = start_server(repo, model_control="explicit")
    yield server
    server.close()


@pytest.fixture(scope="module")
def client(triton: TritonServer) -> Iterator[Client]:
    with Client(urls=[triton.grpc_url], timeout_s=30.0) as c:
        yield c


@pytest.fixture(scope="module")
def embedder(folders, repo, triton, tmp_path_factory) -> dict:
    """``serve`` of the tiny BERT, task from the folder, INT8 through the default gate; its --json."""
    work = tmp_path_factory.mktemp("work-embed")
    argv = ["serve", str(folders["embedder"]), "--name", "my_embed", "--model-repository", str(repo),
            "--url", triton.grpc_url, "--http-front", f"127.0.0.1:{_free_port()}", "--work-dir", str(work),
            "--json"]
    return _json_of(argv)


def _json_of(argv: list[str]) -> dict:
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(argv) == 0
    return json.loads(out.getvalue())


def test_an_embedder_is_served_from_its_folder_in_one_command(embedder, client, folders) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    assert embedder["task"] == "feature-extraction"  # read from the folder: no head
    assert embedder["model"] == {"name": "my_embed_model", "version": 1, "precision": "int8"}
    assert embedder["accuracy"]["passed"] and all(row["ok"] for row in embedder["parity"]["table"])
    assert embedder["loaded"] == ["my_embed_model", "my_embed_model_tokenizer", "my_embed"]
    states = {m.name: m.state for m in client.list_models()}
    assert all(states[name] == "READY" for name in embedder["loaded"])
    # INT8 through Triton against transformers' FP32 in this process
    folder = folders["embedder"]
    model = AutoModel.from_pretrained(str(folder)).eval()
    batch = AutoTokenizer.from_pretrained(str(folder))(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    served = client.embed(TEXTS, model="my_embed")
    assert served.shape == (3, 32)
    assert np.min(np.sum(served * expected, axis=1)) > 0.99  # cosine, rows are unit length


def test_the_printed_grpc_calls_answer(embedder, client) -> None:
    calls = embedder["calls"]
    scope: dict = {}
    exec(calls["python"], scope)  # as printed
    np.testing.assert_array_equal(scope["vectors"], client.embed(["How do I reset my password?"], model="my_embed"))
    done = _run_printed(calls["cli"] + " --json")
    assert done.returncode == 0, done.stderr
    assert np.allclose(json.loads(done.stdout)["embeddings"], scope["vectors"], atol=1e-6)


def test_the_printed_http_calls_answer_through_the_front(embedder, client, folders) -> None:
    from transformers import AutoTokenizer

    calls = embedder["calls"]
    expected = client.embed(["How do I reset my password?"], model="my_embed")[0]
    # the front counts with the pipeline's own tokenizer (--model-repository in the printed command)
    tokens = len(AutoTokenizer.from_pretrained(str(folders["embedder"]))("How do I reset my password?").input_ids)
    with _front(calls["http_front"]):
        done = _run_printed(calls["curl"])
        assert done.returncode == 0, done.stderr
        body = json.loads(done.stdout)
        assert body["model"] == "my_embed" and body["usage"]["prompt_tokens"] == tokens
        np.testing.assert_allclose(body["data"][0]["embedding"], expected, atol=1e-6)
        scope: dict = {}
        exec(calls["openai"], scope)
        np.testing.assert_allclose(scope["vectors"].data[0].embedding, expected, atol=1e-6)
        assert scope["vectors"].usage.prompt_tokens == tokens


def test_a_classifier_is_served_and_its_printed_calls_answer(folders, repo, triton, client, tmp_path,
                                                            capsys) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    port = _free_port()
    argv = ["serve", str(folders["classifier"]), "--name", "sentiment", "--task", "text-classification",
            "--precision", "fp32", "--model-repository", str(repo), "--url", triton.grpc_url,
            "--http-front", f"127.0.0.1:{port}", "--work-dir", str(tmp_path / "work")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("served sentiment (text-classification)")
    folder = folders["classifier"]
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    batch = AutoTokenizer.from_pretrained(str(folder))(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.softmax(logits, dim=-1).numpy()
    labels, probabilities = client.classify_texts(TEXTS, model="sentiment")
    np.testing.assert_allclose(probabilities, expected, atol=2e-4)  # FP32, as transformers
    assert labels == [model.config.id2label[int(i)] for i in expected.argmax(axis=1)]
    # the snippet as printed: the indented block under "gRPC, from Python"
    block = out.split("gRPC, from Python (the client extra):\n", 1)[1].split("\n\ngRPC", 1)[0]
    scope: dict = {}
    exec("\n".join(line[4:] for line in block.splitlines()), scope)
    assert scope["labels"] == client.classify_texts(["How do I reset my password?"], model="sentiment").labels
    front, curl = [line.strip() for line in out.split("then curl it:\n", 1)[1].splitlines()[:2]]
    assert "--classify-model sentiment" in front and f"--port {port}" in front
    with _front(front):
        done = _run_printed(curl)
    assert done.returncode == 0, done.stderr
    ranked = json.loads(done.stdout)
    assert ranked[0]["label"] == scope["labels"][0]
    assert ranked[0]["score"] == pytest.approx(float(scope["probabilities"][0].max()), abs=1e-6)


def _refused(argv: list[str], capsys) -> tuple[int, str]:
    code = main([*argv, "--quiet"])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return code, err


def test_refusals_before_the_export_leave_everything_as_it_was(folders, repo, triton, embedder, tmp_path,
                                                               capsys) -> None:
    before = sorted(p.name for p in repo.iterdir())
    url = ["--url", triton.grpc_url]
    base = ["serve", str(folders["embedder"]), "--model-repository", str(repo), *url]
    (tmp_path / "empty").mkdir()
    untokenized = tmp_path / "untokenized"
    shutil.copytree(folders["embedder"], untokenized,
                    ignore=shutil.ignore_patterns("tokenizer*", "vocab.txt", "special_tokens_map.json"))
    cases = [
        (["serve", str(tmp_path / "nope"), "--name", "x", "--model-repository", str(repo), *url], 2,
         "is not a folder"),
        (["serve", str(tmp_path / "empty"), "--name", "x", "--model-repository", str(repo), *url], 2,
         "has no config.json"),
        (["serve", str(untokenized), "--name", "x", "--precision", "fp32", "--model-repository", str(repo), *url],
         2, "no tokenizer could be loaded"),
        ([*base, "--name", "my_embed"], 2, "my_embed, my_embed_model, my_embed_model_tokenizer already served"),
        ([*base, "--name", "other", "--model", "my_embed_model"], 2,
         "my_embed_model, my_embed_model_tokenizer already served"),
        ([*base, "--name", "bad name"], 2, "a Triton model name is"),
        (["serve", str(folders["embedder"]), "--name", "x", "--model-repository", str(tmp_path / "elsewhere"),
          *url], 2, "serves another repository than"),
        (["serve", str(folders["embedder"]), "--name", "x", "--model-repository", str(repo), "--url",
          f"127.0.0.1:{_free_port()}"], 3, "no Triton answers at"),
    ]
    for argv, code, message in cases:
        got, err = _refused(argv, capsys)
        assert (got, message in err) == (code, True), err
    assert sorted(p.name for p in repo.iterdir()) == before
    assert not (tmp_path / "elsewhere").exists()
    _, err = _refused(cases[-1][0], capsys)
    assert "python -m tritonstack.server serve --model-repository" in err  # the remedy


def test_an_unknown_task_is_a_usage_error(folders, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", str(folders["embedder"]), "--name", "x", "--task", "summarization"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'summarization'" in err and err.count("\n") == 1


def test_a_name_another_kind_of_model_holds_is_refused(folders, repo, triton, capsys) -> None:
    repos.write_add_one(repo)  # in the repository, not loaded
    code, err = _refused(["serve", str(folders["embedder"]), "--name", "add_one", "--model-repository",
                          str(repo), "--url", triton.grpc_url], capsys)
    assert code == 2 and "add_one already holds another model (python)" in err
    assert not (repo / "add_one_model").exists()


def test_a_failed_int8_gate_writes_and_loads_nothing(folders, repo, triton, client, tmp_path, capsys) -> None:
    """A random tiny cross-encoder's scores barely vary, so INT8 noise reorders them: the default
    gate (Spearman >= 0.98) refuses it (tests/converters/test_families.py)."""
    code, err = _refused(["serve", str(folders["cross-encoder"]), "--name", "ranker", "--task", "rerank",
                          "--model-repository", str(repo), "--url", triton.grpc_url, "--work-dir",
                          str(tmp_path / "w")], capsys)
    assert code == 1 and err.startswith("AccuracyBelowThreshold:") and "spearman" in err
    assert not any((repo / name).exists() for name in ("ranker", "ranker_model", "ranker_model_tokenizer"))
    assert "ranker" not in {m.name for m in client.list_models()}


@pytest.fixture
def other_server(tmp_path: Path) -> Iterator[TritonServer]:
    repos.write_add_one(tmp_path / "other")
    server = start_server(tmp_path / "other", model_control="none")
    yield server
    server.close()


def test_a_server_that_does_not_load_on_request_is_refused(folders, other_server, capsys) -> None:
    code, err = _refused(["serve", str(folders["embedder"]), "--name", "x", "--model-repository",
                          str(other_server.config.model_repository), "--url", other_server.grpc_url], capsys)
    assert code == 3 and "does not load models on request" in err and "--model-control explicit" in err
    assert not (other_server.config.model_repository / "x_model").exists()


@pytest.fixture
def restricted_server(tmp_path: Path, monkeypatch) -> Iterator[TritonServer]:
    monkeypatch.delenv("TRITON_ACCESS_TOKEN", raising=False)
    (tmp_path / "restricted").mkdir()
    server = start_server(tmp_path / "restricted", model_control="explicit",
                          restricted_apis=("model-repository",), restricted_value=TOKEN)
    yield server
    server.close()


def test_a_restricted_server_needs_the_token_and_serves_with_it(folders, restricted_server, tmp_path,
                                                               monkeypatch, capsys) -> None:
    repo = restricted_server.config.model_repository
    argv = ["serve", str(folders["embedder"]), "--name", "locked_embed", "--precision", "fp32",
            "--model-repository", str(repo), "--url", restricted_server.grpc_url, "--work-dir", str(tmp_path / "w")]
    code, err = _refused(argv, capsys)
    assert code == 3 and "set TRITON_ACCESS_TOKEN" in err
    assert list(repo.iterdir()) == []
    monkeypatch.setenv("TRITON_ACCESS_TOKEN", TOKEN)
    assert main([*argv, "--quiet"]) == 0
    with Client(urls=[restricted_server.grpc_url]) as c:  # inference stays open: no token
        assert c.embed(TEXTS, model="locked_embed").shape == (3, 32)
