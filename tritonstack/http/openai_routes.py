"""OpenAI's embeddings API: ``POST /v1/embeddings`` and ``GET /v1/models``.

``usage`` counts the tokens the pipeline's model reads, with its own tokenizer from the model
repository (``--model-repository``); without one, ``prompt_tokens`` and ``total_tokens`` are
null: Triton reports no counts, and the front does not guess them. A text longer than the
model reads is refused (413) when the tokenizer is known, as OpenAI refuses one over its
context; without it, the pipeline cuts it at its maximum length.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from starlette.requests import Request

from tritonstack.http.app import check_lengths, json_object, read_json, text_list
from tritonstack.http.backend import Backend
from tritonstack.http.errors import ApiError, invalid

ENCODINGS = ("float", "base64")


async def embeddings(request: Request, backend: Backend) -> dict[str, Any]:
    body = json_object(await read_json(request, backend.settings))
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' is required: the name of an embedding pipeline (GET /v1/models lists them)",
                      param="model")
    raw = body.get("input")
    if isinstance(raw, list) and raw and all(isinstance(x, (int, list)) for x in raw):
        raise invalid("'input' as token ids is not supported: send text (the pipeline tokenizes it)", param="input")
    texts, _ = text_list(raw, "input", backend.settings)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise invalid(f"'encoding_format' must be 'float' or 'base64', got {encoding!r}", param="encoding_format")
    served = await backend.embedding_models()
    if model not in served:
        raise ApiError(404, f"the model '{model}' does not exist or is not an embedding pipeline served here; "
                       f"served: {', '.join(served) or 'none'}", code="model_not_found", param="model")
    counts = check_lengths(backend, model, texts, "input")
    vectors = await backend.embed(model, texts)
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != vectors.shape[1]:
        raise invalid(f"'dimensions' {dimensions!r} is not available: '{model}' gives {vectors.shape[1]} dimensions",
                      param="dimensions")
    tokens = sum(counts) if counts is not None else None
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": _encode(vector, encoding)}
                 for i, vector in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector.tolist()
    little = vector.astype("<f4", copy=False)  # what OpenAI's base64 holds: float32, little-endian
    return base64.b64encode(little.tobytes()).decode("ascii")


async def models(request: Request, backend: Backend) -> dict[str, Any]:
    # "created" is not known to Triton; 0 says so (the field is required by OpenAI's clients).
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "tritonstack"}
                                       for name in await backend.embedding_models()]}


ROUTES = [
    ("/v1/embeddings", "POST", embeddings, True),
    ("/v1/models", "GET", models, True),
]
