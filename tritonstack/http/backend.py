"""The front's one connection to Triton: an ``AsyncClient``, the served pipelines, the token
counters. Created in the app's lifespan (the client's channels bind to the running loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np

from tritonstack.client import AsyncClient, ClientError, ModelInfo
from tritonstack.http.errors import ApiError, from_client_error
from tritonstack.http.repository import Counter, counter, labels
from tritonstack.http.settings import Settings


def is_embedding(info: ModelInfo) -> bool:
    """A pipeline that takes TEXT (BYTES) and gives EMBEDDING: what ``/v1/embeddings`` serves."""
    return (any(t.name == "TEXT" and t.datatype == "BYTES" for t in info.inputs)
            and any(t.name == "EMBEDDING" for t in info.outputs))


class Backend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = AsyncClient(settings.client)
        self._embedding: tuple[float, list[str]] | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self.client.close()

    def failed(self, exc: ClientError, param: str | None = "input") -> ApiError:
        return from_client_error(exc, retry_after_s=self.settings.retry_after_s, param=param,
                                 timeout_s=self.settings.client.timeout_s)

    def counter(self, model: str) -> Counter | None:
        return counter(self.settings.model_repository, model)

    def labels(self, model: str) -> tuple[str, ...] | None:
        return labels(self.settings.model_repository, model)

    async def embedding_models(self) -> list[str]:
        """Ready pipelines that take text and give embeddings (cached ``models_ttl_s``)."""
        cached = self._embedding
        if cached is not None and time.monotonic() - cached[0] < self.settings.models_ttl_s:
            return cached[1]
        async with self._lock:
            cached = self._embedding
            if cached is not None and time.monotonic() - cached[0] < self.settings.models_ttl_s:
                return cached[1]
            try:
                states = await self.client.list_models()
                names = sorted({m.name for m in states if m.state == "READY"})
                infos = await asyncio.gather(*(self.client.model_info(n) for n in names), return_exceptions=True)
            except ClientError as exc:
                raise self.failed(exc, param=None) from None
            found = [n for n, info in zip(names, infos, strict=True)
                     if isinstance(info, ModelInfo) and is_embedding(info)]
            self._embedding = (time.monotonic(), found)
            return found

    async def embed(self, model: str, texts: Sequence[str]) -> np.ndarray:
        try:
            vectors = await self.client.embed(list(texts), model=model)
        except ClientError as exc:
            raise self.failed(exc) from None
        return finite(vectors, model)

    async def ready(self, models: Sequence[str]) -> tuple[bool, str]:
        """Whether Triton is ready and serves every one of ``models``; and why not."""
        try:
            if not await self.client.server_ready(timeout_s=2.0):
                return False, "the model server is not ready"
        except ClientError as exc:
            return False, f"the model server is unavailable: {exc}"
        for model in models:
            try:
                if not await self.client.model_ready(model, timeout_s=2.0):
                    return False, f"pipeline '{model}' is not ready"
            except ClientError as exc:
                return False, f"pipeline '{model}' cannot be served: {exc}"
        return True, ""


def finite(values: np.ndarray, model: str) -> np.ndarray:
    """``values`` if every one is finite; else the model failed the request (500): JSON has no
    NaN, and a NaN vector or score is no answer."""
    if not np.isfinite(values).all():
        raise ApiError(500, f"pipeline '{model}' answered NaN or infinite values: its model is broken "
                       "(python -m tritonstack.converters verify checks a repository)",
                       kind="server_error", code="internal")
    return values
