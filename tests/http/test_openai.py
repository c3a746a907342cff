"""OpenAI's own client against the front, over a real Triton serving the demo's MiniLM: the
vectors are the gRPC client's, element for element, and usage counts MiniLM's tokens."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest
from tokenizers import Tokenizer

from tritonstack.client import Client

pytestmark = pytest.mark.triton

TEXTS = ["How do I reset my password?", "hello world", "Où est mon colis ? 📦", "refund"]


def _openai(front, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{front.url}/v1", api_key=key, max_retries=0, timeout=30)


@pytest.fixture
def front(demo_triton, demo_repository, start_front):
    return start_front(demo_triton.grpc_url, "--model-repository", str(demo_repository))


@pytest.mark.parametrize("encoding", ["float", "base64", None])  # None: the client's default (base64)
def test_embeddings_are_the_grpc_clients_element_for_element(front, demo_triton, encoding) -> None:
    with Client(urls=demo_triton.grpc_url) as triton:
        expected = triton.embed(TEXTS)
    kwargs = {"encoding_format": encoding} if encoding else {}
    answer = _openai(front).embeddings.create(model="embed", input=TEXTS, **kwargs)
    assert answer.model == "embed" and answer.object == "list"
    assert [d.index for d in answer.data] == list(range(len(TEXTS)))
    if encoding == "base64":  # asked for explicitly, the client hands the text over as it came
        got = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in answer.data])
    else:
        got = np.array([d.embedding for d in answer.data], dtype=np.float32)
    assert got.shape == expected.shape == (len(TEXTS), 384)
    np.testing.assert_array_equal(got, expected)


def test_one_string_is_one_embedding_and_usage_counts_minilms_tokens(front, demo_triton, demo_repository) -> None:
    answer = _openai(front).embeddings.create(model="embed", input="hello world", encoding_format="float")
    assert len(answer.data) == 1 and len(answer.data[0].embedding) == 384
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 4  # [CLS] hello world [SEP]
    tokenizer = Tokenizer.from_file(str(demo_repository / "minilm" / "tokenizer.json"))
    tokenizer.no_padding()
    expected = sum(len(tokenizer.encode(t).ids) for t in TEXTS)
    many = _openai(front).embeddings.create(model="embed", input=TEXTS)
    assert many.usage.prompt_tokens == expected


def test_without_the_repository_usage_is_null_not_invented(demo_triton, start_front) -> None:
    front = start_front(demo_triton.grpc_url)
    answer = _openai(front).embeddings.create(model="embed", input=["hello"], encoding_format="float")
    assert len(answer.data[0].embedding) == 384
    assert answer.usage.prompt_tokens is None and answer.usage.total_tokens is None


def test_models_lists_the_embedding_pipelines_only(front) -> None:
    ids = [m.id for m in _openai(front).models.list()]
    assert "embed" in ids
    assert "classify_digit" not in ids and "digits_cnn" not in ids


def test_openai_errors_are_openais_exceptions(front) -> None:
    client = _openai(front)
    with pytest.raises(openai.NotFoundError) as err:
        client.embeddings.create(model="classify_digit", input="x")
    assert err.value.code == "model_not_found" and "embed" in err.value.message
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.embeddings.create(model="embed", input=[1, 2, 3])
    assert "token ids" in err.value.message
    with pytest.raises(openai.APIStatusError) as err:
        client.embeddings.create(model="embed", input=["word " * 300])
    assert err.value.status_code == 413 and "tokens, over the 256" in err.value.message
    assert err.value.body["param"] == "input" and err.value.body["type"] == "invalid_request_error"


def test_a_token_is_required_when_configured(demo_triton, start_front) -> None:
    front = start_front(demo_triton.grpc_url, token="s3cret")
    with pytest.raises(openai.AuthenticationError) as err:
        _openai(front, "wrong").embeddings.create(model="embed", input="x")
    assert err.value.code == "invalid_api_key"
    answer = _openai(front, "s3cret").embeddings.create(model="embed", input="x", encoding_format="float")
    assert len(answer.data[0].embedding) == 384
