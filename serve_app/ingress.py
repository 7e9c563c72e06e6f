"""Signed ingest and webhook routes: `POST /v1/pipelines/{id}/events`, `POST /v1/hooks/{id}`.

A request is answered 202 only once the pipeline has made its records durable. In order:
the pipeline must exist (404) and take this route's kind of source (404 otherwise); the body
is read up to the pipeline's size limit (413); the signature is checked over the raw bytes
(401); the body is decoded (415, 400 naming the line); the batch goes to the pipeline's
actor through the replica's coalescer (429 with Retry-After when its queue is full, 503
while it restarts).
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.body import decode_body
from dash_ray.errors import DashError, MalformedBodyError, NotFoundError, PayloadTooLargeError, SignatureError, UnavailableError
from dash_ray.spec import PushSource, WebhookSource
from serve_app.gateway import Gateway
from serve_app.responses import error_response, json_response

__all__ = ["ingest_routes", "read_body"]

_IDEMPOTENCY_KEY_MAX = 200


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refusing (413) as soon as it passes `max_bytes`."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise PayloadTooLargeError(f"body of {length} bytes is larger than the limit of {max_bytes} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(f"body is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def ingest_routes(gateway: Gateway) -> list[Route]:
    async def receive(request: Request, *, webhook: bool) -> Response:
        received_at_us = time.time_ns() // 1000
        pipeline_id = request.path_params["pipeline_id"]
        try:
            info = await gateway.info(pipeline_id)
            source = info.spec.source
            if webhook and not isinstance(source, WebhookSource):
                raise NotFoundError(f"pipeline {pipeline_id} takes no webhooks", where=pipeline_id)
            if not webhook and not isinstance(source, PushSource):
                raise NotFoundError(f"pipeline {pipeline_id} takes no pushed events; its source is "
                                    f"{source.kind}", where=pipeline_id)
            limits = info.spec.limits
            body = await read_body(request, limits.max_body_bytes)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
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
            result = await gateway.ingest(pipeline_id, batch, limits.queue_records)
        except DashError as exc:
            return error_response(exc)
        if isinstance(result, DashError):
            return error_response(result)
        return json_response(result.to_body(), 202)

    async def events(request: Request) -> Response:
        return await receive(request, webhook=False)

    async def hooks(request: Request) -> Response:
        return await receive(request, webhook=True)

    return [
        Route("/v1/pipelines/{pipeline_id}/events", events, methods=["POST"]),
        Route("/v1/hooks/{pipeline_id}", hooks, methods=["POST"]),
    ]
