"""What the front answers when Triton fails it, each provoked for real: Triton refusing the
front's credentials (502), a deadline that runs out on a real Triton (504), and a model that
fails the request or answers NaN (500); each in both dialects' JSON error bodies, with the
status docs/http.md's table gives."""

from __future__ import annotations

import httpx
import pytest

from tests.http.conftest import TRITON_TOKEN

pytestmark = pytest.mark.triton


def _openai_error(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("server_error", code), error
    assert "Traceback" not in error["message"]
    return error["message"]


def _tei_error(answer: httpx.Response, status: int, error_type: str) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error", "error_type"} and body["error_type"] == error_type, body
    assert "Traceback" not in body["error"]
    return body["error"]


def test_triton_refusing_the_fronts_credentials_is_502(restricted_triton, start_front) -> None:
    """A Triton that restricts its APIs with a token the front does not send (or sends wrong):
    the caller did nothing wrong and retrying will not help, so not 401 and not 503."""
    for triton_token in (None, "not-the-token"):
        front = start_front(restricted_triton.grpc_url, "--embed-model", "unit_embed", triton_token=triton_token)
        models = httpx.get(f"{front.url}/v1/models", timeout=30)
        assert "credentials to the model server were refused" in _openai_error(models, 502, "upstream_auth")
        embeddings = httpx.post(f"{front.url}/v1/embeddings", json={"model": "unit_embed", "input": "x"}, timeout=30)
        _openai_error(embeddings, 502, "upstream_auth")
        assert "retry-after" not in embeddings.headers
        tei = httpx.post(f"{front.url}/embed", json={"inputs": "x"}, timeout=30)
        assert "protocol is restricted" in _tei_error(tei, 502, "Backend")
    # The same front with Triton's token (TRITON_ACCESS_TOKEN, as compose and Kubernetes pass it) is served.
    front = start_front(restricted_triton.grpc_url, "--embed-model", "unit_embed", triton_token=TRITON_TOKEN)
    assert [m["id"] for m in httpx.get(f"{front.url}/v1/models", timeout=30).json()["data"]] == ["unit_embed"]
    ok = httpx.post(f"{front.url}/v1/embeddings", json={"model": "unit_embed", "input": ["a", "b"]}, timeout=30)
    assert ok.status_code == 200 and len(ok.json()["data"]) == 2
    assert httpx.post(f"{front.url}/embed", json={"inputs": "x"}, timeout=30).status_code == 200


def test_a_deadline_that_runs_out_is_504(standin_triton, start_front) -> None:
    """busy_embed takes 0.5 s a request; a front whose calls may take 0.2 s gives up on it."""
    front = start_front(standin_triton.grpc_url, "--embed-model", "busy_embed", "--timeout", "200ms", "--retries", "0")
    tei = httpx.post(f"{front.url}/embed", json={"inputs": "slow"}, timeout=30)
    assert "within the 0.2 s deadline" in _tei_error(tei, 504, "Backend")
    assert "retry-after" not in tei.headers
    # Listing the served pipelines fits the deadline; the embedding does not.
    openai = httpx.post(f"{front.url}/v1/embeddings", json={"model": "busy_embed", "input": "slow"}, timeout=30)
    assert "within the 0.2 s deadline" in _openai_error(openai, 504, "timeout")


def test_a_model_that_fails_the_request_is_500(standin_triton, start_front) -> None:
    front = start_front(standin_triton.grpc_url, "--embed-model", "failing_embed")
    openai = httpx.post(f"{front.url}/v1/embeddings", json={"model": "failing_embed", "input": "x"}, timeout=30)
    assert "the model failed on purpose" in _openai_error(openai, 500, "internal")
    tei = httpx.post(f"{front.url}/embed", json={"inputs": "x"}, timeout=30)
    assert "the model failed on purpose" in _tei_error(tei, 500, "Backend")
    assert front.proc.poll() is None  # the front serves on


def test_a_model_answering_nan_is_500_in_json_not_a_vector(standin_triton, start_front) -> None:
    """JSON has no NaN: the answer is the dialect's error, naming the model, never a plain-text
    500 or a body no JSON parser reads."""
    front = start_front(standin_triton.grpc_url, "--embed-model", "nan_embed")
    openai = httpx.post(f"{front.url}/v1/embeddings", json={"model": "nan_embed", "input": ["x", "y"]}, timeout=30)
    assert "'nan_embed'" in _openai_error(openai, 500, "internal")
    tei = httpx.post(f"{front.url}/embed", json={"inputs": "x"}, timeout=30)
    assert "NaN" in _tei_error(tei, 500, "Backend")
    raw = httpx.post(f"{front.url}/embed", json={"inputs": "x", "normalize": False}, timeout=30)
    _tei_error(raw, 500, "Backend")
    assert front.proc.poll() is None
