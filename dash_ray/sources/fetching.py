"""One request of a poll, made robust: auth from named secrets, a timeout per request, retries
with exponential back-off and jitter for what may pass (timeouts, connection errors, 5xx,
malformed JSON), `Retry-After` (seconds or an HTTP date) for 429 and 503, and 304 for a
conditional request whose answer did not change. What cannot pass (another 4xx) fails at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from dash_ray.errors import NotFoundError
from dash_ray.sources.polling import Backoff, PollError
from dash_ray.spec.base import SecretRef
from dash_ray.spec.polling import ApiKeyAuth, BasicAuth, BearerAuth

__all__ = ["Fetcher", "Reply", "auth_parts", "retry_after_s"]

_MAX_RETRY_AFTER_S = 86_400.0
_SNIPPET = 200


@dataclass(frozen=True)
class Reply:
    """A request's answer: `body` is the parsed JSON (None for a 304)."""

    status: int
    body: Any
    headers: httpx.Headers
    url: str


def _secret(value: str | SecretRef, secrets: Mapping[str, str]) -> str:
    if isinstance(value, str):
        return value
    if value.secret not in secrets:
        raise NotFoundError(f"no secret named {value.secret!r} (the source's auth refers to it)")
    return secrets[value.secret]


def auth_parts(auth: BearerAuth | BasicAuth | ApiKeyAuth | None,
               secrets: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str], httpx.Auth | None]:
    """The headers, query parameters and httpx auth that `auth` adds to every request;
    NotFoundError when a secret it refers to was not given."""
    if isinstance(auth, BearerAuth):
        return {"Authorization": f"Bearer {_secret(auth.token, secrets)}"}, {}, None
    if isinstance(auth, BasicAuth):
        return {}, {}, httpx.BasicAuth(_secret(auth.username, secrets), _secret(auth.password, secrets))
    if isinstance(auth, ApiKeyAuth):
        value = _secret(auth.value, secrets)
        return ({auth.name: value}, {}, None) if auth.location == "header" else ({}, {auth.name: value}, None)
    return {}, {}, None


def retry_after_s(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds to wait (delta seconds or an HTTP date; capped at a day), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), _MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - now), _MAX_RETRY_AFTER_S)


def _snippet(response: httpx.Response) -> str:
    text = response.text[:_SNIPPET].strip()
    return f": {text}" if text else ""


class Fetcher:
    """Requests with retries over one httpx client. `deadline` (the event loop's clock) bounds
    a request's retries: a wait that would pass it fails the request instead."""

    def __init__(self, client: httpx.AsyncClient, *, timeout: float, retries: int, backoff: Backoff,
                 auth: httpx.Auth | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, rng: random.Random | None = None) -> None:
        self._client = client
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._auth = auth
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def fetch(self, method: str, url: str, *, params: Mapping[str, Any] | None = None,
                    headers: Mapping[str, str] | None = None, json: Any = None,
                    deadline: float | None = None) -> Reply:
        attempt = 0
        while True:
            try:
                return await self._once(method, url, params, headers, json)
            except _Retryable as exc:
                error = PollError(str(exc), retry_after=exc.retry_after)
            if attempt >= self._retries:
                raise error
            delay = error.retry_after if error.retry_after is not None else self._backoff.delay(attempt, self._rng)
            if deadline is not None and asyncio.get_running_loop().time() + delay > deadline:
                raise error
            attempt += 1
            await self._sleep(delay)

    async def _once(self, method: str, url: str, params: Mapping[str, Any] | None,
                    headers: Mapping[str, str] | None, json: Any) -> Reply:
        auth: Any = self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT
        try:
            response = await self._client.request(method, url, params=params, headers=headers, json=json,
                                                  timeout=self._timeout, auth=auth)
        except httpx.TimeoutException:
            raise _Retryable(f"{method} {url}: no answer within {self._timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise _Retryable(f"{method} {url}: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        where = f"{method} {response.url}"
        if status == 304:
            return Reply(304, None, response.headers, str(response.url))
        if status in (429, 503):
            wait = retry_after_s(response.headers.get("retry-after"), self._clock())
            raise _Retryable(f"{where}: HTTP {status}" + (f", retry after {wait:g} s" if wait is not None else ""),
                             retry_after=wait)
        if status >= 500 or status == 408:
            raise _Retryable(f"{where}: HTTP {status}{_snippet(response)}")
        if status >= 400:
            raise PollError(f"{where}: HTTP {status}{_snippet(response)}")
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise _Retryable(f"{where}: malformed JSON ({exc}){_snippet(response)}") from None
        return Reply(status, body, response.headers, str(response.url))


class _Retryable(Exception):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
