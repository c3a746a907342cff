"""HTTP: every call the clients make as a request to Triton's HTTP / KServe v2 front end
(``HttpCodec``, pure, shared by both clients), and the senders that put a call on a replica's
connection pool and turn a failure into an ``AttemptFailed`` (``HttpSender``, blocking, over
urllib3; ``AsyncHttpSender`` over aiohttp).

Tensors travel in KServe v2's binary extension, as tritonclient.http sends them: a JSON header
(inputs with ``binary_data_size``, outputs with ``binary_data``), its length in the
``Inference-Header-Content-Length`` header, then each input's raw bytes; the answer comes the
same way. Why not tritonclient.http's own clients: its blocking one is not thread-safe (one per
thread, each on its own gevent hub), it has no per-call deadline (its ``timeout`` is a server-side
queue timeout in microseconds), and its ``http`` extra pins geventhttpclient<=2.0.2, which
Locust's geventhttpclient 2.6 rules out; urllib3 comes with tritonclient already.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

import numpy as np
import urllib3

from tritonstack.client._config import ClientConfig, http_address
from tritonstack.client._errors import AttemptFailed, Status, classify_http, config_error, invalid
from tritonstack.client._tensors import ModelState, decode_tensor, model_info_json, numpy_dtype, tensor_bytes

if TYPE_CHECKING:
    import ssl

INFER_HEADER = "Inference-Header-Content-Length"
#: Connections kept open per replica (more may open under load; those past this are closed after use).
POOL_SIZE = 64
_AIOHTTP_MISSING = ("AsyncClient over HTTP needs aiohttp, which the client extra leaves out: "
                    "pip install 'triton-serving-stack[client-http]' (or pip install aiohttp)")


class HttpCall(NamedTuple):
    """One call: method, path under the replica's base, body and headers, and what becomes of a
    2xx answer (``read(headers, body)``). ``ready``: the status code is the answer (readiness)."""

    method: str
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    read: Callable[[Mapping[str, str], bytes], Any] | None = None
    ready: bool = False


def _path(model: str, version: str = "") -> str:
    path = f"/v2/models/{quote(model, safe='')}"
    return f"{path}/versions/{quote(version, safe='')}" if version else path


def _json(_headers: Mapping[str, str], body: bytes) -> Any:
    return json.loads(body)


def _states(_headers: Mapping[str, str], body: bytes) -> list[ModelState]:
    return [ModelState(m["name"], m.get("version", ""), m.get("state", ""), m.get("reason", ""))
            for m in json.loads(body)]


def parse_infer(headers: Mapping[str, str], body: bytes) -> dict[str, np.ndarray]:
    """The outputs of an inference answer: a JSON header, then the binary outputs in order."""
    length = headers.get(INFER_HEADER)
    size = int(length) if length is not None else len(body)
    header = json.loads(body[:size])
    view, offset, result = memoryview(body), size, {}
    for tensor in header.get("outputs", ()):
        name, datatype, shape = tensor["name"], tensor["datatype"], tensor["shape"]
        binary = (tensor.get("parameters") or {}).get("binary_data_size")
        if binary is None:  # sent as JSON (a server that ignored binary_data)
            result[name] = _from_json(name, datatype, shape, tensor.get("data", []))
            continue
        result[name] = decode_tensor(name, datatype, shape, view[offset:offset + binary])
        offset += binary
    return result


def _from_json(name: str, datatype: str, shape: Sequence[int], data: list[Any]) -> np.ndarray:
    if datatype == "BYTES":
        array = np.empty(len(data), dtype=object)
        array[:] = [x.encode("utf-8") if isinstance(x, str) else x for x in data]
        return array.reshape(tuple(shape))
    dtype = numpy_dtype(datatype)
    if dtype is None:
        raise invalid(f"output '{name}' is {datatype}, which numpy cannot hold")
    return np.asarray(data, dtype=dtype).reshape(tuple(shape))


class HttpCodec:
    """The clients' calls as KServe v2 HTTP requests (pure)."""

    def infer(self, model: str, version: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None,
              parameters: Mapping[str, str | int | bool] | None) -> HttpCall:
        tensors, raw = [], []
        for name, array in inputs.items():
            datatype, data = tensor_bytes(array)
            tensors.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                            "parameters": {"binary_data_size": len(data)}})
            raw.append(data)
        request: dict[str, Any] = {"inputs": tensors}
        extra: dict[str, Any] = dict(parameters or {})
        if outputs:
            request["outputs"] = [{"name": name, "parameters": {"binary_data": True}} for name in outputs]
        else:
            extra["binary_data_output"] = True
        if extra:
            request["parameters"] = extra
        header = json.dumps(request, separators=(",", ":")).encode()
        return HttpCall("POST", _path(model, version) + "/infer", b"".join([header, *raw]),
                        {INFER_HEADER: str(len(header)), "Content-Type": "application/octet-stream"}, parse_infer)

    def model_info(self, model: str, version: str) -> HttpCall:
        return HttpCall("GET", _path(model, version) + "/config",
                        read=lambda _headers, body: model_info_json(json.loads(body), version))

    def model_config(self, model: str) -> HttpCall:
        """The model's configuration as JSON (proto field names), as Triton serves it."""
        return HttpCall("GET", _path(model) + "/config", read=_json)

    def model_ready(self, model: str, version: str) -> HttpCall:
        return HttpCall("GET", _path(model, version) + "/ready", ready=True)

    def server_ready(self) -> HttpCall:
        return HttpCall("GET", "/v2/health/ready", ready=True)

    def server_live(self) -> HttpCall:
        return HttpCall("GET", "/v2/health/live", ready=True)

    def repository_index(self) -> HttpCall:
        return HttpCall("POST", "/v2/repository/index", b"{}", read=_states)

    def load(self, model: str, config: str | None = None) -> HttpCall:
        """Load ``model``; ``config``, a JSON model configuration, overrides its config.pbtxt."""
        body = {"parameters": {"config": config}} if config is not None else {}
        return HttpCall("POST", f"/v2/repository/models/{quote(model, safe='')}/load", json.dumps(body).encode(),
                        read=_nothing)

    def unload(self, model: str, unload_dependents: bool = False) -> HttpCall:
        body = {"parameters": {"unload_dependents": True}} if unload_dependents else {}
        return HttpCall("POST", f"/v2/repository/models/{quote(model, safe='')}/unload", json.dumps(body).encode(),
                        read=_nothing)


