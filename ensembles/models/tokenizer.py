"""TEXT (BYTES [n, 1]) -> input_ids, attention_mask, token_type_ids (INT64 [n, seq])."""

from __future__ import annotations

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from ensembles.models.batching import input_array, respond
from ensembles.processing.text import decode_texts, encode, load_tokenizer, trim


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = load_tokenizer(folder / "tokenizer.json", int(params["max_length"]))
        self.max_chars = int(params.get("max_chars", 20_000))

    def _parse(self, request: object) -> list[str]:
        return decode_texts(input_array(request, "TEXT").reshape(-1), self.max_chars)

    def _compute(self, batches: list[list[str]]) -> list[list[object]]:
        encoded = encode(self.tokenizer, [text for texts in batches for text in texts])
        outputs, start = [], 0
        for texts in batches:
            part = trim(encoded, start, start + len(texts))
            start += len(texts)
            outputs.append([pb_utils.Tensor("input_ids", part.input_ids),
                            pb_utils.Tensor("attention_mask", part.attention_mask),
                            pb_utils.Tensor("token_type_ids", part.token_type_ids)])
        return outputs

    def execute(self, requests: list) -> list:
        return respond(requests, self._parse, self._compute)
