"""The blocking client: one long-lived gRPC channel per replica, safe to share between threads."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tritonstack.client._base import ClientBase, ReplicaHealth, model_states
from tritonstack.client._config import ClientConfig
from tritonstack.client._errors import (
    ClientError,
    Status,
    from_rpc_error,
    limit_wait_expired,
    refused_for_load,
)
from tritonstack.client._limit import Gate
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

#: Config parameter a reload changes so that Triton builds new instances (the launcher uses the same).
RELOAD_PARAMETER = "triton_stack_reloaded_at"


class Client(ClientBase):
    """A Triton gRPC client for backend services.

    Args:
        config: a ClientConfig (default: ``ClientConfig()``, Triton on 127.0.0.1:8001).
        urls: replica address(es) ``host:port``, overriding ``config.urls``.
        **options: any other ClientConfig field, overriding ``config``.

    Example::

        with Client(urls=["10.0.0.5:8001", "10.0.0.6:8001"], timeout_s=2.0) as triton:
            vectors = triton.embed(["hello", "world"])            # float32 [2, 384]
            labels, probs = triton.classify_digits(images)         # int64 [n], float32 [n, 10]
    """

    def __init__(self, config: ClientConfig | None = None, *, urls: str | Sequence[str] | None = None,
                 **options: Any) -> None:
        super().__init__(config, urls, options)
        credentials = self._credentials()
        channel_options = self.config.channel_options()
        self._channels = [
            grpc.secure_channel(url, credentials, channel_options) if credentials
            else grpc.insecure_channel(url, channel_options)
            for url in self.config.urls
        ]
        self._stubs = [service_pb2_grpc.GRPCInferenceServiceStub(c) for c in self._channels]
        self._gates = ([Gate(self.config.adaptive_concurrency_max) for _ in self._channels]
                       if self.config.adaptive_concurrency else [])

    # -- inference -------------------------------------------------------------------------
    def infer(self, model: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None,
              *, version: str = "", timeout_s: float | None = None,
              parameters: Mapping[str, str | int | bool] | None = None) -> dict[str, np.ndarray]:
        """Run ``model`` on ``inputs`` (name -> array, batch axis first for batched models).

        Batches larger than the model's max_batch_size are sent in chunks and reassembled in
        order. ``outputs`` limits which outputs come back (default: all). ``parameters`` go as
        Triton request parameters, which reach every step of an ensemble: ``{"rollout_key":
        user_id}`` keeps one user on one arm of a rollout split (``python -m tritonstack.rollout``).

        Returns:
            output name -> numpy array.

        Raises:
            ClientError: with ``status`` INVALID_ARGUMENT (origin "client") for arrays of the
                wrong name, rank, shape or dtype; otherwise as mapped from the server's answer.
        """
        timeout, deadline = self._deadline(timeout_s)
        info = self._model_info(model, version, timeout, deadline)
        requests = self._plan(info, version, inputs, outputs, parameters)
        try:
            parts = [parse_response(self._call("ModelInfer", request, f"infer '{model}'", model,
                                               timeout, deadline))
                     for request in requests]
        except ClientError as exc:
            if exc.status in (Status.INVALID_ARGUMENT, Status.NOT_FOUND):
                self._forget(model, version)  # the model may have been reloaded differently
            raise
        return merge(parts)

    def embed(self, texts: str | Sequence[str], *, model: str = EMBED_MODEL,
              timeout_s: float | None = None) -> np.ndarray:
        """Sentence embeddings, float32 [n, d] (one str counts as one text): from the demo's
        ``embed`` (MiniLM: d = 384, L2-normalized) or a pipeline ``python -m tritonstack.ensembles add`` wrote."""
        inputs = embed_inputs(texts, model)
        n = len(inputs["TEXT"])
        if n == 0:
            return np.empty((0, EMBED_DIM), dtype=np.float32)
        return embed_output(self.infer(model, inputs, ["EMBEDDING"], timeout_s=timeout_s), n, model)

    def classify_digits(self, images: np.ndarray | Sequence[np.ndarray], *,
                        model: str = CLASSIFY_MODEL, timeout_s: float | None = None) -> DigitPredictions:
        """Digit labels and class probabilities for [n, 8, 8] (or one [8, 8]) images, 0..16."""
        inputs = digit_inputs(images)
        n = len(inputs["IMAGE"])
        outputs = self.infer(model, inputs, ["LABEL", "PROBABILITIES"], timeout_s=timeout_s)
        return digit_outputs(outputs, n, model)

    def classify_texts(self, texts: str | Sequence[str], *, model: str,
                       timeout_s: float | None = None) -> TextPredictions:
        """Class names [n] and probabilities float32 [n, k] from a text-classification pipeline
        (``python -m tritonstack.ensembles add NAME --model M`` over a sequence-classification export)."""
        inputs = embed_inputs(texts, model, "classify_texts")
        n = len(inputs["TEXT"])
        if n == 0:
            return TextPredictions([], np.empty((0, 0), dtype=np.float32))
        outputs = self.infer(model, inputs, ["LABEL", "PROBABILITIES"], timeout_s=timeout_s)
        return text_class_outputs(outputs, n, model)

    def rerank(self, query: str, texts: Sequence[str], *, model: str,
               timeout_s: float | None = None) -> np.ndarray:
        """Relevance of each text to ``query`` from a cross-encoder pipeline: float32 [n], in the
        order of ``texts``, higher is more relevant (``np.argsort(-scores)`` ranks them). The
        scores are the model's raw logits, as TEI's ``raw_scores``."""
        inputs = rerank_inputs(query, texts, model)
        n = len(inputs["TEXT"])
        if n == 0:
            return np.empty((0,), dtype=np.float32)
        return rerank_output(self.infer(model, inputs, ["SCORE"], timeout_s=timeout_s), n, model)

    # -- metadata and health ---------------------------------------------------------------
    def model_info(self, model: str, *, version: str = "", timeout_s: float | None = None) -> ModelInfo:
        """The model's inputs, outputs and max_batch_size (fetched once, then cached)."""
        timeout, deadline = self._deadline(timeout_s)
        return self._model_info(model, version, timeout, deadline)

    def model_ready(self, model: str, *, version: str = "", timeout_s: float | None = None) -> bool:
        """Whether a replica reports ``model`` loaded and ready."""
        timeout, deadline = self._deadline(timeout_s)
        request = service_pb2.ModelReadyRequest(name=model, version=version)
        return self._call("ModelReady", request, f"model_ready '{model}'", model, timeout,
                          deadline).ready

    def server_ready(self, *, timeout_s: float | None = None) -> bool:
        """Whether a replica reports itself ready for inference."""
        timeout, deadline = self._deadline(timeout_s)
        return self._call("ServerReady", service_pb2.ServerReadyRequest(), "server_ready", None,
                          timeout, deadline).ready

    def list_models(self, *, timeout_s: float | None = None) -> list[ModelState]:
        """Every model in the repository with its state (READY, UNAVAILABLE, ...)."""
        timeout, deadline = self._deadline(timeout_s)
        response = self._call("RepositoryIndex", service_pb2.RepositoryIndexRequest(),
                              "list_models", None, timeout, deadline)
        return model_states(response)

    # -- model management (explicit model control; every replica) ---------------------------
    def load_model(self, model: str, *, timeout_s: float | None = None) -> list[str]:
        """Load ``model`` (or its new versions) on every replica; returns the replicas done.

        Triton needs ``--model-control explicit`` (the launcher's default); on a restricted
        server set the access token. A failed load leaves the versions already served as they were.
        """
        request = service_pb2.RepositoryModelLoadRequest(model_name=model)
        return self._on_every_replica(
            lambda stub, timeout: stub.RepositoryModelLoad(request, timeout=timeout, metadata=self._metadata),
            f"load '{model}'", model, timeout_s)

    def unload_model(self, model: str, *, unload_dependents: bool = False,
                     timeout_s: float | None = None) -> list[str]:
        """Unload ``model`` on every replica (and the ensembles over it with ``unload_dependents``)."""
        request = service_pb2.RepositoryModelUnloadRequest(model_name=model)
        if unload_dependents:
            request.parameters["unload_dependents"].bool_param = True
        return self._on_every_replica(
            lambda stub, timeout: stub.RepositoryModelUnload(request, timeout=timeout,
                                                             metadata=self._metadata),
            f"unload '{model}'", model, timeout_s)

    def reload_model(self, model: str, *, timeout_s: float | None = None) -> list[str]:
        """Build new instances of ``model`` on every replica, switching traffic once they are ready.

        A plain load of an unchanged model does nothing in Triton; this loads it with its own
        configuration plus one changed parameter (``RELOAD_PARAMETER``), which the models ignore.
        """
        import json

        from google.protobuf import json_format

        def reload(stub: Any, timeout: float) -> None:
            config = stub.ModelConfig(service_pb2.ModelConfigRequest(name=model), timeout=timeout,
                                      metadata=self._metadata).config
            as_json = json.loads(json_format.MessageToJson(config, preserving_proto_field_name=True))
            as_json.setdefault("parameters", {})[RELOAD_PARAMETER] = {"string_value": f"{time.time():.6f}"}
            request = service_pb2.RepositoryModelLoadRequest(model_name=model)
            request.parameters["config"].string_param = json.dumps(as_json)
            stub.RepositoryModelLoad(request, timeout=timeout, metadata=self._metadata)

        return self._on_every_replica(reload, f"reload '{model}'", model, timeout_s)

    def _on_every_replica(self, call: Any, what: str, model: str, timeout_s: float | None) -> list[str]:
        """``call(stub, timeout)`` on each replica in turn (no retries: management is not
        idempotent across replicas); the first failure is raised, naming its replica."""
        done = []
        for stub, url in zip(self._stubs, self.config.urls, strict=True):
            timeout, _ = self._deadline(timeout_s)
            try:
                call(stub, timeout)
            except grpc.RpcError as exc:
                raise from_rpc_error(exc, what=what, url=url, model=model, attempts=1,
                                     timeout_s=timeout) from None
            done.append(url)
        self._forget(model, "")
        return done

    def health(self, *, timeout_s: float = 2.0) -> list[ReplicaHealth]:
        """Liveness and readiness of every replica, each asked directly (no retries)."""
        result = []
        for url, stub in zip(self.config.urls, self._stubs, strict=True):
            try:
                live = stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=timeout_s,
                                       metadata=self._metadata).live
                ready = stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=timeout_s,
                                         metadata=self._metadata).ready
                result.append(ReplicaHealth(url, live, ready))
            except grpc.RpcError as exc:
                result.append(ReplicaHealth(url, False, False, exc.details() or str(exc.code())))
        return result

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Close every channel; in-flight calls are cancelled."""
        self._closed = True
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------
    def _model_info(self, model: str, version: str, timeout: float, deadline: float) -> ModelInfo:
        info = self._info.get((model, version))
        if info is None:
            request = service_pb2.ModelConfigRequest(name=model, version=version)
            response = self._call("ModelConfig", request, f"model '{model}'", model, timeout, deadline)
            info = self._info[(model, version)] = model_info(response.config, version)
        return info

    def _call(self, method: str, request: Any, what: str, model: str | None, timeout: float,
              deadline: float) -> Any:
        attempts = Attempts(self.config, self._endpoints, deadline, timeout, what, model)
        while True:
            index, remaining = attempts.next()
            gate = self._gates[index] if self._gates and method == "ModelInfer" else None
            if gate is not None and not gate.enter(deadline):
                raise limit_wait_expired(what, self.config.urls[index], gate.limit.limit, timeout, model,
                                         attempts.count)
            try:
                response = getattr(self._stubs[index], method)(
                    request, timeout=max(deadline - time.monotonic(), 0.001) if gate else remaining,
                    metadata=self._metadata)
            except grpc.RpcError as exc:
                if gate is not None:
                    gate.leave(overloaded=refused_for_load(exc) or None)
                delay = attempts.failed(index, exc)
                if delay:
                    time.sleep(delay)
                continue
            if gate is not None:
                gate.leave(overloaded=False)
            attempts.succeeded(index)
            return response
