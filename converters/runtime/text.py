"""Text to token ids with the model's own fast tokenizer (``tokenizers``).

All texts of all requests in a dynamic batch are encoded in one ``encode_batch`` call, padded
to the longest text of that batch (never to a fixed 128: MiniLM's tokenizer.json ships with
fixed padding, which is reset here) and truncated to the model's maximum length.

Used in two places: the python-ort runner of a model that takes raw text (copied beside it as
``text.py``, like ``drift.py``; it needs only numpy and ``tokenizers``), and the ensembles'
tokenizer step (``ensembles.processing.text``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

DEFAULT_MAX_CHARS = 20_000  # far beyond 256 tokens: longer is a client bug, not a sentence


class InvalidInput(ValueError):
    """A request's input cannot be processed; the message tells the caller what to fix.

    ``reason`` is a short label for the data-quality counter on Triton's /metrics
    (``triton_stack_data_quality_total{model, reason}``): empty, too_long, out_of_range ...
    """

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Encoded:
    input_ids: np.ndarray       # int64 [n, seq]
    attention_mask: np.ndarray  # int64 [n, seq]
    token_type_ids: np.ndarray  # int64 [n, seq]
    truncated: int = 0  # rows cut at the maximum length


def load_tokenizer(path: Path | str, max_length: int, pad_token: str | None = None) -> Tokenizer:
    """The fast tokenizer from ``tokenizer.json``, padding to the longest, truncating at max_length.

    The pad token is ``pad_token`` (what ``python -m ensembles add`` read from the model's
    tokenizer config), else the file's own padding token, else BERT's ``[PAD]``.
    """
    tokenizer = Tokenizer.from_file(str(path))
    pad = pad_token or (tokenizer.padding or {}).get("pad_token") or "[PAD]"
    pad_id = tokenizer.token_to_id(pad)
    if pad_id is None:
        raise ValueError(f"{path}: the pad token {pad!r} is not in the vocabulary")
    tokenizer.no_padding()
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad)
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def decode_texts(raw: Sequence[object], max_chars: int = DEFAULT_MAX_CHARS, name: str = "TEXT") -> list[str]:
    """Triton BYTES elements of input ``name`` to text, refusing what no caller should send (the
    message names the input and the row)."""
    texts = []
    for i, item in enumerate(raw):
        if isinstance(item, bytes | np.bytes_):
            try:
                text = bytes(item).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"{name}[{i}] is not valid UTF-8 ({exc.reason} at byte {exc.start})",
                                   "invalid_utf8") from None
        elif isinstance(item, str):
            text = item
        else:
            raise InvalidInput(f"{name}[{i}] must be a string, got {type(item).__name__}", "not_text")
        if not text.strip():
            raise InvalidInput(f"{name}[{i}] is empty; send at least one non-blank character", "empty")
        if len(text) > max_chars:
            raise InvalidInput(f"{name}[{i}] has {len(text):,} characters, over the limit of {max_chars:,}; "
                               "split long documents into passages", "too_long")
        texts.append(text)
    return texts


def encode(tokenizer: Tokenizer, texts: Sequence[str], firsts: Sequence[str] | None = None) -> Encoded:
    """Tokenize ``texts`` in one batch call; with ``firsts``, the pairs (firsts[i], texts[i]),
    as a cross-encoder reads (query, passage)."""
    if not texts:
        raise InvalidInput("no text to encode")
    if firsts is not None and len(firsts) != len(texts):
        raise InvalidInput(f"{len(firsts)} queries for {len(texts)} texts; send one query per text")
    batch = tokenizer.encode_batch(list(zip(firsts, texts, strict=True)) if firsts is not None
                                   else list(texts))
    return Encoded(
        input_ids=np.array([e.ids for e in batch], dtype=np.int64),
        attention_mask=np.array([e.attention_mask for e in batch], dtype=np.int64),
        token_type_ids=np.array([e.type_ids for e in batch], dtype=np.int64),
        truncated=sum(1 for e in batch if e.overflowing),
    )


def trim(encoded: Encoded, start: int, stop: int) -> Encoded:
    """Rows ``start:stop``, with columns that are padding for every one of those rows removed.

    A request's slice of a batch-padded encoding keeps only the length it needs, so the
    next model (which batches again across requests) pads no more than necessary.
    """
    mask = encoded.attention_mask[start:stop]
    length = int(mask.sum(axis=1).max()) if len(mask) else 0
    return Encoded(
        input_ids=encoded.input_ids[start:stop, :length],
        attention_mask=mask[:, :length],
        token_type_ids=encoded.token_type_ids[start:stop, :length],
    )
