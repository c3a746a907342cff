"""Refusals as HTTP answers: one exception, :class:`ApiError`, and its two JSON dialects.

Every failure a route meets becomes an ``ApiError`` with an HTTP status; the app renders it as
OpenAI's error object under ``/v1/`` and as TEI's elsewhere. No traceback reaches a caller.

    ClientError.status                 HTTP   OpenAI type / code           TEI error_type
    INVALID_ARGUMENT (over a limit)    413    invalid_request_error        Validation
    INVALID_ARGUMENT (other)           422    invalid_request_error        Validation
    MESSAGE_TOO_LARGE                  413    invalid_request_error        Validation
    NOT_FOUND                          404    invalid_request_error /      Validation
                                              model_not_found
    OVERLOADED, RESOURCE_EXHAUSTED     429    server_error / overloaded    Overloaded   (+ Retry-After)
    UNAVAILABLE                        503    server_error / unavailable   Unhealthy    (+ Retry-After)
    DEADLINE_EXCEEDED                  504    server_error / timeout       Backend      (names --timeout)
    PERMISSION_DENIED, UNAUTHENTICATED 502    server_error                 Backend      (the front's own
                                                                                         credentials to Triton)
    INTERNAL and the rest              500    server_error                 Backend
    (a NaN or infinite answer          500    server_error / internal      Backend: backend.finite)
"""

from __future__ import annotations

import dataclasses
import math

from tritonstack.client import ClientError, Status

# Triton's refusals of a text over its model's limits (serving/text.py, serving/requests.py).
_OVER_LIMIT = ("over the limit", "too long", "longer than")


@dataclasses.dataclass
class ApiError(Exception):
    """A refused request: ``status`` is the HTTP status, ``message`` one line for the caller."""

    status: int
    message: str
    kind: str = "invalid_request_error"   # OpenAI's ``type``
    code: str | None = None               # OpenAI's ``code``
    param: str | None = None              # OpenAI's ``param``: the request field at fault
    retry_after_s: float | None = None    # sent as Retry-After (whole seconds, at least 1)

    def __str__(self) -> str:
        return self.message

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}

    def openai(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def tei(self) -> dict[str, object]:
        return {"error": self.message, "error_type": tei_type(self.status)}


def tei_type(status: int) -> str:
    """TEI's ``error_type`` for an HTTP status (text-embeddings-inference's ErrorType)."""
    if status == 429:
        return "Overloaded"
    if status == 503:
        return "Unhealthy"
    if status in (400, 404, 413, 422):
        return "Validation"
    if status == 401:
        return "Unauthorized"
    return "Backend"


def invalid(message: str, *, param: str | None = None, status: int = 422, code: str | None = None) -> ApiError:
    """The caller's request is wrong (bad JSON, a missing field, a wrong type)."""
    return ApiError(status, message, code=code, param=param)


def too_large(message: str, *, param: str | None = None) -> ApiError:
    """The request is over one of the front's or the model's limits."""
    return ApiError(413, message, code="too_large", param=param)


def from_client_error(exc: ClientError, *, retry_after_s: float, param: str | None = "input",
                      timeout_s: float | None = None) -> ApiError:
    """The HTTP answer for a failed call to Triton (the table above); ``timeout_s`` is the
    deadline of one call, named in a 504's message."""
    status = exc.status
    text = exc.server_message or exc.message  # Triton's own words; the caller needs no replica address
    if status is Status.INVALID_ARGUMENT:
        over = any(marker in (exc.server_message or text) for marker in _OVER_LIMIT)
        return ApiError(413 if over else 422, text, code="too_large" if over else "invalid_input", param=param)
    if status is Status.MESSAGE_TOO_LARGE:
        return ApiError(413, text, code="too_large", param=param)
    if status is Status.NOT_FOUND:
        return ApiError(404, text, code="model_not_found", param="model")
    if status in (Status.OVERLOADED, Status.RESOURCE_EXHAUSTED):
        return ApiError(429, f"overloaded, retry later: {text}", kind="server_error", code="overloaded",
                        retry_after_s=retry_after_s)
    if status is Status.UNAVAILABLE:
        return ApiError(503, f"the model server is unavailable: {text}", kind="server_error", code="unavailable",
                        retry_after_s=retry_after_s)
    if status is Status.DEADLINE_EXCEEDED:
        # gRPC's own words ("Deadline Exceeded") tell the caller nothing; the front's deadline does.
        within = f" within the {timeout_s:g} s deadline" if timeout_s is not None else " in time"
        return ApiError(504, f"the model server did not answer{within} (the front's --timeout)",
                        kind="server_error", code="timeout")
    if status in (Status.PERMISSION_DENIED, Status.UNAUTHENTICATED):
        return ApiError(502, f"the front's credentials to the model server were refused: {text}",
                        kind="server_error", code="upstream_auth")
    return ApiError(500, text, kind="server_error", code=status.value)
