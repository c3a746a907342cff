"""What every Python step's adapter does: validate each request alone, compute all valid ones in one
call. Runs only inside Triton (``triton_python_backend_utils``).

A request whose input is invalid gets its own INVALID_ARGUMENT response; the others in the same
dynamic batch still succeed. Exactly one response per request, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import triton_python_backend_utils as pb_utils

from .errors import InvalidInput
from .metrics import RefusalCounter

T = TypeVar("T")


def invalid(message: str) -> Any:
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


def respond(requests: Sequence[Any], parse: Callable[[Any], T],
            compute: Callable[[list[T]], list[list[Any]]], quality: RefusalCounter | None = None) -> list[Any]:
    """``parse`` each request (may raise InvalidInput); ``compute`` all parsed ones at once.

    ``compute`` returns, per parsed request, the list of ``pb_utils.Tensor`` to answer with.
    Each refusal is counted under its reason in ``quality``.
    """
    responses: list[Any] = [None] * len(requests)
    good: list[tuple[int, T]] = []
    for i, request in enumerate(requests):
        try:
            good.append((i, parse(request)))
        except InvalidInput as exc:
            responses[i] = invalid(str(exc))
            if quality is not None:
                quality.count(exc.reason)
    if good:
        try:
            outputs = compute([parsed for _, parsed in good])
        except InvalidInput as exc:
            outputs = None
            for i, _ in good:
                responses[i] = invalid(str(exc))
        if outputs is not None:
            for (i, _), tensors in zip(good, outputs, strict=True):
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
    return responses


def input_array(request: Any, name: str) -> np.ndarray:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise InvalidInput(f"missing input {name}", "missing")
    return tensor.as_numpy()


def split_rows(array: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    return np.split(array, np.cumsum(sizes)[:-1])
