"""The ASGI app: the two dialects' routes over one :class:`Backend`, bearer-token auth, bodies
read within limits, and every failure answered as its dialect's JSON error.

    from tritonstack.http import Settings, create_app
    app = create_app(Settings(client=ClientConfig(urls=("127.0.0.1:8001",))))   # any ASGI server

Routes under ``/v1/`` speak OpenAI (errors ``{"error": {"message", "type", "param", "code"}}``);
the others speak Hugging Face's text-embeddings-inference (errors ``{"error", "error_type"}``).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tritonstack.client import ClientError
from tritonstack.http.backend import Backend
from tritonstack.http.errors import ApiError, invalid, too_large
from tritonstack.http.settings import Settings

log = logging.getLogger("tritonstack.http")

Handler = Callable[[Request, Backend], Awaitable[Any]]
OPENAI, TEI = "openai", "tei"


def dialect_of(path: str) -> str:
    return OPENAI if path.startswith("/v1/") or path == "/v1" else TEI


def error_response(error: ApiError, dialect: str) -> JSONResponse:
    body = error.openai() if dialect == OPENAI else error.tei()
    headers = error.headers()
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=error.status, headers=headers)


def _authorized(request: Request, token: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def endpoint(handler: Handler, dialect: str, *, auth: bool = True) -> Callable[[Request], Awaitable[Response]]:
    """A route: auth first, then the handler; its result as JSON, any failure as a JSON error."""
    async def run(request: Request) -> Response:
        backend: Backend = request.app.state.backend
        token = backend.settings.token
        try:
            if auth and token is not None and not _authorized(request, token):
                raise ApiError(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                               code="invalid_api_key")
            result = await handler(request, backend)
            # Rendered here, so that a value JSON cannot hold is answered as the dialect's 500 too.
            return result if isinstance(result, Response) else JSONResponse(result)
        except ApiError as exc:
            return error_response(exc, dialect)
        except ClientError as exc:  # a call a handler did not map itself
            return error_response(backend.failed(exc), dialect)
        except Exception:  # a bug: the caller gets one JSON line, the log the traceback
            log.exception("internal error on %s %s", request.method, request.url.path)
            return error_response(ApiError(500, "internal error in the HTTP front (see its log)",
                                           kind="server_error", code="internal"), dialect)
    return run


async def read_json(request: Request, settings: Settings) -> Any:
    """The request body as JSON, refused (413/422) when too large, not UTF-8 or not JSON."""
    length = request.headers.get("content-length")
    limit = settings.max_body_bytes
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(f"the body has {int(length):,} bytes, over the limit of {limit:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(f"the body is over the limit of {limit:,} bytes")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"the body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise invalid(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def text_list(value: Any, field: str, settings: Settings) -> tuple[list[str], bool]:
    """A field holding one string or a list of strings: (the texts, whether it was one string)."""
    if isinstance(value, str):
        texts, single = [value], True
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        texts, single = value, False
    elif value is None:
        raise invalid(f"'{field}' is required: a string or a list of strings", param=field)
    else:
        raise invalid(f"'{field}' must be a string or a list of strings", param=field)
    if not texts:
        raise invalid(f"'{field}' is empty: send at least one text", param=field)
    if len(texts) > settings.max_inputs:
        raise too_large(f"'{field}' holds {len(texts)} texts, over the limit of {settings.max_inputs} a request; "
                        "split it into several requests", param=field)
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(f"{field}[{i}] is not valid Unicode: it holds a lone surrogate (an escape like "
                          "\\ud800 with no pair); send UTF-8 text", param=field, code="invalid_utf8") from None
    return texts, single


def boolean(body: dict[str, Any], field: str, default: bool) -> bool:
    value = body.get(field, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"'{field}' must be true or false", param=field)
    return value


def check_lengths(backend: Backend, model: str, texts: list[str], field: str) -> list[int] | None:
    """Token counts per text with the pipeline's tokenizer, refusing (413) a text the model
    would cut; None when the tokenizer is unknown (no ``--model-repository``)."""
    counter = backend.counter(model)
    if counter is None:
        return None
    counts = counter.count(texts)
    for i, n in enumerate(counts):
        if n > counter.max_length:
            raise too_large(f"{field}[{i}] has {n} tokens, over the {counter.max_length} pipeline '{model}' reads; "
                            "shorten it" + (" or send truncate=true" if field == "inputs" else ""), param=field)
    return counts


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None)
    return error_response(error, dialect_of(request.url.path))


def create_app(settings: Settings) -> Starlette:
    """The front as an ASGI app; Triton is first called on the first request."""
    from tritonstack.http import openai_routes, tei_routes

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.backend = Backend(settings)
        try:
            yield
        finally:
            await app.state.backend.close()

    routes = [Route(path, endpoint(handler, dialect, auth=auth), methods=[method])
              for dialect, module in ((OPENAI, openai_routes), (TEI, tei_routes))
              for path, method, handler, auth in module.ROUTES]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