def _nothing(_headers: Mapping[str, str], _body: bytes) -> None:
    return None


def error_details(status: int, body: bytes) -> str:
    """Triton's error text (its JSON ``{"error": ...}``), else the start of what a proxy sent."""
    try:
        return str(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError):
        text = " ".join(body[:300].decode("utf-8", "replace").split())
        return f"HTTP {status}" + (f": {text}" if text else "")


def answer(call: HttpCall, status: int, headers: Mapping[str, str], body: bytes) -> Any:
    """The call's result from the HTTP answer, or the AttemptFailed it means."""
    if 200 <= status < 300:
        if call.ready or call.read is None:
            return call.ready or None
        try:
            return call.read(headers, body)
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # e.g. a proxy's page with 200
            raise AttemptFailed(Status.UNKNOWN, f"the answer is not Triton's KServe v2 ({type(exc).__name__}: "
                                f"{exc}); it starts {body[:80]!r}") from None
    if call.ready and 400 <= status < 500 and status not in (401, 403, 408, 429):
        return False  # Triton answers 400 "... not ready"
    details = error_details(status, body)
    raise AttemptFailed(classify_http(status, details), details)


def _too_large(what: str, size: int, limit: int) -> AttemptFailed:
    return AttemptFailed(Status.MESSAGE_TOO_LARGE, f"{what} of {size} bytes is larger than max_message_bytes ({limit})")


class _Replicas:
    """Addresses, TLS and headers of the HTTP replicas (what both senders share)."""

    def __init__(self, config: ClientConfig) -> None:
        self.addresses = [http_address(url, tls=config.tls is not None) for url in config.urls]
        self.context: ssl.SSLContext | None = config.tls.ssl_context() if config.tls is not None else None
        self.server_name = config.tls.server_name if config.tls is not None else None
        self.headers = config.http_headers()
        self.limit = config.max_message_bytes

    def check_request(self, call: HttpCall) -> None:
        if call.body is not None and len(call.body) > self.limit:
            raise _too_large("request", len(call.body), self.limit)

    def check_length(self, headers: Mapping[str, str]) -> None:
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            raise _too_large("response", int(length), self.limit)


def _urllib3_failed(exc: Exception) -> AttemptFailed:
    errors = urllib3.exceptions
    if isinstance(exc, errors.NewConnectionError | errors.ConnectTimeoutError):
        status = Status.UNAVAILABLE  # (NewConnectionError is a ConnectTimeoutError in urllib3 2)
    elif isinstance(exc, errors.ReadTimeoutError | TimeoutError):
        status = Status.DEADLINE_EXCEEDED
    elif isinstance(exc, errors.SSLError):
        status = Status.UNAUTHENTICATED
    else:  # a connection refused, reset or closed mid-answer
        status = Status.UNAVAILABLE
    reason = getattr(exc, "reason", None) or exc
    return AttemptFailed(status, f"{type(reason).__name__}: {reason}")


