"""``python -m tritonstack.ensembles add``: every encoder family, from a tiny random HF folder to a served
endpoint with one export and one ``add``, its served answers compared with transformers run in
this process (embeddings of every family; text classification and cross-encoder reranking for
families whose inputs differ: with and without token_type_ids). One Triton serves them
all; the exports are FP32 so that the comparison is tight (INT8 through the gate per family is
tests/converters/test_families.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import start_server
from tests.converters import tiny
from tritonstack.client import Client, ClientError, Status
from tritonstack.converters.api import ExportSpec, export
from tritonstack.ensembles.cli import main
from tritonstack.server import TritonServer

EMBEDDERS = ["bert", "distilbert", "roberta", "mpnet", "electra", "deberta-v2"]
CLASSIFIERS = ["distilbert", "roberta", "deberta-v2"]  # no token_type_ids / type_vocab 1 / 0
RERANKERS = ["bert", "electra"]  # pairs with segment ids
TEXTS = ["where is my parcel", "How do I reset my password? I have tried twice already and the "
         "link in the e-mail has expired both times.", "ok", "Ünïcödé text, with punctuation!"]
PASSAGES = ["your parcel ships on monday", "reset the password from the login page", "bananas are yellow"]


def _model(family: str) -> str:
    return family.replace("-", "_")


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """The repository with every family exported and added; {ensemble: HF folder}."""
    tmp = tmp_path_factory.mktemp("families")
    repo = tmp / "repo"
    folders: dict[str, Path] = {}
    plan = [(f"{_model(f)}_embed", _model(f), tiny.write_tiny_family(tmp / f, f)) for f in EMBEDDERS]
    plan += [(f"sentiment_{_model(f)}", f"classifier_{_model(f)}",
              tiny.write_tiny_family(tmp / f"classifier-{f}", f, classifier=True)) for f in CLASSIFIERS]
    plan += [(f"rerank_{_model(f)}", f"cross_encoder_{_model(f)}",
              tiny.write_tiny_family(tmp / f"reranker-{f}", f, reranker=True)) for f in RERANKERS]
    for ensemble, model, folder in plan:
        export(ExportSpec(str(folder), model, repository=repo, work_dir=tmp / "work" / model), progress=None)
        assert main(["add", ensemble, "--model", model, "--model-repository", str(repo)]) == 0
        folders[ensemble] = folder
    return repo, folders


@pytest.fixture(scope="module")
def server(families: tuple[Path, dict[str, Path]]) -> Iterator[TritonServer]:
    srv = start_server(families[0])
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def client(server: TritonServer) -> Iterator[Client]:
    with Client(urls=[server.grpc_url], timeout_s=30.0) as c:
        yield c


def _tokenize(folder: Path, first: list[str], second: list[str] | None = None) -> dict:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))(first, second, padding=True, truncation=True,
                                                     max_length=128, return_tensors="pt")


@pytest.mark.triton
@pytest.mark.parametrize("family", EMBEDDERS)
def test_each_family_embeds_as_transformers_does(family, families, client) -> None:
    import torch
    from transformers import AutoModel

    folder = families[1][f"{_model(family)}_embed"]
    model = AutoModel.from_pretrained(str(folder)).eval()
    batch = _tokenize(folder, TEXTS)
    accepted = {k: v for k, v in batch.items() if k in model.forward.__code__.co_varnames}
    with torch.no_grad():
        hidden = model(**accepted).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    served = client.embed(TEXTS, model=f"{_model(family)}_embed")
    assert served.shape == expected.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(served, expected, atol=2e-4)
    # one text alone (no padding in its batch) gives the same row as in the batch
    np.testing.assert_allclose(client.embed(TEXTS[1], model=f"{_model(family)}_embed")[0], expected[1],
                               atol=2e-4)


@pytest.mark.triton
@pytest.mark.parametrize("family", CLASSIFIERS)
def test_a_classifier_answers_with_its_own_label_names(family, families, client) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    folder = families[1][f"sentiment_{_model(family)}"]
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    batch = _tokenize(folder, TEXTS)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.softmax(logits, dim=-1).numpy()
    labels, probabilities = client.classify_texts(TEXTS, model=f"sentiment_{_model(family)}")
    np.testing.assert_allclose(probabilities, expected, atol=2e-4)
    assert labels == [model.config.id2label[int(i)] for i in expected.argmax(axis=1)]
    assert set(labels) <= {"negative", "neutral", "positive"}


@pytest.mark.triton
@pytest.mark.parametrize("family", RERANKERS)
def test_a_cross_encoder_scores_pairs_as_transformers_does(family, families, client) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    folder = families[1][f"rerank_{_model(family)}"]
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    query = TEXTS[0]
    batch = _tokenize(folder, [query] * len(PASSAGES), PASSAGES)
    assert int(batch["token_type_ids"].max()) == 1  # a real pair: the passage is segment 1
    with torch.no_grad():
        expected = model(**batch).logits[:, 0].numpy()
    scores = client.rerank(query, PASSAGES, model=f"rerank_{_model(family)}")
    np.testing.assert_allclose(scores, expected, atol=2e-4)


@pytest.mark.triton
def test_bad_requests_to_added_pipelines_are_refused_alone(client) -> None:
    with pytest.raises(ClientError) as err:
        client.embed([""], model="bert_embed")
    assert err.value.status is Status.INVALID_ARGUMENT and "empty" in err.value.server_message
    assert client.embed(["still serving"], model="bert_embed").shape == (1, 32)


@pytest.mark.triton
def test_the_client_cli_classifies_texts_and_reranks_passages(server, client, capsys) -> None:
    from tritonstack.client.cli import main as client_main

    url = ["--url", server.grpc_url, "--json"]
    assert client_main([*url, "classify", "--model", "sentiment_distilbert", *TEXTS[:2]]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in rows] == client.classify_texts(TEXTS[:2], model="sentiment_distilbert").labels
    assert client_main([*url, "rerank", "--model", "rerank_bert", TEXTS[0], *PASSAGES]) == 0
    ranking = json.loads(capsys.readouterr().out)["ranking"]
    scores = client.rerank(TEXTS[0], PASSAGES, model="rerank_bert")
    assert [r["index"] for r in ranking] == list(np.argsort(-scores, kind="stable"))
    assert client_main([*url, "embed", "--model", "mpnet_embed", "hello"]) == 0
    assert len(json.loads(capsys.readouterr().out)["embeddings"][0]) == 32


def test_add_refuses_what_it_cannot_serve_in_one_line(families, capsys) -> None:
    repo = str(families[0])
    cases = [
        (["add", "x", "--model", "nope", "--model-repository", repo], "no exported model 'nope'"),
        (["add", "x", "--model", "bert", "--task", "rerank", "--model-repository", repo],
         "was exported for feature-extraction"),
        (["add", "x", "--model", "classifier_distilbert", "--task", "rerank", "--model-repository", repo],
         "outputs 3 logits"),
        (["add", "bert", "--model", "bert", "--model-repository", repo], "the exported model's own name"),
        (["add", "x", "--model", "bert", "--max-length", "4096", "--model-repository", repo],
         "past model 'bert'"),
        (["add", "distilbert", "--model", "bert", "--model-repository", repo], "already holds another model"),
        (["add", "x", "--model", "bert", "--tokenizer", "/nonexistent", "--model-repository", repo],
         "is not a folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert (families[0] / "distilbert" / "1" / "model.onnx").is_file()  # never overwritten
