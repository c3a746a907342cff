"""The one error type the client raises, and how gRPC, HTTP and Triton failures map onto it.

    ClientError           everything this package raises; ``.status`` says what happened
      .status             a ``Status`` (below); ``.server_message`` is Triton's own text

    Status                    meaning                                        retried?
    INVALID_ARGUMENT          bad request: caught client-side (``.origin ==  never
                              "client"``, nothing was sent) or by Triton
    NOT_FOUND                 unknown model or version                       never
    UNAVAILABLE               no replica reachable / connection lost, or a   yes
                              model whose backend died (INTERNAL "Stub
                              process ... is not healthy"; the launcher
                              reloads it within seconds)
    OVERLOADED                Triton shed the request (UNAVAILABLE "Exceeds  with retry_overloaded
                              maximum queue size" or, queued past the
                              model's queue timeout, "Request timeout expired";
                              or the python-ort runner's "overloaded: more
                              rows queued than the model computes at once")
    RESOURCE_EXHAUSTED        server out of a resource                       with retry_overloaded
    MESSAGE_TOO_LARGE         request or response over max_message_bytes     never
    DEADLINE_EXCEEDED         the call's timeout_s ran out (retries included) never
    PERMISSION_DENIED         restricted protocol: missing/wrong access token never
    UNAUTHENTICATED           TLS / credentials rejected                      never
    INTERNAL                  the model or server failed the request         never
    CANCELLED, UNIMPLEMENTED, UNKNOWN                                        never
    CONFIG                    bad ClientConfig or client usage (the caller's code)

Over HTTP the same statuses come from the status code Triton's HTTP front end (or a proxy
before it) answers with, and the same messages: 400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403
PERMISSION_DENIED (Triton's "This API is restricted"), 404 NOT_FOUND, 408 and 504
DEADLINE_EXCEEDED (a proxy gave up waiting), 413 MESSAGE_TOO_LARGE, 429 RESOURCE_EXHAUSTED, 500
INTERNAL, 501 UNIMPLEMENTED, 502 and 503 UNAVAILABLE (503 "Exceeds maximum queue size":
OVERLOADED); a refused or dropped connection is UNAVAILABLE, a read past the deadline
DEADLINE_EXCEEDED (``classify_http``).
"""

from __future__ import annotations

import enum

import grpc


class Status(str, enum.Enum):  # StrEnum is 3.11+
    """What went wrong, in one word (a superset of the gRPC codes Triton uses)."""

    __str__ = str.__str__  # the value, as StrEnum prints

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    OVERLOADED = "overloaded"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    MESSAGE_TOO_LARGE = "message_too_large"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    PERMISSION_DENIED = "permission_denied"
    UNAUTHENTICATED = "unauthenticated"
    INTERNAL = "internal"
    CANCELLED = "cancelled"
    UNIMPLEMENTED = "unimplemented"
    UNKNOWN = "unknown"
    CONFIG = "config"


class ClientError(Exception):
    """A failed client call.

    Attributes:
        status: what happened (``Status``).
        server_message: Triton's or gRPC's own message, verbatim ("" for client-side errors).
        origin: ``"client"`` when the client refused before sending, else ``"server"``.
        model: the model the call was about, if any.
        url: the replica that gave the final answer, if any.
        attempts: how many RPCs were sent (0 for client-side errors).
    """

    def __init__(self, status: Status, message: str, *, server_message: str = "",
                 origin: str = "server", model: str | None = None, url: str | None = None,
                 attempts: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.server_message = server_message
        self.origin = origin
        self.model = model
        self.url = url
        self.attempts = attempts

    @property
    def shed(self) -> bool:
        """True when the server refused the request for load (queue full / exhausted)."""
        return self.status in SHED_STATUSES

    def __str__(self) -> str:
        return f"[{self.status}] {self.message}"

    def __repr__(self) -> str:
        return f"ClientError(status={self.status.name}, message={self.message!r})"


def invalid(message: str, model: str | None = None) -> ClientError:
    """A request refused on the client side (nothing was sent)."""
    return ClientError(Status.INVALID_ARGUMENT, message, origin="client", model=model)


def config_error(message: str) -> ClientError:
    return ClientError(Status.CONFIG, message, origin="client")


_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: Status.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE: Status.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION: Status.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: Status.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: Status.INVALID_ARGUMENT,
    grpc.StatusCode.UNAVAILABLE: Status.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Status.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED: Status.DEADLINE_EXCEEDED,
    grpc.StatusCode.PERMISSION_DENIED: Status.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED: Status.UNAUTHENTICATED,
    grpc.StatusCode.INTERNAL: Status.INTERNAL,
    grpc.StatusCode.DATA_LOSS: Status.INTERNAL,
    grpc.StatusCode.CANCELLED: Status.CANCELLED,
    grpc.StatusCode.ABORTED: Status.CANCELLED,
    grpc.StatusCode.UNIMPLEMENTED: Status.UNIMPLEMENTED,
    grpc.StatusCode.UNKNOWN: Status.UNKNOWN,
}

