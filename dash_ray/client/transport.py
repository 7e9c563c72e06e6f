"""How the SDK's calls cross HTTP: `ClientSettings` (timeout and retry bounds), one call with
its bounded retries (`send`), and the translation of an answer into its JSON body or the
`DashError` it stands for.

What is retried: a call that cannot change anything twice (`GET`, `HEAD`, `PUT`, `DELETE`,
and an ingest, which always carries an `Idempotency-Key`) after a connection error, a 429 or a
503, waiting as the answer's `Retry-After` says, else a doubling back-off. A connection that
could not be opened sent nothing, so any call is retried then. Everything else is sent once.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time
from dataclasses import dataclass
from typing import Any, overload

import httpx
import orjson

from dash_ray.errors import (
    AuthError,
    BackpressureError,
    DashError,
    ForbiddenError,
    InternalError,
    NotFoundError,
    PayloadTooLargeError,
    RetryableError,
    UnavailableError,
    error_from_body,
)

__all__ = ["ClientSettings", "clean_token", "json_object", "json_rows", "send"]

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_RETRIED_STATUS = frozenset({429, 503})
# A body that is not Dash's error JSON (a proxy's page, say) still maps to the class its
# status stands for.
_BY_STATUS: dict[int, type[DashError]] = {401: AuthError, 403: ForbiddenError, 404: NotFoundError,
                                          413: PayloadTooLargeError, 429: BackpressureError, 503: UnavailableError}


@dataclass(frozen=True)
class ClientSettings:
    """How a Client talks to Dash: the timeout of one HTTP request, and the bounds of its
    retries: at most `retries` more attempts, the first after `backoff_s` (doubling up to
    `max_backoff_s` unless the server's `Retry-After` says otherwise), and less than
    `retry_budget_s` of waiting in all; past either bound the last error is raised at once (a
    RetryableError still carries the server's `retry_after`; a failed pipeline's 30 s is
    not waited out with the defaults)."""

    timeout: float = 30.0
    retries: int = 4
    backoff_s: float = 0.25
    max_backoff_s: float = 5.0
    retry_budget_s: float = 30.0

    def __post_init__(self) -> None:
        if self.timeout <= 0 or min(self.retries, self.backoff_s, self.max_backoff_s, self.retry_budget_s) < 0:
            raise ValueError("ClientSettings: timeout must be positive; retries, backoff_s, max_backoff_s "
                             "and retry_budget_s zero or more")


@overload
def clean_token(token: str, what: str = ...) -> str: ...
@overload
def clean_token(token: str | None, what: str = ...) -> str | None: ...
def clean_token(token: str | None, what: str = "token") -> str | None:
    """A token or secret as given, without the whitespace around it (a file read whole keeps
    its newline); ValueError for one that is blank or has whitespace or non-ASCII inside."""
    if token is None:
        return None
    cleaned = token.strip()
    if not cleaned:
        raise ValueError(f"the {what} is empty")
    if any(c.isspace() for c in cleaned) or not cleaned.isascii():
        raise ValueError(f"the {what} has whitespace or non-ASCII characters inside; give the {what} alone")
    return cleaned


def json_object(body: Any) -> dict[str, Any]:
    """An answer's JSON body, from a route that answers an object."""
    answer: dict[str, Any] = body
    return answer


def json_rows(body: Any, key: str) -> list[dict[str, Any]]:
    """The list of objects under `key` of an answer's JSON body."""
    rows: list[dict[str, Any]] = body[key]
    return rows


def send(http: httpx.Client, settings: ClientSettings, method: str, path: str, *, retry: bool | None = None,
         sleep: Any = time.sleep, **kwargs: Any) -> Any:
    """Send one call, retrying as the module docstring says (`retry` overrides whether the
    call may be sent again); the answer's JSON body (None for a 204), or raises its error."""
    retry = method in IDEMPOTENT if retry is None else retry
    waited, attempt = 0.0, 0
    while True:
        cause: BaseException | None = None
        delay: float | None = None
        try:
            response = http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            error: DashError = UnavailableError(
                f"cannot reach Dash at {http.base_url}: {type(exc).__name__}: {exc}", retry_after=1.0)
            again = retry or isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            cause = exc
        else:
            if response.status_code not in _RETRIED_STATUS or not retry:
                return answer(response)
            error, again = _error(response), True
            delay = _retry_after(response)
        if delay is None:
            delay = min(settings.backoff_s * 2 ** attempt, settings.max_backoff_s)
        if not again or attempt >= settings.retries or waited + delay >= settings.retry_budget_s:
            raise error from cause
        sleep(delay)
        waited += delay
        attempt += 1


def answer(response: httpx.Response) -> Any:
    """The JSON body of a success (None for a 204), or raise the error a failure stands for."""
    if response.status_code == 204:
        return None
    if response.status_code >= 400:
        raise _error(response)
    return _body(response)


def _body(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return response.text


def _error(response: httpx.Response) -> DashError:
    status = response.status_code
    body = _body(response)
    error = error_from_body(status, body)
    cls = _BY_STATUS.get(status)
    if type(error) is InternalError and cls is not None and not (isinstance(body, dict) and "error" in body):
        message = f"HTTP {status} from {response.request.url}: {str(body)[:200]}"
        error = cls(message, retry_after=1.0) if issubclass(cls, RetryableError) else cls(message)
    return error


def _retry_after(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds (it may be seconds or an HTTP date); None without
    one (then the caller backs off)."""
    header = response.headers.get("retry-after")
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())
