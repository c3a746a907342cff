"""Text to token ids with the model's own fast tokenizer (``tokenizers``).

All texts of all requests in a dynamic batch are encoded in one ``encode_batch`` call, padded
to the longest text of that batch (never to a fixed 128: MiniLM's tokenizer.json ships with
fixed padding, which is reset here) and truncated to the model's maximum length.

Used in two places: the python-ort runner of a model that takes raw text (:class:`TextFront`),
and the tokenizer step of ``ensembles add``'s pipelines (``models/tokenizer.py``). It needs only
numpy and ``tokenizers``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from .errors import InvalidInput

DEFAULT_MAX_CHARS = 20_000  # far beyond 256 tokens: longer is a client bug, not a sentence


@dataclasses.dataclass(frozen=True)
class Encoded:
    input_ids: np.ndarray       # int64 [n, seq]
    attention_mask: np.ndarray  # int64 [n, seq]
    token_type_ids: np.ndarray  # int64 [n, seq]
    truncated: int = 0  # rows cut at the maximum length


def load_tokenizer(path: Path | str, max_length: int, pad_token: str | None = None) -> Tokenizer:
    """The fast tokenizer from ``tokenizer.json``, padding to the longest, truncating at max_length.

    The pad token is ``pad_token`` (what ``python -m tritonstack.ensembles add`` read from the model's
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


class TextFront:
    """Raw text in, the graph's token inputs out, in the model's own process.

    A model whose config has the ``text_input`` parameter takes that BYTES input (one text per
    row) and tokenizes it here with ``tokenizer_file`` (in the model folder, beside
    config.pbtxt), instead of behind a separate tokenizer model in an ensemble. That saves the
    tokenizer's Python-backend hop and the token tensors' trip through Triton, and a request
    refused at this model's full queue has cost no tokenizer work. All texts of a dynamic
    batch are encoded in one call; token inputs are still taken from callers that send them."""

    def __init__(self, model_folder: str, params: Mapping[str, str], token_inputs: Sequence[str]):
        self.name = params["text_input"]
        path = os.path.join(model_folder, params.get("tokenizer_file") or "tokenizer.json")
        self.tokenizer = load_tokenizer(path, int(params["max_length"]), params.get("pad_token") or None)
        self.max_chars = int(params.get("max_chars") or DEFAULT_MAX_CHARS)
        self.token_inputs = list(token_inputs)

    def decode(self, raw: np.ndarray) -> list[str]:
        return decode_texts(raw.reshape(-1), self.max_chars, self.name)

    def encode(self, requests: Sequence[list[str]], per_text: bool = False
               ) -> tuple[list[list[dict[str, np.ndarray]]], int]:
        """Per request, its token arrays: one set padded to its own longest text, or with
        ``per_text`` one set per text, each unpadded (then runs are planned per text, and a
        short sentence does not pad to a long one sent in the same request); and the rows cut
        at the maximum length."""
        encoded = encode(self.tokenizer, [t for texts in requests for t in texts])
        arrays, start = [], 0
        for texts in requests:
            spans = ([(r, r + 1) for r in range(start, start + len(texts))] if per_text
                     else [(start, start + len(texts))])
            start += len(texts)
            arrays.append([{name: getattr(part, name) for name in self.token_inputs}
                           for part in (trim(encoded, a, b) for a, b in spans)])
        return arrays, encoded.truncated
