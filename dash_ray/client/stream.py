"""A pipeline's live records over `WS /v1/pipelines/{id}/live`, for the SDK
(`Client.stream`) and `dash-ray tail`: one `LiveStream` is both a sync and an async iterator.

    for record in client.stream("sensors"):            # {"seq", "time", "data"}
        ...
    async for record in client.stream("sensors", after=120):
        ...

The stream remembers the last seq it yielded and, when the connection drops (the server
restarts, the network blips), connects again with `after=<that seq>` after a capped, jittered
back-off: records come in seq order, none missing, none twice. Where the server says records
no longer exist (retention), a `Gap` is yielded when `gaps=True` (else skipped, and kept in
`stream.gaps`). A bad token, a scope that cannot read and an unknown pipeline end the stream
with AuthError, ForbiddenError and NotFoundError; other close codes and errors reconnect.
While the pipeline is not running the server says so (`{"type": "status"}`): `stream.status`
holds what it said (`starting`, `restarting`, `failed`, ...) until records flow again (None).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import orjson

from dash_ray.errors import AuthError, DashError, ForbiddenError, MalformedBodyError, NotFoundError

__all__ = ["Gap", "LiveStream"]

_FATAL: dict[int, type[DashError]] = {4400: MalformedBodyError, 4401: AuthError, 4403: ForbiddenError,
                                      4404: NotFoundError}


@dataclass(frozen=True)
class Gap:
    """Records `first`..`last` (inclusive) no longer exist on the server."""

    first: int
    last: int


@dataclass
class LiveStream:
    """Iterate it (sync or async) to receive records; `after=None` starts at the live tail.
    Iterating again after a `break` resumes after the last record handed over."""

    url: str
    pipeline_id: str
    authorization: str | None = None
    after: int | None = None
    gaps: bool = False
    max_backoff_s: float = 5.0
    open_timeout_s: float = 10.0
    reconnects: int = 0
    status: str | None = None
    seen_gaps: list[Gap] = field(default_factory=list)

    def _address(self) -> str:
        base = self.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        params = {} if self.after is None else {"after": str(self.after)}
        query = f"?{urlencode(params)}" if params else ""
        return f"{base}/v1/pipelines/{self.pipeline_id}/live{query}"

    def _headers(self) -> dict[str, str]:
        return {"authorization": self.authorization} if self.authorization else {}

    def _items(self, text: str | bytes) -> Iterator[dict[str, Any] | Gap]:
        """What one message yields, in order. `after` moves past each record as it is handed
        over, not before (a consumer that stops in the middle of a message and iterates again
        resumes at the next record), and to the message's own seq once all are handed over."""
        message = orjson.loads(text)
        kind = message.get("type")
        if kind == "gap":
            gap = Gap(int(message["from"]), int(message["to"]))
            self.seen_gaps.append(gap)
            self.after = max(self.after or 0, gap.last)
            if self.gaps:
                yield gap
            return
        if kind is not None:
            if kind == "status":
                status = message.get("status")
                self.status = None if status == "running" else status
            return  # a control message: it moves nothing
        self.status = None
        for record in message.get("records", ()):
            if self.after is None or record["seq"] > self.after:
                self.after = record["seq"]
                yield record
        seq = message.get("seq")
        if isinstance(seq, int) and (self.after is None or seq > self.after):
            self.after = seq  # where this client joined, or skipped to

    def _backoff(self, attempt: int) -> float:
        return min(self.max_backoff_s, 0.2 * 2.0 ** min(attempt, 8)) * random.uniform(0.5, 1.0)

    def _ended(self, close: Any, error: Exception | None, attempt: int) -> float:
        """After a connection ends: raise when retrying cannot help (a close code or a 4xx
        answer to the handshake that says so), else the seconds to wait before the next."""
        status = getattr(getattr(error, "response", None), "status_code", 0)
        if 400 <= status < 500 and status != 429:
            cls = {401: AuthError, 403: ForbiddenError, 404: NotFoundError}.get(status, MalformedBodyError)
            raise cls(f"the live route answered HTTP {status}")
        fatal = _FATAL.get(close.code) if close is not None else None
        if fatal is not None:
            raise fatal(close.reason or f"closed with {close.code}")
        self.reconnects += 1
        return self._backoff(attempt)

    # -- sync ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake
        from websockets.sync.client import connect

        attempt = 0
        while True:
            error = None
            try:
                with connect(self._address(), additional_headers=self._headers(),
                             open_timeout=self.open_timeout_s, max_size=None) as ws:
                    for text in ws:
                        attempt = 0
                        yield from self._items(text)
                    close = ws.protocol.close_rcvd
            except ConnectionClosed as exc:
                close = exc.rcvd
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                close, error = None, exc
            time.sleep(self._ended(close, error, attempt))
            attempt += 1

    # -- async -----------------------------------------------------------------------------

    async def __aiter__(self) -> AsyncIterator[Any]:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        attempt = 0
        while True:
            error = None
            try:
                async with connect(self._address(), additional_headers=self._headers(),
                                   open_timeout=self.open_timeout_s, max_size=None) as ws:
                    async for text in ws:
                        attempt = 0
                        for item in self._items(text):
                            yield item
                    close = ws.protocol.close_rcvd
            except ConnectionClosed as exc:
                close = exc.rcvd
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                close, error = None, exc
            await asyncio.sleep(self._ended(close, error, attempt))
            attempt += 1
