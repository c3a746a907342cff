"""The tokenizer, digits steps and both ensembles through the real Triton over gRPC, with
stand-in encoder/classifier models (the real exports are tested in tests/e2e)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from ensembles.build import minilm_tokenizer_file
from ensembles.processing.digits import postprocess
from ensembles.processing.text import encode, load_tokenizer
from loadtest.metrics import scrape
from server import TritonServer
from tests.ensembles.standins import reference_embedding

pytestmark = pytest.mark.triton


def _text(texts: list[bytes]) -> grpcclient.InferInput:
    inp = grpcclient.InferInput("TEXT", [len(texts), 1], "BYTES")
    inp.set_data_from_numpy(np.array(texts, dtype=object).reshape(-1, 1))
    return inp


def _image(x: np.ndarray, dtype: str = "FP32") -> grpcclient.InferInput:
    inp = grpcclient.InferInput("IMAGE", list(x.shape), dtype)
    inp.set_data_from_numpy(x)
    return inp


def test_embed_matches_reference(server: TritonServer) -> None:
    texts = ["The quick brown fox.", "Return the absolute value of a number, a longer one."]
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        out = c.infer("embed", [_text([t.encode() for t in texts])]).as_numpy("EMBEDDING")
    enc = encode(load_tokenizer(minilm_tokenizer_file(), 256), texts)
    rows = [list(ids[m == 1]) for ids, m in zip(enc.input_ids, enc.attention_mask, strict=True)]
    assert out.shape == (2, 384)
    np.testing.assert_allclose(out, reference_embedding(rows), atol=1e-6)


def test_classify_digit_and_classification_extension(server: TritonServer) -> None:
    x = np.zeros((3, 8, 8), np.float32)
    for i, row in enumerate((2, 5, 7)):
        x[i, row] = 16.0
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        result = c.infer("classify_digit", [_image(x)])
        top = c.infer("classify_digit", [_image(x)],
                      outputs=[grpcclient.InferRequestedOutput("PROBABILITIES", class_count=2)])
    logits = np.zeros((3, 10), np.float32)
    logits[:, :8] = (x / 16).mean(axis=2)  # what the stand-in classifier computes
    labels, probs = postprocess(logits)
    assert result.as_numpy("LABEL").ravel().tolist() == [2, 5, 7] == labels.ravel().tolist()
    np.testing.assert_allclose(result.as_numpy("PROBABILITIES"), probs, rtol=1e-5)
    first = top.as_numpy("PROBABILITIES")[0, 0].decode()
    assert re.fullmatch(r"0\.\d+:2:2", first), first  # value:index:label from labels.txt


@pytest.mark.parametrize("case", ["empty", "huge", "utf8", "shape", "dtype", "oversize", "missing"])
def test_bad_input_is_invalid_argument_and_server_keeps_serving(server: TritonServer, case: str) -> None:
    calls = {
        "empty": ("embed", lambda: [_text([b""])]),
        "huge": ("embed", lambda: [_text([b"x" * 100_000])]),
        "utf8": ("embed", lambda: [_text([b"\xff\xfe"])]),
        "shape": ("classify_digit", lambda: [_image(np.zeros((1, 8, 7), np.float32))]),
        "dtype": ("classify_digit", lambda: [_image(np.zeros((1, 8, 8), np.float64), "FP64")]),
        "oversize": ("classify_digit", lambda: [_image(np.zeros((257, 8, 8), np.float32))]),
        "missing": ("embed", lambda: []),
    }
    model, inputs = calls[case]
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        try:
            c.infer(model, inputs())
            pytest.fail(f"{case}: bad input accepted")
        except InferenceServerException as exc:
            assert exc.status() == "StatusCode.INVALID_ARGUMENT", (case, exc.status(), exc.message())
            assert exc.message(), case
        ok = c.infer("embed", [_text([b"still serving"])]).as_numpy("EMBEDDING")
        assert ok.shape == (1, 384)


def test_one_bad_request_fails_alone_in_a_batch(server: TritonServer) -> None:
    def send(i: int) -> str:
        text = b"" if i % 4 == 0 else f"sentence number {i}".encode()
        with grpcclient.InferenceServerClient(server.grpc_url) as c:
            try:
                c.infer("embed", [_text([text])])
                return "ok"
            except InferenceServerException as exc:
                return "empty" if "is empty" in exc.message() else exc.message()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, range(64)))
    assert results.count("empty") == 16 and results.count("ok") == 48


def test_dynamic_batching_batched_the_tokenizer(server: TritonServer) -> None:
    def metric(name: str, model: str) -> float:
        counters = scrape(server.metrics_url, timeout_s=5)
        assert counters is not None
        return counters.get(model, {}).get(name, 0.0)

    before = metric("nv_inference_count", "minilm_tokenizer"), metric("nv_inference_exec_count",
                                                                        "minilm_tokenizer")
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: grpcclient.InferenceServerClient(server.grpc_url).infer(
            "embed", [_text([f"text {i}".encode()])]), range(64)))
    count = metric("nv_inference_count", "minilm_tokenizer") - before[0]
    execs = metric("nv_inference_exec_count", "minilm_tokenizer") - before[1]
    assert count == 64 and execs < count, (count, execs)


def test_refused_and_truncated_inputs_are_counted_per_reason_on_tritons_metrics(server: TritonServer) -> None:
    from loadtest.metrics import scrape_monitoring

    def counts() -> dict[str, dict[str, float]]:
        return (scrape_monitoring(server.metrics_url, timeout_s=5) or {}).get("data_quality", {})

    before = counts()
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        for model, inputs in (("embed", [_text([b"  "])]), ("embed", [_text([b"\xff"])]),
                              ("classify_digit", [_image(np.full((1, 8, 8), 17.0, np.float32))])):
            with pytest.raises(InferenceServerException):
                c.infer(model, inputs)
        c.infer("embed", [_text([b"word " * 400, b"short"])])  # 400 words: past 256 tokens
    after = counts()

    def delta(model: str, reason: str) -> float:
        return after.get(model, {}).get(reason, 0.0) - before.get(model, {}).get(reason, 0.0)

    assert delta("minilm_tokenizer", "empty") == 1
    assert delta("minilm_tokenizer", "invalid_utf8") == 1
    assert delta("minilm_tokenizer", "truncated") == 1  # the long text only
    assert delta("digits_preprocess", "out_of_range") == 1
