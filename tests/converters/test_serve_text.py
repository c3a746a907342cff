"""A text model that takes raw text (``converters.repository.serve_text``): the config it writes,
what later exports and serving changes keep of it, its refusals, and the model served by a real
Triton answering TEXT exactly as it answers the tokenizer's ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.converters import tiny
from tritonstack.converters.api import apply_serving, export
from tritonstack.converters.errors import InvalidSpec
from tritonstack.converters.repository import read_config, serve_text
from tritonstack.converters.spec import ExportSpec

TOKENIZER = "tokenizer.json"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A repository with a tiny BERT (version 1) that takes text, and its HF folder."""
    root = tmp_path_factory.mktemp("serve_text")
    bert = tiny.write_tiny_bert(root / "bert")
    repo = root / "repo"
    export(ExportSpec(str(bert), "bert", precisions=("fp32",), repository=repo, work_dir=root / "w"),
           progress=None)
    serve_text(repo / "bert", bert / TOKENIZER, max_length=64)
    return repo, bert


def test_the_config_takes_text_beside_optional_token_inputs(exported) -> None:
    repo, bert = exported
    config = read_config(repo / "bert")
    inputs = {t.name: t for t in config.input}
    assert set(inputs) == {"TEXT", "input_ids", "attention_mask", "token_type_ids"}
    assert all(t.optional for t in inputs.values())
    assert list(inputs["TEXT"].dims) == [1]
    assert config.parameters["text_input"].string_value == "TEXT"
    assert config.parameters["max_length"].string_value == "64"
    assert (repo / "bert" / TOKENIZER).read_bytes() == (bert / TOKENIZER).read_bytes()
    assert (repo / "bert" / "1" / "serving" / "text.py").is_file()  # the runner's tokenizing code, per version


def test_a_new_export_and_a_serving_change_keep_the_text_input(exported, tmp_path: Path) -> None:
    repo, bert = exported
    spec = ExportSpec(str(bert), "bert", precisions=("fp32",), repository=repo, work_dir=tmp_path / "w",
                      max_batch_size=16)
    export(spec, progress=None)
    apply_serving(spec)
    config = read_config(repo / "bert")
    assert config.max_batch_size == 16  # the serving change took
    assert "TEXT" in {t.name for t in config.input} and all(t.optional for t in config.input)
    assert config.parameters["max_length"].string_value == "64"


def test_serve_text_refuses_what_cannot_tokenize(exported, tmp_path: Path) -> None:
    repo, bert = exported
    cls = tmp_path / "repo"
    export(ExportSpec("tests.converters.tiny:classifier_factory", "cls", precisions=("fp32",),
                      repository=cls, work_dir=tmp_path / "w"), progress=None)
    with pytest.raises(InvalidSpec, match="not a text model served by the python-ort runner"):
        serve_text(cls / "cls", bert / TOKENIZER, max_length=64)
    with pytest.raises(InvalidSpec, match="no exported version"):
        serve_text(tmp_path / "nothing", bert / TOKENIZER, max_length=64)
    old = tmp_path / "old"
    shutil.copytree(repo / "bert", old / "bert")
    for text_py in (old / "bert").glob("*/serving/text.py"):
        text_py.unlink()  # as if exported before the runner could tokenize
    with pytest.raises(InvalidSpec, match="predate raw-text serving"):
        serve_text(old / "bert", bert / TOKENIZER, max_length=64)


@pytest.mark.triton
def test_served_text_equals_the_tokenizers_ids_and_bad_text_is_refused(exported) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from tests.conftest import start_server
    from tritonstack.serving.text import encode, load_tokenizer

    repo, bert = exported
    texts = ["where is my parcel", "a much longer sentence about refunds and returns policy"]
    enc = encode(load_tokenizer(bert / TOKENIZER, 64), texts)
    text = grpcclient.InferInput("TEXT", [2, 1], "BYTES")
    text.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=object))
    tokens = []
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        tokens.append(grpcclient.InferInput(name, list(enc.input_ids.shape), "INT64"))
        tokens[-1].set_data_from_numpy(getattr(enc, name))
    empty = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
    empty.set_data_from_numpy(np.array([[b""]], dtype=object))
    def text_input(rows: list[str]):
        tensor = grpcclient.InferInput("TEXT", [len(rows), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[t.encode()] for t in rows], dtype=object))
        return tensor

    # a request's texts are computed one by one (unpadded) and come back in the request's order
    mixed = [texts[1], "ok", "returns take two weeks", texts[0]]
    with start_server(repo) as server, grpcclient.InferenceServerClient(server.grpc_url) as client:
        from_text = client.infer("bert", [text]).as_numpy("embedding")
        from_ids = client.infer("bert", tokens).as_numpy("embedding")
        together = client.infer("bert", [text_input(mixed)]).as_numpy("embedding")
        alone = np.concatenate([client.infer("bert", [text_input([t])]).as_numpy("embedding") for t in mixed])
        with pytest.raises(InferenceServerException, match=r"TEXT\[0\] is empty") as caught:
            client.infer("bert", [empty])
    np.testing.assert_allclose(from_text, from_ids, atol=1e-6)
    assert together.shape == (4, from_text.shape[1])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    np.testing.assert_allclose(together[[3, 0]], from_text, atol=1e-6)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