_HINTS = {
    Status.UNAVAILABLE: "is Triton running there? (python -m tritonstack.server serve)",
    Status.OVERLOADED: ("the server shed the request (queue full, queued past its timeout, or more "
                        "queued than the model computes at once): "
                        "slow down, add replicas, or set retry_overloaded"),
    Status.MESSAGE_TOO_LARGE: "raise max_message_bytes (client and server) or send smaller batches",
    Status.PERMISSION_DENIED: "set the access token (TRITON_ACCESS_TOKEN / ClientConfig.access_token)",
    Status.NOT_FOUND: "list the served models with `python -m tritonstack.client models`",
}


# Statuses meaning the server refused the request for load (retried only with retry_overloaded).
SHED_STATUSES = frozenset({Status.OVERLOADED, Status.RESOURCE_EXHAUSTED})
# Triton's messages for a request its queue policy rejected (``default_queue_policy``), and the
# python-ort runner's when more rows queued than one execution computes (``admit_rows``,
# ``admit_ms``; the same text as tritonstack.serving.admission.SHED_MESSAGE, which this layer may
# not import).
SHED_MESSAGES = ("Exceeds maximum queue size", "Request timeout expired",
                 "overloaded: more rows queued than the model computes at once")


def is_shed(details: str) -> bool:
    """Whether the server's error text says the request was shed for load (a queue policy, or
    the runner's admission limit), not failed."""
    return any(marker in details for marker in SHED_MESSAGES)


class AttemptFailed(Exception):
    """One attempt's failure as a transport reports it, before the retry policy decides what
    becomes of it (internal: callers see the ``ClientError`` it turns into)."""

    def __init__(self, status: Status, details: str) -> None:
        super().__init__(details)
        self.status = status
        self.details = details


def limit_wait_expired(what: str, url: str, limit: float, timeout_s: float, model: str | None,
                       attempts: int) -> ClientError:
    """The deadline passed while the call waited for room under the client's adaptive limit."""
    return ClientError(Status.DEADLINE_EXCEEDED,
                       f"{what}: no room within the {timeout_s:g} s deadline under the client's adaptive "
                       f"limit of {limit:.1f} requests in flight to {url} (the server has been refusing "
                       "work; add capacity or lower the load)", model=model, attempts=attempts)


# Triton's message for a request that reached a Python-backend instance whose stub died.
DEAD_BACKEND_MESSAGE = "is not healthy"


_BY_HTTP = {
    400: Status.INVALID_ARGUMENT, 401: Status.UNAUTHENTICATED, 403: Status.PERMISSION_DENIED,
    404: Status.NOT_FOUND, 408: Status.DEADLINE_EXCEEDED, 409: Status.INVALID_ARGUMENT,
    413: Status.MESSAGE_TOO_LARGE, 429: Status.RESOURCE_EXHAUSTED, 499: Status.CANCELLED,
    500: Status.INTERNAL, 501: Status.UNIMPLEMENTED, 502: Status.UNAVAILABLE,
    503: Status.UNAVAILABLE, 504: Status.DEADLINE_EXCEEDED,
}


def classify(code: grpc.StatusCode | None, details: str) -> Status:
    """Our Status for a gRPC code and Triton's message (pure; the mapping table above)."""
    status = _BY_CODE.get(code, Status.UNKNOWN) if code is not None else Status.UNKNOWN
    if status is Status.UNAVAILABLE and "protocol is restricted" in details:
        return Status.PERMISSION_DENIED
    if status is Status.RESOURCE_EXHAUSTED and "larger than max" in details:
        return Status.MESSAGE_TOO_LARGE
    return _refine(status, details)


def classify_http(code: int, details: str) -> Status:
    """Our Status for an HTTP status code and Triton's (or a proxy's) message (pure)."""
    status = _BY_HTTP.get(code)
    if status is None:
        status = (Status.INVALID_ARGUMENT if 400 <= code < 500 else
                  Status.INTERNAL if 500 <= code < 600 else Status.UNKNOWN)
    return _refine(status, details)


def _refine(status: Status, details: str) -> Status:
    """What Triton's message says beyond the code, the same over gRPC and HTTP."""
    if status is Status.INTERNAL and "Stub process" in details and DEAD_BACKEND_MESSAGE in details:
        return Status.UNAVAILABLE  # transient: retry (another replica, or this one once reloaded)
    if status is Status.UNAVAILABLE and is_shed(details):
        return Status.OVERLOADED
    return status


def failure(status: Status, details: str, *, what: str, url: str, model: str | None,
            attempts: int, timeout_s: float | None = None) -> ClientError:
    """The ``ClientError`` of a failed call: what, where, the server's text and a hint."""
    subject = f"{what} on {url}"
    if status is Status.DEADLINE_EXCEEDED and timeout_s is not None:
        text = f"{subject}: no answer within the {timeout_s:g} s deadline"
    else:
        text = f"{subject}: {details or status.value}"
    if attempts > 1:
        text += f" (after {attempts} attempts)"
    hint = _HINTS.get(status)
    if hint:
        text += f"; {hint}"
    return ClientError(status, text, server_message=details, model=model, url=url,
                       attempts=attempts)
