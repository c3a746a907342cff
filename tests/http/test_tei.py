"""TEI's routes through httpx (and huggingface_hub's own client) against real tritonservers:
the demo's MiniLM behind /embed, stand-in pipelines behind /rerank and /predict."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.http.conftest import LABELS
from tritonstack.client import Client

pytestmark = pytest.mark.triton

TEXTS = ["How do I reset my password?", "hello world"]


@pytest.fixture
def demo_front(demo_triton, demo_repository, start_front):
    return start_front(demo_triton.grpc_url, "--model-repository", str(demo_repository))


@pytest.fixture
def standin_front(standin_triton, standin_repository, start_front):
    return start_front(standin_triton.grpc_url, "--embed-model", "busy_embed", "--rerank-model", "rerank",
                       "--classify-model", "sentiment", "--model-repository", str(standin_repository))


def test_embed_is_the_grpc_answer_for_one_text_and_for_many(demo_front, demo_triton) -> None:
    with Client(urls=demo_triton.grpc_url) as triton:
        expected = triton.embed(TEXTS)
        expected_one = triton.embed([TEXTS[0]])
    many = httpx.post(f"{demo_front.url}/embed", json={"inputs": TEXTS}, timeout=30)
    assert many.status_code == 200
    np.testing.assert_allclose(np.array(many.json(), dtype=np.float32), expected, rtol=0, atol=1e-6)
    one = httpx.post(f"{demo_front.url}/embed", json={"inputs": TEXTS[0], "normalize": False}, timeout=30)
    assert np.array(one.json()).shape == (1, 384)
    np.testing.assert_array_equal(np.array(one.json(), dtype=np.float32), expected_one)  # as the pipeline gave
    root = httpx.post(f"{demo_front.url}/", json={"inputs": TEXTS}, timeout=30)  # TEI serves its route at /
    assert root.json() == many.json()


def test_truncate_false_refuses_what_the_model_would_cut_and_true_lets_it_cut(demo_front) -> None:
    long = "word " * 300
    refused = httpx.post(f"{demo_front.url}/embed", json={"inputs": [long]}, timeout=30)
    assert refused.status_code == 413
    assert refused.json()["error_type"] == "Validation" and "302 tokens, over the 256" in refused.json()["error"]
    cut = httpx.post(f"{demo_front.url}/embed", json={"inputs": [long], "truncate": True}, timeout=30)
    assert cut.status_code == 200 and len(cut.json()[0]) == 384


def test_health_and_info(demo_front) -> None:
    health = httpx.get(f"{demo_front.url}/health", timeout=30)
    assert health.status_code == 200
    info = httpx.get(f"{demo_front.url}/info", timeout=30).json()
    assert info["model_id"] == "embed" and info["max_input_length"] == 256 and info["max_client_batch_size"] == 64


def test_rerank_sorts_by_score_and_returns_text_on_request(standin_front) -> None:
    texts = ["the parcel", "where is my parcel today", "unrelated", "my parcel"]
    answer = httpx.post(f"{standin_front.url}/rerank", json={"query": "where is my parcel", "texts": texts,
                                                              "return_text": True, "raw_scores": True}, timeout=30)
    assert answer.status_code == 200, answer.text
    rows = answer.json()
    assert [r["index"] for r in rows] == [1, 3, 0, 2]  # shared words - 1: 3, 1, 0, -1
    assert [r["score"] for r in rows] == [3.0, 1.0, 0.0, -1.0]
    assert [r["text"] for r in rows] == [texts[i] for i in (1, 3, 0, 2)]
    squashed = httpx.post(f"{standin_front.url}/rerank", json={"query": "where is my parcel", "texts": texts},
                          timeout=30).json()
    assert "text" not in squashed[0]
    assert squashed[0]["score"] == pytest.approx(1 / (1 + np.exp(-3.0)))


def test_predict_names_every_class_from_the_repository_best_first(standin_front) -> None:
    one = httpx.post(f"{standin_front.url}/predict", json={"inputs": "good good stuff"}, timeout=30)
    assert one.status_code == 200, one.text
    rows = one.json()
    assert [r["label"] for r in rows] == ["positive", "neutral", "negative"]
    assert sum(r["score"] for r in rows) == pytest.approx(1.0, abs=1e-6)
    many = httpx.post(f"{standin_front.url}/predict", json={"inputs": ["bad bad", "good"]}, timeout=30).json()
    assert [batch[0]["label"] for batch in many] == ["negative", "positive"]
    assert {r["label"] for r in many[0]} == set(LABELS)


def test_routes_without_a_pipeline_say_which_flag_serves_them(demo_front) -> None:
    answer = httpx.post(f"{demo_front.url}/rerank", json={"query": "q", "texts": ["t"]}, timeout=30)
    assert answer.status_code == 424 and "--rerank-model" in answer.json()["error"]


def test_huggingface_hubs_inference_client_reads_the_front(demo_front, demo_triton) -> None:
    hub = pytest.importorskip("huggingface_hub", reason="huggingface_hub is not installed")
    client = hub.InferenceClient(model=demo_front.url, timeout=30)
    vector = np.asarray(client.feature_extraction("hello world"), dtype=np.float32)
    with Client(urls=demo_triton.grpc_url) as triton:
        expected = triton.embed(["hello world"])
    assert vector.shape == (1, 384)
    np.testing.assert_allclose(vector, expected, rtol=0, atol=1e-6)
