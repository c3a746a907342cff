"""gRPC: every call the clients make as one of Triton's protobuf requests (``GrpcCodec``, pure,
shared by both clients), and the senders that put a call on a replica's channel and turn a
``grpc.RpcError`` into an ``AttemptFailed`` (``GrpcSender``, blocking; ``AsyncGrpcSender``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tritonstack.client._config import ClientConfig
from tritonstack.client._errors import AttemptFailed, classify
from tritonstack.client._tensors import ModelState, build_request, model_info, parse_response


class GrpcCall(NamedTuple):
    """One call: the service's method, its request, and what becomes of the response."""

    method: str
    request: Any
    read: Callable[[Any], Any]


def _ready(response: Any) -> bool:
    return bool(response.ready)


def _live(response: Any) -> bool:
    return bool(response.live)


def _nothing(response: Any) -> None:
    return None


def _states(response: service_pb2.RepositoryIndexResponse) -> list[ModelState]:
    return [ModelState(m.name, m.version, m.state, m.reason) for m in response.models]


def _config_json(response: service_pb2.ModelConfigResponse) -> dict[str, Any]:
    from google.protobuf import json_format

    return json.loads(json_format.MessageToJson(response.config, preserving_proto_field_name=True))


class GrpcCodec:
    """The clients' calls as GRPCInferenceService requests (pure)."""

    def infer(self, model: str, version: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None,
              parameters: Mapping[str, str | int | bool] | None) -> GrpcCall:
        return GrpcCall("ModelInfer", build_request(model, version, inputs, outputs, parameters), parse_response)

    def model_info(self, model: str, version: str) -> GrpcCall:
        return GrpcCall("ModelConfig", service_pb2.ModelConfigRequest(name=model, version=version),
                        lambda response: model_info(response.config, version))

    def model_config(self, model: str) -> GrpcCall:
        """The model's configuration as JSON (proto field names), as Triton serves it."""
        return GrpcCall("ModelConfig", service_pb2.ModelConfigRequest(name=model), _config_json)

    def model_ready(self, model: str, version: str) -> GrpcCall:
        return GrpcCall("ModelReady", service_pb2.ModelReadyRequest(name=model, version=version), _ready)

    def server_ready(self) -> GrpcCall:
        return GrpcCall("ServerReady", service_pb2.ServerReadyRequest(), _ready)

    def server_live(self) -> GrpcCall:
        return GrpcCall("ServerLive", service_pb2.ServerLiveRequest(), _live)

    def repository_index(self) -> GrpcCall:
        return GrpcCall("RepositoryIndex", service_pb2.RepositoryIndexRequest(), _states)

    def load(self, model: str, config: str | None = None) -> GrpcCall:
        """Load ``model``; ``config``, a JSON model configuration, overrides its config.pbtxt."""
        request = service_pb2.RepositoryModelLoadRequest(model_name=model)
        if config is not None:
            request.parameters["config"].string_param = config
        return GrpcCall("RepositoryModelLoad", request, _nothing)

    def unload(self, model: str, unload_dependents: bool = False) -> GrpcCall:
        request = service_pb2.RepositoryModelUnloadRequest(model_name=model)
        if unload_dependents:
            request.parameters["unload_dependents"].bool_param = True
        return GrpcCall("RepositoryModelUnload", request, _nothing)


def attempt_failed(exc: grpc.RpcError) -> AttemptFailed:
    """A ``grpc.RpcError`` (sync or aio) as the status and text the retry policy reads."""
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    return AttemptFailed(classify(code, details), details)


def _credentials(config: ClientConfig) -> grpc.ChannelCredentials | None:
    if config.tls is None:
        return None
    root, key, chain = config.tls.read()
    return grpc.ssl_channel_credentials(root, key, chain)


class GrpcSender:
    """One long-lived channel per replica; safe to share between threads."""

    def __init__(self, config: ClientConfig) -> None:
        credentials = _credentials(config)
        options = config.channel_options()
        self._channels = [grpc.secure_channel(url, credentials, options) if credentials
                          else grpc.insecure_channel(url, options) for url in config.urls]
        self._stubs = [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in self._channels]
        self._metadata = config.metadata()

    def send(self, index: int, call: GrpcCall, timeout: float) -> Any:
        try:
            response = getattr(self._stubs[index], call.method)(call.request, timeout=timeout,
                                                                metadata=self._metadata)
        except grpc.RpcError as exc:
            raise attempt_failed(exc) from None
        return call.read(response)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


class AsyncGrpcSender:
    """The same over ``grpc.aio`` channels (bound to the event loop they are first used in)."""

    def __init__(self, config: ClientConfig) -> None:
        credentials = _credentials(config)
        options = config.channel_options()
        self._channels = [grpc.aio.secure_channel(url, credentials, options) if credentials
                          else grpc.aio.insecure_channel(url, options) for url in config.urls]
        self._stubs = [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in self._channels]
        self._metadata = config.metadata()

    async def send(self, index: int, call: GrpcCall, timeout: float) -> Any:
        try:
            response = await getattr(self._stubs[index], call.method)(call.request, timeout=timeout,
                                                                      metadata=self._metadata)
        except grpc.RpcError as exc:
            raise attempt_failed(exc) from None
        return call.read(response)

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels))
