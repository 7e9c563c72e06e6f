"""Signed ingest and webhook routes: `POST /v1/pipelines/{id}/events`, `POST /v1/hooks/{id}`.

They are the hot path, so they are served by a raw ASGI front (`IngestFront`) ahead of
Starlette's routing and middleware, which serve every other route (measured in
`benchmarks/ingest.py`: Starlette's per-request machinery costs more CPU than the check).

A request is answered 202 only once the pipeline has made its records durable. In order:
the pipeline must exist (404) and take this route's kind of source (404 otherwise); the body
is read up to the pipeline's size limit (413); the signature is checked over the raw bytes
(401); the body is decoded (415, 400 naming the line); the batch goes to the pipeline's
actor through the replica's coalescer (429 with Retry-After when its queue is full, 503
while it restarts).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request

from dash_ray.ingest.batch import Ack
from dash_ray.ingest.body import decode_body
from dash_ray.errors import (
    DashError,
    MalformedBodyError,
    NotFoundError,
    PayloadTooLargeError,
    RetryableError,
    SignatureError,
    UnavailableError,
)
from dash_ray.spec import PushSource, WebhookSource
from serve_app.gateway import Gateway
from serve_app.responses import retry_after

__all__ = ["IngestFront", "read_body"]

_IDEMPOTENCY_KEY_MAX = 200


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refusing (413) as soon as it passes `max_bytes`."""
    return await _read(request.headers.get("content-length"), request.receive, max_bytes)


async def _read(length: str | None, receive: Callable[[], Awaitable[dict]], max_bytes: int) -> bytes:
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise PayloadTooLargeError(f"body of {length} bytes is larger than the limit of {max_bytes} bytes")
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise MalformedBodyError("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(f"body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


_EVENTS_PREFIX, _EVENTS_SUFFIX = "/v1/pipelines/", "/events"
_HOOKS_PREFIX = "/v1/hooks/"
_JSON = [(b"content-type", b"application/json")]


class IngestFront:
    """ASGI app: POSTs to the ingest routes are answered here; everything else goes to `app`."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            pipeline_id = None
            webhook = False
            if path.startswith(_EVENTS_PREFIX) and path.endswith(_EVENTS_SUFFIX):
                pipeline_id = path[len(_EVENTS_PREFIX):-len(_EVENTS_SUFFIX)]
            elif path.startswith(_HOOKS_PREFIX):
                pipeline_id, webhook = path[len(_HOOKS_PREFIX):], True
            if pipeline_id and "/" not in pipeline_id:
                status, body, extra = await self.handle(pipeline_id, scope, receive, webhook=webhook)
                await send({"type": "http.response.start", "status": status, "headers": _JSON + extra})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def handle(self, pipeline_id: str, scope: dict, receive: Any, *,
                     webhook: bool) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """One ingest request: (status, JSON body, extra headers)."""
        received_at_us = time.time_ns() // 1000
        try:
            result = await self._ingest(pipeline_id, scope, receive, webhook, received_at_us)
        except DashError as exc:
            result = exc
        if isinstance(result, DashError):
            extra = []
            if isinstance(result, RetryableError):
                extra.append((b"retry-after", retry_after(result).encode()))
            return result.status, orjson.dumps(result.to_body()), extra
        return 202, orjson.dumps(result.to_body()), []

    async def _ingest(self, pipeline_id: str, scope: dict, receive: Any, webhook: bool,
                      received_at_us: int) -> Ack | DashError:
        gateway = self.gateway
        info = await gateway.info(pipeline_id)
        source = info.spec.source
        if webhook and not isinstance(source, WebhookSource):
            raise NotFoundError(f"pipeline {pipeline_id} takes no webhooks", where=pipeline_id)
        if not webhook and not isinstance(source, PushSource):
            raise NotFoundError(f"pipeline {pipeline_id} takes no pushed events; its source is "
                                f"{source.kind}", where=pipeline_id)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limits = info.spec.limits
        body = await _read(headers.get("content-length"), receive, limits.max_body_bytes)
        try:
            info.verifier.verify(headers, body, info.secrets)
        except SignatureError:
            # A secret rotated or a pipeline re-created moments ago: look once more.
            fresh = await gateway.info(pipeline_id, refresh=True)
            if fresh is info:
                raise
            fresh.verifier.verify(headers, body, fresh.secrets)
        if info.status == "failed":
            raise UnavailableError(f"pipeline {pipeline_id} has failed; see its last error", retry_after=30)
        key = headers.get("idempotency-key")
        if key is None and isinstance(source, WebhookSource) and source.idempotency_header:
            key = headers.get(source.idempotency_header.lower())
        if key is not None and (not key or len(key) > _IDEMPOTENCY_KEY_MAX):
            raise MalformedBodyError(f"Idempotency-Key must be 1 to {_IDEMPOTENCY_KEY_MAX} characters",
                                     where="Idempotency-Key")
        batch = decode_body(
            body, content_type=headers.get("content-type"), content_encoding=headers.get("content-encoding"),
            max_bytes=limits.max_body_bytes, received_at_us=received_at_us, idempotency_key=key)
        return await gateway.ingest(pipeline_id, batch, limits.queue_records)
