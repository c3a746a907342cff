"""Exported python-ort models loaded and answered by a real Triton (the launcher).

L0: tiny BERT (ragged text batch) and the tiny classifier. L1 (``slow``): real MiniLM and the
digits CNN exported with the demo settings, answering through Triton like their ONNX files do.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tests.converters import tiny
from tritonstack.converters.api import ExportSpec, export
from tritonstack.converters.spec import Thresholds
from tritonstack.serving.cpu import int8_config_entries
from tritonstack.serving.session import make_session

pytestmark = pytest.mark.triton


def infer(client, model: str, arrays: dict[str, np.ndarray], output: str) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    tensors = []
    for name, array in arrays.items():
        t = grpcclient.InferInput(name, list(array.shape), "INT64" if array.dtype == np.int64 else "FP32")
        t.set_data_from_numpy(array)
        tensors.append(t)
    return client.infer(model, tensors).as_numpy(output)


def text_feed(lengths: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    width = max(lengths)
    ids = np.zeros((len(lengths), width), np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1000, 20000, n)
    mask = (ids > 0).astype(np.int64)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_tiny_exports_load_and_answer_in_triton(tmp_path):
    import tritonclient.grpc as grpcclient

    from tests.conftest import start_server

    repo = tmp_path / "repo"
    bert = tiny.write_tiny_bert(tmp_path / "bert")
    export(ExportSpec(str(bert), "bert", precisions=("int8",), repository=repo, work_dir=tmp_path / "w1",
                      evaluation_size=100, thresholds=Thresholds(min_mean_cosine=0.5, min_min_cosine=0,
                                                                 min_recall_at_10=0)), progress=None)
    export(ExportSpec("tests.converters.tiny:classifier_factory", "cls", precisions=("fp32",),
                      repository=repo, work_dir=tmp_path / "w2"), progress=None)
    # in process as the runner serves it: exact INT8 kernels on every CPU
    bert_onnx, _ = make_session(str(repo / "bert" / "1" / "model.onnx"), {},
                                config_entries=int8_config_entries())
    cls_onnx = ort.InferenceSession(str(repo / "cls" / "1" / "model.onnx"))
    with start_server(repo) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        feed = text_feed([5, 9, 3])
        got = infer(client, "bert", feed, "embedding")
        np.testing.assert_allclose(got, bert_onnx.run(None, feed)[0], atol=1e-4)
        assert got.shape == (3, 32)
        image = np.random.default_rng(1).uniform(0, 1, (4, 1, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(infer(client, "cls", {"image": image}, "logits"),
                                   cls_onnx.run(None, {"image": image})[0], atol=1e-5)
        client.close()


def test_text_inputs_the_model_cannot_take_are_invalid_argument(tmp_path):
    """Sent straight to the exported model (no tokenizer in front): refused, the server serves on."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from tests.conftest import start_server

    repo = tmp_path / "repo"
    bert = tiny.write_tiny_bert(tmp_path / "bert")  # vocab 30522, 128 positions, 2 token types
    export(ExportSpec(str(bert), "bert", repository=repo, work_dir=tmp_path / "w"), progress=None)
    config = (repo / "bert" / "config.pbtxt").read_text()
    assert "input_ids:0:30522" in config and "sequence_length:128" in config
    cases = {"zero-length": {k: v[:, :0] for k, v in text_feed([3]).items()},
             "id >= vocab": {**text_feed([3]), "input_ids": np.array([[1, 30522, 2]], np.int64)},
             "negative id": {**text_feed([3]), "input_ids": np.array([[1, -3, 2]], np.int64)},
             "too long": text_feed([129])}
    with start_server(repo) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for case, feed in cases.items():
            with pytest.raises(InferenceServerException) as refused:
                infer(client, "bert", feed, "embedding")
            assert refused.value.status() == "StatusCode.INVALID_ARGUMENT", (case, refused.value)
        assert infer(client, "bert", text_feed([128]), "embedding").shape == (1, 32)
        client.close()


@pytest.mark.slow
def test_minilm_and_digits_demo_exports_serve_in_triton(tmp_path):
    """The demo settings (docs/converters.md) end to end: export, gate, load, infer."""
    import tritonclient.grpc as grpcclient
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from tests.conftest import start_server
    from tritonstack.converters.sources.hf import minilm_folder

    repo = tmp_path / "repo"
    minilm = export(ExportSpec("minilm", "minilm", precisions=("int8", "fp32"), repository=repo,
                               work_dir=tmp_path / "w1"), progress=None)  # the default gate, all 1000 rows
    digits = export(ExportSpec("tritonstack.converters.sources.digits:factory", "digits_cnn",
                               precisions=("int8", "fp32"),
                               repository=repo, work_dir=tmp_path / "w2"), progress=None)
    assert minilm.accuracy["metrics"]["mean_cosine"] >= 0.99
    assert minilm.accuracy["metrics"]["recall_at_10"] >= 0.95 and not minilm.thresholds_lowered
    assert digits.accuracy["metrics"]["accuracy_drop_points"] <= 0.5 + 1e-9
    sentences = ["A cat sits on the mat.", "Return the number of items in the container, or zero if empty."]
    tok = AutoTokenizer.from_pretrained(str(minilm_folder()))
    enc = {k: np.asarray(v, np.int64) for k, v in tok(sentences, padding=True, return_tensors="np").items()}
    reference = SentenceTransformer(str(minilm_folder()), device="cpu").encode(sentences)
    with start_server(repo) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        fp32 = infer(client, "minilm_fp32", enc, "embedding")
        int8 = infer(client, "minilm", enc, "embedding")
        np.testing.assert_allclose(fp32, reference, atol=1e-4)
        assert (np.sum(int8 * reference, axis=1) > 0.98).all()
        from tritonstack.demo.data import digits_split

        split = digits_split(0)
        logits = infer(client, "digits_cnn", {"image": np.ascontiguousarray(split.x_test_raw[:32])}, "logits")
        assert logits.shape == (32, 10)
        assert (logits.argmax(1) == split.y_test[:32]).mean() > 0.9
        client.close()
