"""Hugging Face text-embeddings-inference's API: ``POST /embed`` (and ``POST /``, as TEI
serves its model's route there), ``POST /rerank``, ``POST /predict``, ``GET /health``,
``GET /info``.

TEI serves one model; here each route serves the pipeline the front was started with
(``--embed-model``, ``--rerank-model``, ``--classify-model``). Differences from TEI:

* ``normalize=false`` returns what the pipeline gives: the demo's ``embed`` is L2-normalised
  inside the model, so its vectors are unit length either way.
* ``truncate=false`` (TEI's default) refuses a text longer than the model reads (413) when the
  tokenizer is known (``--model-repository``); otherwise the pipeline cuts it.
* ``/predict`` gives the pipeline's probabilities; ``raw_scores=true`` is refused (the pipeline
  returns no logits). ``/rerank`` scores are the cross-encoder's raw score through a sigmoid,
  as TEI does, or raw with ``raw_scores=true``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from tritonstack import __version__
from tritonstack.client import ClientError
from tritonstack.http.app import boolean, check_lengths, json_object, read_json, text_list
from tritonstack.http.backend import Backend, finite
from tritonstack.http.errors import ApiError, invalid


def _pipeline(name: str | None, route: str, flag: str) -> str:
    if not name:
        raise ApiError(424, f"no pipeline serves {route} here: start the front with {flag} NAME",
                       kind="server_error", code="not_served")
    return name


async def embed(request: Request, backend: Backend) -> list[list[float]]:
    body = json_object(await read_json(request, backend.settings))
    texts, _ = text_list(body.get("inputs"), "inputs", backend.settings)
    normalize = boolean(body, "normalize", True)
    if not boolean(body, "truncate", False):
        check_lengths(backend, backend.settings.embed_model, texts, "inputs")
    vectors = await backend.embed(backend.settings.embed_model, texts)
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1).astype(np.float32)
    return vectors.tolist()


async def rerank(request: Request, backend: Backend) -> list[dict[str, Any]]:
    model = _pipeline(backend.settings.rerank_model, "/rerank", "--rerank-model")
    body = json_object(await read_json(request, backend.settings))
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise invalid("'query' is required: a non-empty string", param="query")
    texts, _ = text_list(body.get("texts"), "texts", backend.settings)
    return_text = boolean(body, "return_text", False)
    raw_scores = boolean(body, "raw_scores", False)
    try:
        scores = finite(await backend.client.rerank(query, texts, model=model), model)
    except ClientError as exc:
        raise backend.failed(exc, param="texts") from None
    if not raw_scores:
        scores = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
    order = np.argsort(-scores, kind="stable")
    return [{"index": int(i), "score": float(scores[i]), **({"text": texts[i]} if return_text else {})}
            for i in order]


async def predict(request: Request, backend: Backend) -> list[Any]:
    model = _pipeline(backend.settings.classify_model, "/predict", "--classify-model")
    body = json_object(await read_json(request, backend.settings))
    raw = body.get("inputs")
    if isinstance(raw, list) and any(isinstance(x, list) for x in raw):
        raise invalid("'inputs' as text pairs is not supported: the pipeline classifies single texts",
                      param="inputs")
    texts, single = text_list(raw, "inputs", backend.settings)
    if boolean(body, "raw_scores", False):
        raise invalid("raw_scores=true is not available: the pipeline returns probabilities, not logits",
                      param="raw_scores")
    if not boolean(body, "truncate", False):
        check_lengths(backend, model, texts, "inputs")
    try:
        predictions = await backend.client.classify_texts(texts, model=model)
    except ClientError as exc:
        raise backend.failed(exc, param="inputs") from None
    finite(predictions.probabilities, model)
    names = backend.labels(model) or _seen_names(predictions)
    rows = []
    for probabilities in predictions.probabilities:
        order = np.argsort(-probabilities, kind="stable")
        rows.append([{"label": names[int(k)] if int(k) < len(names) else str(int(k)), "score": float(probabilities[k])}
                     for k in order])
    return rows[0] if single else rows


def _seen_names(predictions: Any) -> list[str]:
    """Class names by index without the repository: the pipeline names each text's top class,
    so a class never on top is named by its index."""
    names: dict[int, str] = {}
    for label, probabilities in zip(predictions.labels, predictions.probabilities, strict=True):
        names[int(np.argmax(probabilities))] = label
    width = predictions.probabilities.shape[1]
    return [names.get(k, str(k)) for k in range(width)]


async def health(request: Request, backend: Backend) -> Response:
    models = [m for m in (backend.settings.embed_model, backend.settings.rerank_model,
                          backend.settings.classify_model) if m]
    ok, why = await backend.ready(models)
    if not ok:
        raise ApiError(503, why, kind="server_error", code="unavailable",
                       retry_after_s=backend.settings.retry_after_s)
    return Response(status_code=200)


async def info(request: Request, backend: Backend) -> dict[str, Any]:
    settings = backend.settings
    counter = backend.counter(settings.embed_model)
    return {
        "model_id": settings.embed_model,
        "model_sha": None,
        "model_dtype": None,
        "model_type": {"embedding": {"pooling": None}},  # pooled inside the model: not known here
        "pipelines": {"embed": settings.embed_model, "rerank": settings.rerank_model,
                      "predict": settings.classify_model},
        "max_concurrent_requests": None,
        "max_input_length": counter.max_length if counter else None,
        "max_batch_tokens": None,
        "max_client_batch_size": settings.max_inputs,
        "auto_truncate": counter is None,
        "tokenization_workers": None,
        "version": __version__,
        "backend": "triton",
    }


ROUTES = [
    ("/embed", "POST", embed, True),
    ("/", "POST", embed, True),
    ("/rerank", "POST", rerank, True),
    ("/predict", "POST", predict, True),
    ("/health", "GET", health, False),
    ("/info", "GET", info, True),
]
