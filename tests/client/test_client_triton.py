"""The sync and asyncio clients against a real Triton serving the stand-in models, over gRPC and
over HTTP (each test runs once per protocol: the same results and the same errors)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from tests.client.conftest import TOKEN, address
from tests.client.standins import digit_image, expected_embedding
from tritonstack.client import AsyncClient, Client, ClientError, DigitPredictions, Status
from tritonstack.server import TritonServer, free_port

pytestmark = pytest.mark.triton


@pytest.fixture()
def triton(client_server: TritonServer, protocol: str) -> Iterator[Client]:
    with Client(urls=address(client_server, protocol), protocol=protocol, access_token=TOKEN) as client:
        yield client


def _rows(n: int) -> np.ndarray:
    return np.arange(n * 4, dtype=np.float32).reshape(n, 4)


# -- happy paths --------------------------------------------------------------------------
def test_infer_splits_batches_over_max_batch_size_and_keeps_order(triton: Client) -> None:
    x = _rows(21)  # add_one takes at most 8 rows: three requests
    out = triton.infer("add_one", {"INPUT": x})
    assert list(out) == ["OUTPUT"]
    np.testing.assert_array_equal(out["OUTPUT"], x + 1)


def test_embed_returns_unit_float32_rows_in_input_order(triton: Client) -> None:
    texts = [f"sentence number {i}" for i in range(70)]  # over embed's max_batch_size of 64
    vectors = triton.embed(texts)
    assert vectors.shape == (70, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], expected_embedding(texts[0]), rtol=1e-5)
    np.testing.assert_allclose(vectors[69], expected_embedding(texts[69]), rtol=1e-5)
    assert triton.embed([]).shape == (0, 384)


def test_classify_digits_returns_labels_and_probabilities(triton: Client) -> None:
    labels_in = np.arange(300) % 10  # over classify_digit's max_batch_size of 256
    result = triton.classify_digits(np.stack([digit_image(k) for k in labels_in]))
    assert isinstance(result, DigitPredictions)
    labels, probabilities = result
    assert labels.dtype == np.int64 and labels.shape == (300,)
    np.testing.assert_array_equal(labels, labels_in)
    assert probabilities.shape == (300, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_metadata_readiness_and_model_list(triton: Client) -> None:
    info = triton.model_info("classify_digit")
    assert (info.max_batch_size, info.inputs[0].name, info.inputs[0].datatype,
            info.inputs[0].shape) == (256, "IMAGE", "FP32", (8, 8))
    assert [o.name for o in info.outputs] == ["LABEL", "PROBABILITIES"]
    assert triton.model_info("embed").inputs[0].datatype == "BYTES"
    assert triton.model_ready("embed") and not triton.model_ready("no_such_model")
    assert triton.server_ready()
    names = {m.name: m.state for m in triton.list_models()}
    assert names["add_one"] == "READY" and "embed" in names
    [replica] = triton.health()
    assert replica.live and replica.ready and replica.error is None


def test_one_client_is_shared_by_threads(triton: Client) -> None:
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(10):
                x = _rows(3) + seed * 100 + i
                np.testing.assert_array_equal(triton.infer("add_one", {"INPUT": x})["OUTPUT"], x + 1)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_async_client_matches_the_sync_one(client_server: TritonServer, protocol: str) -> None:
    async def main() -> None:
        async with AsyncClient(urls=address(client_server, protocol), protocol=protocol,
                               access_token=TOKEN) as triton:
            x = _rows(21)
            results = await asyncio.gather(*(triton.infer("add_one", {"INPUT": x + k})
                                             for k in range(5)))
            for k, out in enumerate(results):
                np.testing.assert_array_equal(out["OUTPUT"], x + k + 1)
            vectors = await triton.embed(["a", "b"])
            np.testing.assert_allclose(vectors[1], expected_embedding("b"), rtol=1e-5)
            labels, _ = await triton.classify_digits(digit_image(4))
            assert labels.tolist() == [4]
            assert await triton.server_ready() and await triton.model_ready("add_one")
            assert (await triton.model_info("add_one")).max_batch_size == 8
            assert "embed" in {m.name for m in await triton.list_models()}
            assert (await triton.health())[0].ready
            with pytest.raises(ClientError) as info:
                await triton.infer("slow", {"INPUT": _rows(1)}, timeout_s=0.3)
            assert info.value.status is Status.DEADLINE_EXCEEDED
            with pytest.raises(ClientError) as info:
                await triton.infer("add_one", {"INPUT": np.zeros(4, np.float32)})
            assert (info.value.status, info.value.origin) == (Status.INVALID_ARGUMENT, "client")
        async with AsyncClient(urls=address(client_server, protocol), protocol=protocol,
                               max_message_bytes=4096) as small:
            with pytest.raises(ClientError) as info:
                await small.embed([f"text {i}" for i in range(10)])  # an answer of 15 kB
            assert info.value.status is Status.MESSAGE_TOO_LARGE
            np.testing.assert_allclose((await small.embed(["x"]))[0], expected_embedding("x"), rtol=1e-5)
    asyncio.run(main())


# -- every error, as documented ---------------------------------------------------------
def test_deadline_that_expires(triton: Client) -> None:
    with pytest.raises(ClientError) as info:
        triton.infer("slow", {"INPUT": _rows(1)}, timeout_s=0.3)
    err = info.value
    assert err.status is Status.DEADLINE_EXCEEDED and err.attempts == 1
    assert "0.3 s deadline" in err.message and err.url == triton.urls[0]


def test_wrong_rank_and_dtype_never_reach_the_server(triton: Client) -> None:
    for bad, words in ((np.zeros(4, np.float32), "rank 2"), (_rows(2).astype(np.float64), "float32"),
                       ([[1.0, 2.0, 3.0, 4.0]], "numpy array")):
        with pytest.raises(ClientError) as info:
            triton.infer("add_one", {"INPUT": bad})  # type: ignore[dict-item]
        assert (info.value.status, info.value.origin, info.value.attempts) == (
            Status.INVALID_ARGUMENT, "client", 0)
        assert words in info.value.message


def test_server_side_invalid_argument_is_mapped_and_not_retried(client_server: TritonServer,
                                                                protocol: str) -> None:
    with Client(urls=address(client_server, protocol), protocol=protocol, validate_inputs=False,
                retries=3) as raw, \
            pytest.raises(ClientError) as info:
        raw.infer("add_one", {"INPUT": np.zeros((2, 5), np.float32)})
    err = info.value
    assert (err.status, err.origin, err.attempts) == (Status.INVALID_ARGUMENT, "server", 1)
    assert "unexpected shape for input 'INPUT'" in err.server_message


def test_unknown_model_is_not_found(triton: Client) -> None:
    with pytest.raises(ClientError) as info:
        triton.infer("add_onee", {"INPUT": _rows(1)})
    assert info.value.status is Status.NOT_FOUND and info.value.attempts == 1
    assert "unknown model: 'add_onee'" in info.value.server_message


def test_model_failure_is_internal_with_the_models_message(triton: Client) -> None:
    with pytest.raises(ClientError) as info:
        triton.infer("fails", {"INPUT": _rows(2)})
    assert info.value.status is Status.INTERNAL
    assert info.value.server_message == "stand-in model refuses"


def test_no_server_is_unavailable_after_every_retry(protocol: str) -> None:
    with Client(urls=f"127.0.0.1:{free_port()}", protocol=protocol, retries=2,
                backoff_initial_s=0.01) as nobody, \
            pytest.raises(ClientError) as info:
        nobody.server_ready()
    assert info.value.status is Status.UNAVAILABLE and info.value.attempts == 3
    assert "after 3 attempts" in str(info.value)


def test_restricted_protocol_without_token_is_permission_denied(client_server: TritonServer,
                                                               protocol: str) -> None:
    with Client(urls=address(client_server, protocol), protocol=protocol) as anonymous:
        assert anonymous.server_ready()  # health is not restricted
        with pytest.raises(ClientError) as info:
            anonymous.list_models()
    assert info.value.status is Status.PERMISSION_DENIED and info.value.attempts == 1
    assert "TRITON_ACCESS_TOKEN" in str(info.value)


def test_message_over_the_size_limit(client_server: TritonServer, protocol: str) -> None:
    with Client(urls=address(client_server, protocol), protocol=protocol, max_message_bytes=4096) as small:
        with pytest.raises(ClientError) as info:
            small.embed(["x" * 10_000])  # the request
        assert info.value.status is Status.MESSAGE_TOO_LARGE and info.value.attempts == 1
        with pytest.raises(ClientError) as info:
            small.embed([f"text {i}" for i in range(10)])  # a small request, an answer of 15 kB
        assert info.value.status is Status.MESSAGE_TOO_LARGE and info.value.attempts == 1
        np.testing.assert_allclose(small.embed(["x"])[0], expected_embedding("x"), rtol=1e-5)  # still usable


def _flood(client: Client, n: int) -> list[ClientError | None]:
    results: list[ClientError | None] = [None] * n

    def one(i: int) -> None:
        try:
            client.infer("tiny_queue", {"INPUT": _rows(1)}, timeout_s=30)
        except ClientError as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_shed_requests_are_overloaded_and_retried_only_when_opted_in(client_server: TritonServer,
                                                                    protocol: str) -> None:
    url = address(client_server, protocol)
    with Client(urls=url, protocol=protocol) as default:
        errors = [e for e in _flood(default, 5) if e is not None]
    assert errors, "a queue of one with five concurrent requests must shed some"
    for err in errors:
        assert (err.status, err.shed, err.attempts) == (Status.OVERLOADED, True, 1)
        assert "Exceeds maximum queue size" in err.server_message
    with Client(urls=url, protocol=protocol, retry_overloaded=True, retries=30,
                backoff_initial_s=0.1, backoff_max_s=0.5) as patient:
        assert _flood(patient, 4) == [None] * 4
