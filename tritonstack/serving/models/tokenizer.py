"""TEXT (BYTES [n, 1]) -> the model's token inputs (INT64 [n, seq]): input_ids, attention_mask and,
only where the model takes them, token_type_ids (parameter ``outputs``). With parameter
``pair_input`` (e.g. QUERY) each row is the pair (QUERY, TEXT), as a cross-encoder reads it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the serving package this version carries
from serving.errors import InvalidInput  # noqa: E402
from serving.metrics import RefusalCounter  # noqa: E402
from serving.steps import input_array, respond  # noqa: E402
from serving.text import decode_texts, encode, load_tokenizer, trim  # noqa: E402

ALL_OUTPUTS = "input_ids,attention_mask,token_type_ids"


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = load_tokenizer(folder / "tokenizer.json", int(params["max_length"]),
                                        params.get("pad_token") or None)
        self.max_chars = int(params.get("max_chars", 20_000))
        self.outputs = params.get("outputs", ALL_OUTPUTS).split(",")
        self.pair_input = params.get("pair_input") or None
        self.quality = RefusalCounter(args["model_name"])

    def _parse(self, request: object) -> tuple[list[str] | None, list[str]]:
        texts = decode_texts(input_array(request, "TEXT").reshape(-1), self.max_chars)
        if self.pair_input is None:
            return None, texts
        firsts = decode_texts(input_array(request, self.pair_input).reshape(-1), self.max_chars,
                              self.pair_input)
        if len(firsts) != len(texts):
            raise InvalidInput(f"{len(firsts)} {self.pair_input} rows for {len(texts)} TEXT rows; "
                               "send one per text", "pair_mismatch")
        return firsts, texts

    def _compute(self, batches: list[tuple[list[str] | None, list[str]]]) -> list[list[object]]:
        texts = [text for _, rows in batches for text in rows]
        firsts = ([first for rows, _ in batches for first in rows or ()]
                  if self.pair_input is not None else None)
        encoded = encode(self.tokenizer, texts, firsts)
        self.quality.count("truncated", encoded.truncated)
        outputs, start = [], 0
        for _, rows in batches:
            part = trim(encoded, start, start + len(rows))
            start += len(rows)
            outputs.append([pb_utils.Tensor(name, getattr(part, name)) for name in self.outputs])
        return outputs

    def execute(self, requests: list) -> list:
        return respond(requests, self._parse, self._compute, self.quality)
