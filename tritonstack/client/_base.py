"""What the sync and asyncio clients share: configuration, the protocol's codec, the model-info
cache and request planning. Only the I/O (blocking call or ``await``) differs between them."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tritonstack.client._config import ClientConfig, config_from
from tritonstack.client._errors import config_error, invalid
from tritonstack.client._grpc import GrpcCodec
from tritonstack.client._http import HttpCodec
from tritonstack.client._retry import Endpoints
from tritonstack.client._tensors import ModelInfo, chunks, validate


@dataclasses.dataclass(frozen=True)
class ReplicaHealth:
    """One replica's answer to the health checks (``error`` says why it did not answer)."""

    url: str
    live: bool
    ready: bool
    error: str | None = None


class ClientBase:
    """Configuration, replica set, codec and cached model metadata of one client."""

    def __init__(self, config: ClientConfig | None, urls: str | Sequence[str] | None,
                 options: Mapping[str, object]) -> None:
        self.config = config_from(config, urls, options)
        self._codec: Any = GrpcCodec() if self.config.protocol == "grpc" else HttpCodec()
        self._endpoints = Endpoints(self.config.urls, self.config.failover_cooldown_s)
        self._info: dict[tuple[str, str], ModelInfo] = {}
        self._closed = False

    @property
    def urls(self) -> tuple[str, ...]:
        """The replicas this client balances over."""
        return self.config.urls

    def _deadline(self, timeout_s: float | None) -> tuple[float, float]:
        if self._closed:
            raise config_error("this client is closed; create a new one")
        timeout = self.config.timeout_s if timeout_s is None else timeout_s
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise config_error(f"timeout_s must be a number > 0 (seconds), got {timeout!r}")
        return timeout, time.monotonic() + timeout

    def _plan(self, info: ModelInfo, version: str, inputs: Mapping[str, np.ndarray],
              outputs: Sequence[str] | None,
              parameters: Mapping[str, str | int | bool] | None = None) -> list[Any]:
        """Validate (unless disabled) and split into calls of at most max_batch_size rows."""
        if not isinstance(inputs, Mapping) or not inputs:
            raise invalid(f"inputs for '{info.name}' must be a non-empty dict name -> numpy array",
                          info.name)
        for name, array in inputs.items():
            if not isinstance(array, np.ndarray):
                raise invalid(f"input '{name}' of '{info.name}' must be a numpy array, got "
                              f"{type(array).__name__}", info.name)
        if isinstance(outputs, str):
            outputs = [outputs]
        if self.config.validate_inputs:
            batch = validate(info, inputs, outputs)
        else:
            batch = next(iter(inputs.values())).shape[0] if info.batched else 0
        if parameters is not None and (not isinstance(parameters, Mapping) or any(
                not isinstance(v, str | int | bool) for v in parameters.values())):
            raise invalid(f"parameters for '{info.name}' must be a dict of str, int or bool values",
                          info.name)
        return [self._codec.infer(info.name, version, part, outputs, parameters)
                for part in chunks(inputs, batch, info.max_batch_size)]

    def _forget(self, model: str, version: str) -> None:
        self._info.pop((model, version), None)
