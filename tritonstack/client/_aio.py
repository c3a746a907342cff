"""The asyncio client: the sync client's API as coroutines over ``grpc.aio`` channels.

Create it inside the running event loop (its channels bind to that loop) and close it with
``await client.close()`` or ``async with``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import grpc.aio
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tritonstack.client._base import ClientBase, ReplicaHealth, model_states
from tritonstack.client._config import ClientConfig
from tritonstack.client._errors import ClientError, Status, limit_wait_expired, refused_for_load
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
from tritonstack.client._tensors import ModelInfo, ModelState, merge, model_info, parse_response


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
        credentials = self._credentials()
        channel_options = self.config.channel_options()
        self._channels = [
            grpc.aio.secure_channel(url, credentials, channel_options) if credentials
            else grpc.aio.insecure_channel(url, channel_options)
            for url in self.config.urls
        ]
        self._stubs = [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in self._channels]
        self._gates = ([AsyncGate(self.config.adaptive_concurrency_max) for _ in self._channels]
                       if self.config.adaptive_concurrency else [])

    async def infer(self, model: str, inputs: Mapping[str, np.ndarray],
                    outputs: Sequence[str] | None = None, *, version: str = "",
                    timeout_s: float | None = None,
                    parameters: Mapping[str, str | int | bool] | None = None) -> dict[str, np.ndarray]:
        """See ``Client.infer``."""
        timeout, deadline = self._deadline(timeout_s)
        info = await self._model_info(model, version, timeout, deadline)
        requests = self._plan(info, version, inputs, outputs, parameters)
        what = f"infer '{model}'"
        try:
            if len(requests) == 1:
                responses = [await self._call("ModelInfer", requests[0], what, model, timeout, deadline)]
            else:
                responses = await _gather([self._call("ModelInfer", r, what, model, timeout, deadline)
                                           for r in requests])
        except ClientError as exc:
            if exc.status in (Status.INVALID_ARGUMENT, Status.NOT_FOUND):
                self._forget(model, version)
            raise
        return merge([parse_response(r) for r in responses])

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
        request = service_pb2.ModelReadyRequest(name=model, version=version)
        response = await self._call("ModelReady", request, f"model_ready '{model}'", model,
                                    timeout, deadline)
        return response.ready

    async def server_ready(self, *, timeout_s: float | None = None) -> bool:
        """See ``Client.server_ready``."""
        timeout, deadline = self._deadline(timeout_s)
        response = await self._call("ServerReady", service_pb2.ServerReadyRequest(), "server_ready",
                                    None, timeout, deadline)
        return response.ready

    async def list_models(self, *, timeout_s: float | None = None) -> list[ModelState]:
        """See ``Client.list_models``."""
        timeout, deadline = self._deadline(timeout_s)
        response = await self._call("RepositoryIndex", service_pb2.RepositoryIndexRequest(),
                                    "list_models", None, timeout, deadline)
        return model_states(response)

    async def health(self, *, timeout_s: float = 2.0) -> list[ReplicaHealth]:
        """See ``Client.health``."""
        async def one(url: str, stub: Any) -> ReplicaHealth:
            try:
                live = await stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=timeout_s,
                                             metadata=self._metadata)
                ready = await stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=timeout_s,
                                               metadata=self._metadata)
                return ReplicaHealth(url, live.live, ready.ready)
            except grpc.RpcError as exc:
                return ReplicaHealth(url, False, False, exc.details() or str(exc.code()))
        return list(await asyncio.gather(*(one(u, s) for u, s in zip(self.config.urls, self._stubs,
                                                                       strict=True))))

    async def close(self) -> None:
        """Close every channel; in-flight calls are cancelled."""
        self._closed = True
        await asyncio.gather(*(channel.close() for channel in self._channels))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _model_info(self, model: str, version: str, timeout: float, deadline: float) -> ModelInfo:
        info = self._info.get((model, version))
        if info is None:
            request = service_pb2.ModelConfigRequest(name=model, version=version)
            response = await self._call("ModelConfig", request, f"model '{model}'", model, timeout,
                                        deadline)
            info = self._info[(model, version)] = model_info(response.config, version)
        return info

    async def _call(self, method: str, request: Any, what: str, model: str | None, timeout: float,
                    deadline: float) -> Any:
        attempts = Attempts(self.config, self._endpoints, deadline, timeout, what, model)
        while True:
            index, remaining = attempts.next()
            gate = self._gates[index] if self._gates and method == "ModelInfer" else None
            if gate is not None and not await gate.enter(deadline):
                raise limit_wait_expired(what, self.config.urls[index], gate.limit.limit, timeout, model,
                                         attempts.count)
            try:
                response = await getattr(self._stubs[index], method)(
                    request, timeout=max(deadline - time.monotonic(), 0.001) if gate else remaining,
                    metadata=self._metadata)
            except grpc.RpcError as exc:
                if gate is not None:
                    await gate.leave(overloaded=refused_for_load(exc) or None)
                delay = attempts.failed(index, exc)
                if delay:
                    await asyncio.sleep(delay)
                continue
            if gate is not None:
                await gate.leave(overloaded=False)
            attempts.succeeded(index)
            return response


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
