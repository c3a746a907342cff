"""Every refusal is the dialect's JSON error with the mapped status: bad JSON and bad fields
422, too many or too large 413, auth 401, a server that cannot answer 503, one that sheds 429
with Retry-After; and the CLI's own refusals are one line with the convention's exit code."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest

from tests.http.conftest import ROOT
from tritonstack.server.process import free_port

pytestmark = pytest.mark.triton


@pytest.fixture
def demo_front(demo_triton, demo_repository, start_front):
    return start_front(demo_triton.grpc_url, "--model-repository", str(demo_repository), "--max-inputs", "4")


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embed"])
def test_bad_json_is_422_in_the_routes_dialect(demo_front, path) -> None:
    answer = httpx.post(f"{demo_front.url}{path}", content=b'{"input": ', timeout=30)
    assert answer.status_code == 422
    body = answer.json()
    if path.startswith("/v1/"):
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "invalid_request_error" and "not valid JSON" in body["error"]["message"]
    else:
        assert body["error_type"] == "Validation" and "not valid JSON" in body["error"]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"model": "embed", "input": ["a", "b", "c", "d", "e"]}, 413, "over the limit of 4"),
    ({"model": "embed", "input": ["word " * 300]}, 413, "302 tokens, over the 256"),  # the front's count
    ({"model": "embed", "input": "x" * 25_000}, 413, "over the limit of 20,000"),  # Triton's (one word: 3 tokens)
    ({"model": "embed", "input": []}, 422, "is empty"),
    ({"model": "embed", "input": [" "]}, 422, "is empty"),              # Triton's own refusal
    ({"model": "embed", "input": "a", "encoding_format": "int8"}, 422, "encoding_format"),
    ({"input": "a"}, 422, "'model' is required"),
    ({"model": "embed", "input": "a", "dimensions": 100}, 422, "384 dimensions"),
])
def test_openai_refusals(demo_front, body, status, words) -> None:
    answer = httpx.post(f"{demo_front.url}/v1/embeddings", json=body, timeout=30)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]["message"]


def test_invalid_utf8_is_refused_raw_and_escaped(demo_front) -> None:
    raw = httpx.post(f"{demo_front.url}/embed", content=b'{"inputs": "\xff\xfe"}', timeout=30)
    assert raw.status_code == 422 and "not valid UTF-8" in raw.json()["error"]
    escaped = httpx.post(f"{demo_front.url}/v1/embeddings", content=b'{"model": "embed", "input": "\\ud800"}',
                         timeout=30)
    assert escaped.status_code == 422 and escaped.json()["error"]["code"] == "invalid_utf8"


def test_a_body_over_the_limit_is_413(demo_triton, start_front) -> None:
    front = start_front(demo_triton.grpc_url, "--max-body-bytes", "2048")
    answer = httpx.post(f"{front.url}/embed", json={"inputs": "x" * 5000}, timeout=30)
    assert answer.status_code == 413 and "over the limit of 2,048" in answer.json()["error"]


def test_unknown_route_and_method_are_json(demo_front) -> None:
    assert httpx.get(f"{demo_front.url}/nope", timeout=30).json()["error_type"] == "Validation"
    wrong = httpx.get(f"{demo_front.url}/v1/embeddings", timeout=30)
    assert wrong.status_code == 405 and "message" in wrong.json()["error"]


def test_bearer_token_guards_every_route_but_health(demo_triton, start_front) -> None:
    front = start_front(demo_triton.grpc_url, token="s3cret")
    for method, path in (("POST", "/embed"), ("POST", "/v1/embeddings"), ("GET", "/v1/models"), ("GET", "/info")):
        answer = httpx.request(method, f"{front.url}{path}", json={"inputs": "x"}, timeout=30)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"] == "Bearer"
        wrong = httpx.request(method, f"{front.url}{path}", json={"inputs": "x"}, timeout=30,
                              headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, path
    assert httpx.get(f"{front.url}/health", timeout=30).status_code == 200
    ok = httpx.post(f"{front.url}/embed", json={"inputs": "x"}, headers={"Authorization": "Bearer s3cret"},
                    timeout=30)
    assert ok.status_code == 200 and len(ok.json()[0]) == 384


def test_no_server_is_503_with_retry_after(start_front) -> None:
    front = start_front(f"127.0.0.1:{free_port()}", "--timeout", "2s", "--retry-after", "3s")
    health = httpx.get(f"{front.url}/health", timeout=30)
    assert health.status_code == 503 and health.json()["error_type"] == "Unhealthy"
    answer = httpx.post(f"{front.url}/v1/embeddings", json={"model": "embed", "input": "x"}, timeout=30)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "3"
    assert answer.json()["error"]["type"] == "server_error"
    tei = httpx.post(f"{front.url}/embed", json={"inputs": "x"}, timeout=30)
    assert tei.status_code == 503 and tei.json()["error_type"] == "Unhealthy"


def test_a_shed_request_is_429_with_retry_after(standin_triton, start_front) -> None:
    """busy_embed runs one request at a time for 0.5 s and queues one: of six at once, Triton
    sheds some (UNAVAILABLE "Exceeds maximum queue size"), which the front answers 429."""
    front = start_front(standin_triton.grpc_url, "--embed-model", "busy_embed")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return list(await asyncio.gather(*(client.post(f"{front.url}/embed", json={"inputs": f"t{i}"})
                                               for i in range(6))))

    answers = asyncio.run(burst())
    codes = sorted(a.status_code for a in answers)
    assert 200 in codes and 429 in codes, codes
    shed = next(a for a in answers if a.status_code == 429)
    assert shed.headers["retry-after"] == "1" and shed.json()["error_type"] == "Overloaded"


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    script = __import__("pathlib").Path(sys.executable).with_name("tritonstack-http")
    return subprocess.run([str(script), *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_cli_refusals_are_one_line_with_the_conventions_code(tmp_path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = _cli("serve", "--port", port)
    assert busy.returncode == 3 and "cannot listen on 127.0.0.1:" in busy.stderr
    missing = _cli("serve", "--model-repository", str(tmp_path / "none"))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
    for done in (busy, missing):
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
