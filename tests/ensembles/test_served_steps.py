"""Both demo pipelines through the real Triton over gRPC, one step each: MiniLM tokenizing its
own text in its runner (``converters.repository.serve_text``) and the digits classifier whose
graph scales the pixels and computes the softmax and the label. What the Python steps in front
of and behind the models did before (validation, refusals counted per reason, the
classification extension) must still hold."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tritonstack.client import is_shed
from tritonstack.demo.data import digits_split
from tritonstack.ensembles.build import MAX_LENGTH, minilm_tokenizer_file
from tritonstack.server import TritonServer
from tritonstack.serving.text import encode, load_tokenizer

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def _text(texts: list[bytes]) -> grpcclient.InferInput:
    inp = grpcclient.InferInput("TEXT", [len(texts), 1], "BYTES")
    inp.set_data_from_numpy(np.array(texts, dtype=object).reshape(-1, 1))
    return inp


def _image(x: np.ndarray, dtype: str = "FP32") -> grpcclient.InferInput:
    inp = grpcclient.InferInput("IMAGE", list(x.shape), dtype)
    inp.set_data_from_numpy(x)
    return inp


def _tokens(enc) -> list[grpcclient.InferInput]:
    inputs = []
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        array = getattr(enc, name)
        inp = grpcclient.InferInput(name, list(array.shape), "INT64")
        inp.set_data_from_numpy(array)
        inputs.append(inp)
    return inputs


def test_embed_is_one_step_and_equals_minilm_fed_the_tokenizers_ids(server: TritonServer) -> None:
    texts = ["The quick brown fox.", "Return the absolute value of a number, a longer one."]
    enc = encode(load_tokenizer(minilm_tokenizer_file(), MAX_LENGTH), texts)
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        config = c.get_model_config("embed").config
        served = c.infer("embed", [_text([t.encode() for t in texts])]).as_numpy("EMBEDDING")
        direct = c.infer("minilm", _tokens(enc)).as_numpy("embedding")  # token inputs still taken
    assert [s.model_name for s in config.ensemble_scheduling.step] == ["minilm"]
    assert served.shape == (2, 384)
    np.testing.assert_allclose(served, direct, atol=1e-6)


def test_classify_digit_is_one_step_with_the_classification_extension(server: TritonServer) -> None:
    x = np.asarray(digits_split().x_test_raw[:3], np.float32)
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        config = c.get_model_config("classify_digit").config
        result = c.infer("classify_digit", [_image(x)])
        top = c.infer("classify_digit", [_image(x)],
                      outputs=[grpcclient.InferRequestedOutput("PROBABILITIES", class_count=2)])
        image = grpcclient.InferInput("image", list(x.shape), "FP32")
        image.set_data_from_numpy(x)
        logits = c.infer("digits_cnn", [image]).as_numpy("logits")
    assert [s.model_name for s in config.ensemble_scheduling.step] == ["digits_cnn"]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result.as_numpy("PROBABILITIES"), expected, atol=1e-6)
    labels = result.as_numpy("LABEL")
    assert labels.shape == (3, 1) and labels.ravel().tolist() == logits.argmax(axis=1).tolist()
    value, index, label = top.as_numpy("PROBABILITIES")[0, 0].decode().split(":")
    assert int(index) == labels[0, 0] and label == str(labels[0, 0])  # value:index:label, labels.txt
    assert re.fullmatch(r"[01]\.\d+", value)


@pytest.mark.parametrize("case, message", [
    ("empty", "TEXT[0] is empty"),
    ("huge", "over the limit"),
    ("utf8", "not valid UTF-8"),
    ("missing", ""),
    ("shape", ""),
    ("dtype", ""),
    ("oversize", ""),
    ("range", "outside 0..16"),
    ("nan", "NaN"),
])
def test_bad_input_is_invalid_argument_and_server_keeps_serving(server: TritonServer, case: str,
                                                               message: str) -> None:
    calls = {
        "empty": ("embed", lambda: [_text([b""])]),
        "huge": ("embed", lambda: [_text([b"x" * 100_000])]),
        "utf8": ("embed", lambda: [_text([b"\xff\xfe"])]),
        "missing": ("embed", lambda: []),
        "shape": ("classify_digit", lambda: [_image(np.zeros((1, 8, 7), np.float32))]),
        "dtype": ("classify_digit", lambda: [_image(np.zeros((1, 8, 8), np.float64), "FP64")]),
        "oversize": ("classify_digit", lambda: [_image(np.zeros((257, 8, 8), np.float32))]),
        "range": ("classify_digit", lambda: [_image(np.full((1, 8, 8), 255.0, np.float32))]),
        "nan": ("classify_digit", lambda: [_image(np.full((1, 8, 8), np.nan, np.float32))]),
    }
    model, inputs = calls[case]
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        with pytest.raises(InferenceServerException) as caught:
            c.infer(model, inputs())
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", (case, caught.value.message())
        assert message in caught.value.message(), caught.value.message()
        assert c.infer("embed", [_text([b"still serving"])]).as_numpy("EMBEDDING").shape == (1, 384)
        assert c.infer("classify_digit", [_image(np.ones((1, 8, 8), np.float32))]).as_numpy(
            "LABEL").shape == (1, 1)


def test_one_bad_request_fails_alone_in_a_batch(server: TritonServer) -> None:
    def send(i: int) -> str:
        text = b"" if i % 4 == 0 else f"sentence number {i}".encode()
        with grpcclient.InferenceServerClient(server.grpc_url) as c:
            try:
                c.infer("embed", [_text([text])])
                return "ok"
            except InferenceServerException as exc:
                if is_shed(exc.message()):  # shed for load (MiniLM computes 32 rows at once)
                    return send(i)
                return "empty" if "is empty" in exc.message() else exc.message()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(64)))
    assert results.count("empty") == 16 and results.count("ok") == 48


def test_refused_and_truncated_inputs_are_counted_per_reason_on_tritons_metrics(server: TritonServer) -> None:
    from tritonstack.loadtest.runner.metrics import scrape_monitoring

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

    assert delta("minilm", "empty") == 1
    assert delta("minilm", "invalid_utf8") == 1
    assert delta("minilm", "truncated") == 1  # the long text only
    assert delta("digits_cnn", "out_of_range") == 1
