"""JSON responses, the one table from error class to HTTP response, and request ids.

Every DashError carries its status (`errors.py` draws the table); a RetryableError adds
`Retry-After`. Which errors are answered as they are is one predicate (`is_answer`): the
client's to fix (4xx) or to retry (a RetryableError). Anything else is a bug: 500 with its
type, never a stack trace; its log line (with the traceback) and its body carry the same
`request_id`.

Request ids: every request but the ingest routes gets one (`RequestIds`): the client's
`X-Request-Id` when it is 1 to 128 characters of `[A-Za-z0-9._:-]`, else a new one; it is
echoed in the `X-Request-Id` response header, set for the request's log lines
(`dash_ray.process_logging`) with the pipeline its path names, and added to every error body as
`error.request_id`. The ingest routes (the hot path) take one only when they answer 500.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any, TypeGuard

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from dash_ray.errors import (
    DashError,
    InternalError,
    MethodNotAllowedError,
    NotFoundError,
    RetryableError,
)
from dash_ray.process_logging import current_request_id, new_request_id, request_context
from serve_app.requests import pipeline_route

__all__ = ["RequestIds", "error_response", "is_answer", "json_response", "on_error", "on_route_error",
           "request_id_of", "retry_after", "route_error", "unexpected_error"]

log = logging.getLogger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def retry_after(exc: RetryableError) -> str:
    """The Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(exc.retry_after)))


def is_answer(exc: BaseException) -> TypeGuard[DashError]:
    """Whether `exc` is answered as it is: a DashError the client can fix (4xx) or retry (a
    RetryableError: 429, 503). Anything else (a bug, an InternalError, an OperatorError) is
    answered 500 and logged (`unexpected_error`)."""
    return isinstance(exc, DashError) and (exc.status < 500 or isinstance(exc, RetryableError))


def error_response(exc: DashError, *, request_id: str | None = None) -> Response:
    headers = None
    if isinstance(exc, RetryableError):
        headers = {"Retry-After": retry_after(exc)}
    body = exc.to_body()
    if request_id is not None:
        body["error"]["request_id"] = request_id
    return json_response(body, exc.status, headers)


def request_id_of(headers: Any) -> str:
    """The request's id: its valid `X-Request-Id` (any mapping of lower-case names), else new."""
    given = headers.get("x-request-id")
    return given if given and _REQUEST_ID.match(given) else new_request_id()


def _pipeline_of(path: str) -> str | None:
    """The pipeline a path names, for the request's log lines (the id bounded: not yet checked)."""
    named = pipeline_route(path)
    return None if named is None else named[0][:63]


def unexpected_error(exc: BaseException, method: str, path: str, request_id: str) -> DashError:
    """Log an error that is not the client's to fix nor to retry (a bug, an InternalError or
    an OperatorError) with its traceback and the request id; the DashError to answer with."""
    error = exc if isinstance(exc, DashError) else InternalError(f"internal error: {type(exc).__name__}")
    with request_context(request_id, pipeline=_pipeline_of(path)):
        log.error("unhandled error on %s %s: %s: %s", method, path, type(exc).__name__, exc, exc_info=exc)
    return error


async def on_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler for every exception a route lets out."""
    request_id = current_request_id() or request_id_of(request.headers)
    if is_answer(exc):
        return error_response(exc, request_id=request_id)
    return error_response(unexpected_error(exc, request.method, request.url.path, request_id),
                          request_id=request_id)


def route_error(method: str, path: str, status: int, allowed: str | None = None) -> DashError:
    """What answers a request no route took: 405 for a path served with other methods, else 404
    (every route of docs/API.md's contract is served since issue 24, so none is a 501)."""
    shown = f"{method} {path[:200]}"
    if status == 405:
        return MethodNotAllowedError(f"{shown} is not served; {path[:200]} takes {allowed or 'other methods'}",
                                     where=method)
    return NotFoundError(f"no route {shown}; docs/API.md lists the routes served", where=path[:200])


async def on_route_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's handler for the requests no route took (404, 405): the JSON error body
    every other error has."""
    request_id = current_request_id() or request_id_of(request.headers)
    error = route_error(request.method, request.url.path, exc.status_code, (exc.headers or {}).get("Allow"))
    response = error_response(error, request_id=request_id)
    if isinstance(error, MethodNotAllowedError) and exc.headers and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


class RequestIds:
    """ASGI middleware: the request id of each HTTP request (see the module docstring).

    Starlette re-raises a route's exception after its handler answered (so that a server can
    log it); it was logged with its request id already, so here it ends."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = given if given and _REQUEST_ID.match(given) else new_request_id()
        started = False

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            await send(message)

        with request_context(request_id, pipeline=_pipeline_of(scope["path"])):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                if not started:
                    raise