class HttpSender:
    """A pool of keep-alive connections per replica (urllib3); safe to share between threads."""

    def __init__(self, config: ClientConfig) -> None:
        self._replicas = replicas = _Replicas(config)
        self._pools: list[urllib3.HTTPConnectionPool] = []
        for address in replicas.addresses:
            host = address.host.strip("[]")
            if address.scheme == "https":
                self._pools.append(urllib3.HTTPSConnectionPool(
                    host, address.port, maxsize=POOL_SIZE, block=False, retries=False,
                    ssl_context=replicas.context, server_hostname=replicas.server_name,
                    assert_hostname=replicas.server_name or None))
            else:
                self._pools.append(urllib3.HTTPConnectionPool(host, address.port, maxsize=POOL_SIZE, block=False,
                                                              retries=False))

    def send(self, index: int, call: HttpCall, timeout: float) -> Any:
        replicas = self._replicas
        replicas.check_request(call)
        headers = {**replicas.headers, **call.headers} if call.headers else replicas.headers
        try:
            response = self._pools[index].urlopen(
                call.method, replicas.addresses[index].path + call.path, body=call.body, headers=headers,
                retries=False, redirect=False, timeout=urllib3.Timeout(total=timeout), preload_content=False)
            try:
                replicas.check_length(response.headers)
                body = response.read()
            except AttemptFailed:
                response.close()  # the answer is left unread: its connection cannot be reused
                raise
            finally:
                response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _urllib3_failed(exc) from None
        if len(body) > replicas.limit:
            raise _too_large("response", len(body), replicas.limit)
        return answer(call, response.status, response.headers, body)

    def close(self) -> None:
        for pool in self._pools:
            pool.close()


class AsyncHttpSender:
    """The same over one aiohttp session, opened in the event loop of the first call."""

    def __init__(self, config: ClientConfig) -> None:
        try:
            import aiohttp
        except ImportError:
            raise config_error(_AIOHTTP_MISSING) from None
        self._aiohttp = aiohttp
        # a connection not made within the deadline is a replica down, not an answer too late
        # (aiohttp < 3.10 has no ConnectionTimeoutError)
        connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", aiohttp.ClientConnectorError)
        self._unreachable = (aiohttp.ClientConnectorError, connect_timeout)
        self._replicas = _Replicas(config)
        self._bases = [address.base for address in self._replicas.addresses]
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> Any:
        aiohttp = self._aiohttp
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=POOL_SIZE * 4,
                                         ssl=self._replicas.context if self._replicas.context else True)
        # no Accept-Encoding: the answers come uncompressed, as the Content-Length checks expect
        self._session = aiohttp.ClientSession(connector=connector, headers=self._replicas.headers,
                                              skip_auto_headers=("Accept-Encoding",))
        return self._session

    async def send(self, index: int, call: HttpCall, timeout: float) -> Any:
        aiohttp, replicas = self._aiohttp, self._replicas
        replicas.check_request(call)
        session = self._session or self._open()
        extra = {"server_hostname": replicas.server_name} if replicas.server_name else {}
        try:
            async with session.request(call.method, self._bases[index] + call.path, data=call.body,
                                       headers=call.headers, allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=timeout), **extra) as response:
                replicas.check_length(response.headers)
                body = await response.read()
                status, headers = response.status, response.headers
        except aiohttp.ClientSSLError as exc:
            raise AttemptFailed(Status.UNAUTHENTICATED, f"{type(exc).__name__}: {exc}") from None
        except self._unreachable as exc:
            raise AttemptFailed(Status.UNAVAILABLE, f"{type(exc).__name__}: {exc}") from None
        except asyncio.TimeoutError as exc:  # the deadline passed waiting for the answer (3.10: not TimeoutError)
            raise AttemptFailed(Status.DEADLINE_EXCEEDED, f"{type(exc).__name__}: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:  # a connection reset or closed mid-answer
            raise AttemptFailed(Status.UNAVAILABLE, f"{type(exc).__name__}: {exc}") from None
        if len(body) > replicas.limit:
            raise _too_large("response", len(body), replicas.limit)
        return answer(call, status, headers, body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
