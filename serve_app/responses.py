"""JSON responses, and the one table from error class to HTTP response.

Every DashError carries its status (`errors.py` draws the table); a RetryableError adds
`Retry-After`. Anything else is a bug: 500 with its type, never a stack trace.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dash_ray.errors import DashError, InternalError, RetryableError

__all__ = ["error_response", "json_response", "on_error", "retry_after"]

log = logging.getLogger(__name__)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def retry_after(exc: RetryableError) -> str:
    """The Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(exc.retry_after)))


def error_response(exc: DashError) -> Response:
    headers = None
    if isinstance(exc, RetryableError):
        headers = {"Retry-After": retry_after(exc)}
    return json_response(exc.to_body(), exc.status, headers)


async def on_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler for every exception a route lets out."""
    if isinstance(exc, DashError):
        return error_response(exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(InternalError(f"internal error: {type(exc).__name__}"))
