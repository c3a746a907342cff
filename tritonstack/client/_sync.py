"""The blocking client: one long-lived gRPC channel (or HTTP connection pool) per replica, safe
to share between threads."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tritonstack.client._base import ClientBase, ReplicaHealth
from tritonstack.client._config import ClientConfig
from tritonstack.client._errors import (
    SHED_STATUSES,
    AttemptFailed,
    ClientError,
    Status,
    failure,
    limit_wait_expired,
)
from tritonstack.client._grpc import GrpcSender
from tritonstack.client._http import HttpSender
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
from tritonstack.client._tensors import ModelInfo, ModelState, merge

#: Config parameter a reload changes so that Triton builds new instances (the launcher uses the same).
RELOAD_PARAMETER = "triton_stack_reloaded_at"


class Client(ClientBase):
    """A Triton client for backend services, over gRPC or HTTP (``protocol``).

    Args:
        config: a ClientConfig (default: ``ClientConfig()``, Triton's gRPC on 127.0.0.1:8001).
        urls: replica address(es), overriding ``config.urls``.
        **options: any other ClientConfig field, overriding ``config``.

    Example::

        with Client(urls=["10.0.0.5:8001", "10.0.0.6:8001"], timeout_s=2.0) as triton:
            vectors = triton.embed(["hello", "world"])            # float32 [2, 384]
            labels, probs = triton.classify_digits(images)         # int64 [n], float32 [n, 10]
        with Client(urls="https://example--triton-serving-stack-serve.modal.run", protocol="http") as triton:
            vectors = triton.embed(["hello"])                      # Triton's HTTP / KServe v2
    """

    def __init__(self, config: ClientConfig | None = None, *, urls: str | Sequence[str] | None = None,
                 **options: Any) -> None:
        super().__init__(config, urls, options)
        self._sender: Any = GrpcSender(self.config) if self.config.protocol == "grpc" else HttpSender(self.config)
        self._gates = ([Gate(self.config.adaptive_concurrency_max) for _ in self.config.urls]
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
        calls = self._plan(info, version, inputs, outputs, parameters)
        try:
            parts = [self._call(call, f"infer '{model}'", model, timeout, deadline, infer=True)
                     for call in calls]
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
        return self._call(self._codec.model_ready(model, version), f"model_ready '{model}'", model, timeout,
                          deadline)

    def server_ready(self, *, timeout_s: float | None = None) -> bool:
        """Whether a replica reports itself ready for inference."""
        timeout, deadline = self._deadline(timeout_s)
        return self._call(self._codec.server_ready(), "server_ready", None, timeout, deadline)

    def list_models(self, *, timeout_s: float | None = None) -> list[ModelState]:
        """Every model in the repository with its state (READY, UNAVAILABLE, ...)."""
        timeout, deadline = self._deadline(timeout_s)
        return self._call(self._codec.repository_index(), "list_models", None, timeout, deadline)

    # -- model management (explicit model control; every replica) ---------------------------
    def load_model(self, model: str, *, timeout_s: float | None = None) -> list[str]:
        """Load ``model`` (or its new versions) on every replica; returns the replicas done.

        Triton needs ``--model-control explicit`` (the launcher's default); on a restricted
        server set the access token. A failed load leaves the versions already served as they were.
        """
        call = self._codec.load(model)
        return self._on_every_replica(lambda index, timeout: self._sender.send(index, call, timeout),
                                      f"load '{model}'", model, timeout_s)

    def unload_model(self, model: str, *, unload_dependents: bool = False,
                     timeout_s: float | None = None) -> list[str]:
        """Unload ``model`` on every replica (and the ensembles over it with ``unload_dependents``)."""
        call = self._codec.unload(model, unload_dependents)
        return self._on_every_replica(lambda index, timeout: self._sender.send(index, call, timeout),
                                      f"unload '{model}'", model, timeout_s)

    def reload_model(self, model: str, *, timeout_s: float | None = None) -> list[str]:
        """Build new instances of ``model`` on every replica, switching traffic once they are ready.

        A plain load of an unchanged model does nothing in Triton; this loads it with its own
        configuration plus one changed parameter (``RELOAD_PARAMETER``), which the models ignore.
        """
        def reload(index: int, timeout: float) -> None:
            config = self._sender.send(index, self._codec.model_config(model), timeout)
            self._sender.send(index, self._codec.load(model, reload_config(config)), timeout)

        return self._on_every_replica(reload, f"reload '{model}'", model, timeout_s)

    def _on_every_replica(self, call: Callable[[int, float], object], what: str, model: str,
                          timeout_s: float | None) -> list[str]:
        """``call(replica index, timeout)`` on each replica in turn (no retries: management is not
        idempotent across replicas); the first failure is raised, naming its replica."""
        done = []
        for index, url in enumerate(self.config.urls):
            timeout, _ = self._deadline(timeout_s)
            try:
                call(index, timeout)
            except AttemptFailed as exc:
                raise failure(exc.status, exc.details, what=what, url=url, model=model, attempts=1,
                              timeout_s=timeout) from None
            done.append(url)
        self._forget(model, "")
        return done

    def health(self, *, timeout_s: float = 2.0) -> list[ReplicaHealth]:
        """Liveness and readiness of every replica, each asked directly (no retries)."""
        result = []
        for index, url in enumerate(self.config.urls):
            try:
                live = self._sender.send(index, self._codec.server_live(), timeout_s)
                ready = self._sender.send(index, self._codec.server_ready(), timeout_s)
                result.append(ReplicaHealth(url, live, ready))
            except AttemptFailed as exc:
                result.append(ReplicaHealth(url, False, False, exc.details or str(exc.status)))
        return result

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Close every channel or connection pool; in-flight gRPC calls are cancelled."""
        self._closed = True
        self._sender.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------
    def _model_info(self, model: str, version: str, timeout: float, deadline: float) -> ModelInfo:
        info = self._info.get((model, version))
        if info is None:
            info = self._call(self._codec.model_info(model, version), f"model '{model}'", model, timeout, deadline)
            self._info[(model, version)] = info
        return info

    def _call(self, call: Any, what: str, model: str | None, timeout: float, deadline: float,
              infer: bool = False) -> Any:
        """Send ``call`` (a codec's) to the replicas in turn until one answers, as _retry.py says."""
        attempts = Attempts(self.config, self._endpoints, deadline, timeout, what, model)
        while True:
            index, remaining = attempts.next()
            gate = self._gates[index] if infer and self._gates else None
            if gate is not None and not gate.enter(deadline):
                raise limit_wait_expired(what, self.config.urls[index], gate.limit.limit, timeout, model,
                                         attempts.count)
            try:
                result = self._sender.send(index, call, max(deadline - time.monotonic(), 0.001) if gate
                                           else remaining)
            except AttemptFailed as exc:
                if gate is not None:
                    gate.leave(overloaded=exc.status in SHED_STATUSES or None)
                delay = attempts.failed(index, exc)
                if delay:
                    time.sleep(delay)
                continue
            except BaseException:
                if gate is not None:
                    gate.leave(overloaded=None)
                raise
            if gate is not None:
                gate.leave(overloaded=False)
            attempts.succeeded(index)
            return result


def reload_config(config: dict[str, Any]) -> str:
    """The model's configuration (JSON, as Triton serves it) with ``RELOAD_PARAMETER`` changed:
    what a load needs to build new instances of an unchanged model."""
    config.setdefault("parameters", {})[RELOAD_PARAMETER] = {"string_value": f"{time.time():.6f}"}
    return json.dumps(config)
