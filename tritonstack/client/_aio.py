"""The asyncio client: the sync client's API as coroutines over ``grpc.aio`` channels, or over
an aiohttp session with ``protocol="http"``.

Create it inside the running event loop (its channels bind to that loop) and close it with
``await client.close()`` or ``async with``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tritonstack.client._base import ClientBase, ReplicaHealth
from tritonstack.client._config import ClientConfig
from tritonstack.client._errors import (
    SHED_STATUSES,
    AttemptFailed,
    ClientError,
    Status,
    limit_wait_expired,
)
from tritonstack.client._grpc import AsyncGrpcSender
from tritonstack.client._http import AsyncHttpSender
from tritonstack.client._limit import AsyncGate
from tritonstack.client._pipelines import (
    CLASSIFY_MODEL,
    EMBED_DIM,
    EMBED_MODEL,
    DigitPredictions,
    TextPredictions,
    digit_inputs,
    digit_outputs,
    embed_inputs,
    embed_output,
    rerank_inputs,
    rerank_output,
    text_class_outputs,
)
from tritonstack.client._retry import Attempts
from tritonstack.client._tensors import ModelInfo, ModelState, merge


class AsyncClient(ClientBase):
    """The asyncio twin of ``Client``: same arguments, same results, ``await`` each call.

    Chunks of a large batch are sent concurrently and reassembled in order.

    Example::

        async with AsyncClient(urls="127.0.0.1:8001") as triton:
            vectors = await triton.embed(["hello", "world"])
    """

    def __init__(self, config: ClientConfig | None = None, *, urls: str | Sequence[str] | None = None,
                 **options: Any) -> None:
        super().__init__(config, urls, options)
        self._sender: Any = (AsyncGrpcSender(self.config) if self.config.protocol == "grpc"
                             else AsyncHttpSender(self.config))
        self._gates = ([AsyncGate(self.config.adaptive_concurrency_max) for _ in self.config.urls]
                       if self.config.adaptive_concurrency else [])

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray],
                    outputs: Sequence[str] | None = None, *, version: str = "",
                    timeout_s: float | None = None,
                    parameters: Mapping[str, str | int | bool] | None = None) -> dict[str, np.ndarray]:
        """See ``Client.infer``."""
        timeout, deadline = self._deadline(timeout_s)
        info = await self._model_info(model, version, timeout, deadline)
        calls = self._plan(info, version, inputs, outputs, parameters)
        what = f"infer '{model}'"
        try:
            if len(calls) == 1:
                parts = [await self._call(calls[0], what, model, timeout, deadline, infer=True)]
            else:
                parts = await _gather([self._call(c, what, model, timeout, deadline, infer=True)
                                       for c in calls])
        except ClientError as exc:
            if exc.status in (Status.INVALID_ARGUMENT, Status.NOT_FOUND):
                self._forget(model, version)
            raise
        return merge(parts)

    async def embed(self, texts: str | Sequence[str], *, model: str = EMBED_MODEL,
                    timeout_s: float | None = None) -> np.ndarray:
        """See ``Client.embed``."""
        inputs = embed_inputs(texts, model)
        n = len(inputs["TEXT"])
        if n == 0:
            return np.empty((0, EMBED_DIM), dtype=np.float32)
        outputs = await self.infer(model, inputs, ["EMBEDDING"], timeout_s=timeout_s)
        return embed_output(outputs, n, model)

    async def classify_digits(self, images: np.ndarray | Sequence[np.ndarray], *,
                              model: str = CLASSIFY_MODEL,
                              timeout_s: float | None = None) -> DigitPredictions:
        """See ``Client.classify_digits``."""
        inputs = digit_inputs(images)
        n = len(inputs["IMAGE"])
        outputs = await self.infer(model, inputs, ["LABEL", "PROBABILITIES"], timeout_s=timeout_s)
        return digit_outputs(outputs, n, model)

    async def classify_texts(self, texts: str | Sequence[str], *, model: str,
                             timeout_s: float | None = None) -> TextPredictions:
        """See ``Client.classify_texts``."""
        inputs = embed_inputs(texts, model, "classify_texts")
        n = len(inputs["TEXT"])
        if n == 0:
            return TextPredictions([], np.empty((0, 0), dtype=np.float32))
        outputs = await self.infer(model, inputs, ["LABEL", "PROBABILITIES"], timeout_s=timeout_s)
        return text_class_outputs(outputs, n, model)

    async def rerank(self, query: str, texts: Sequence[str], *, model: str,
                     timeout_s: float | None = None) -> np.ndarray:
        """See ``Client.rerank``."""
        inputs = rerank_inputs(query, texts, model)
        n = len(inputs["TEXT"])
        if n == 0:
            return np.empty((0,), dtype=np.float32)
        outputs = await self.infer(model, inputs, ["SCORE"], timeout_s=timeout_s)
        return rerank_output(outputs, n, model)

    async def model_info(self, model: str, *, version: str = "",
                         timeout_s: float | None = None) -> ModelInfo:
        """See ``Client.model_info``."""
        timeout, deadline = self._deadline(timeout_s)
        return await self._model_info(model, version, timeout, deadline)

    async def model_ready(self, model: str, *, version: str = "",
                          timeout_s: float | None = None) -> bool:
        """See ``Client.model_ready``."""
        timeout, deadline = self._deadline(timeout_s)
        return await self._call(self._codec.model_ready(model, version), f"model_ready '{model}'", model,
                                timeout, deadline)

    async def server_ready(self, *, timeout_s: float | None = None) -> bool:
        """See ``Client.server_ready``."""
        timeout, deadline = self._deadline(timeout_s)
        return await self._call(self._codec.server_ready(), "server_ready", None, timeout, deadline)

    async def list_models(self, *, timeout_s: float | None = None) -> list[ModelState]:
        """See ``Client.list_models``."""
        timeout, deadline = self._deadline(timeout_s)
        return await self._call(self._codec.repository_index(), "list_models", None, timeout, deadline)

    async def health(self, *, timeout_s: float = 2.0) -> list[ReplicaHealth]:
        """See ``Client.health``."""
        async def one(index: int, url: str) -> ReplicaHealth:
            try:
                live = await self._sender.send(index, self._codec.server_live(), timeout_s)
                ready = await self._sender.send(index, self._codec.server_ready(), timeout_s)
                return ReplicaHealth(url, live, ready)
            except AttemptFailed as exc:
                return ReplicaHealth(url, False, False, exc.details or str(exc.status))
        return list(await asyncio.gather(*(one(i, u) for i, u in enumerate(self.config.urls))))

    async def close(self) -> None:
        """Close every channel or the HTTP session; in-flight calls are cancelled."""
        self._closed = True
        await self._sender.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _model_info(self, model: str, version: str, timeout: float, deadline: float) -> ModelInfo:
        info = self._info.get((model, version))
        if info is None:
            info = await self._call(self._codec.model_info(model, version), f"model '{model}'", model, timeout,
                                    deadline)
            self._info[(model, version)] = info
        return info

    async def _call(self, call: Any, what: str, model: str | None, timeout: float, deadline: float,
                    infer: bool = False) -> Any:
        attempts = Attempts(self.config, self._endpoints, deadline, timeout, what, model)
        while True:
            index, remaining = attempts.next()
            gate = self._gates[index] if infer and self._gates else None
            if gate is not None and not await gate.enter(deadline):
                raise limit_wait_expired(what, self.config.urls[index], gate.limit.limit, timeout, model,
                                         attempts.count)
            try:
                result = await self._sender.send(index, call, max(deadline - time.monotonic(), 0.001) if gate
                                                 else remaining)
            except AttemptFailed as exc:
                if gate is not None:
                    await gate.leave(overloaded=exc.status in SHED_STATUSES or None)
                delay = attempts.failed(index, exc)
                if delay:
                    await asyncio.sleep(delay)
                continue
            except BaseException:  # cancelled (a sibling chunk failed), or a bug: free the slot
                if gate is not None:
                    await gate.leave(overloaded=None)
                raise
            if gate is not None:
                await gate.leave(overloaded=False)
            attempts.succeeded(index)
            return result


async def _gather(coroutines: list[Any]) -> list[Any]:
    """Like asyncio.gather, but the first failure cancels the other chunks."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
