"""Signed ingest and webhook routes: `POST /v1/pipelines/{id}/events`, `POST /v1/hooks/{id}`.

They are the hot path, so they are served by a raw ASGI front (`IngestFront`) ahead of
Starlette's routing and middleware, which serve every other route (measured in
`benchmarks/ingest.py`: Starlette's per-request machinery costs more CPU than the check).

A request is answered 202 only once the pipeline has made its records durable. In order:
the pipeline must exist (404) and its source answer this route (404 otherwise); the headers
alone must be able to be authentic (401: no signature, a malformed or stale one; the body is
not read); the declared size must fit the pipeline's limit (413) and the replica's budget for
unverified bodies (503 with Retry-After; see `dash_ray.ingest.budget`); the body is read (413
past the limit, 400 when it does not arrive within `body_timeout_s`); the signature is checked
over the raw bytes (401) and gives the request's replay key; the body is decoded (415, 400
naming the line); a request larger than the pipeline's whole queue is 413 naming the limit;
the batch goes to the pipeline's actor through the replica's coalescer (429 with Retry-After
when its queue is full, 503 while it restarts). Anything else that goes wrong is a bug: 500
with a request id (the client's `X-Request-Id`, or a new one) in the body, the response's
header and the log line with the traceback.

Each answer is counted (status and latency, per pipeline) in the replica's metrics
(`serve_app/metrics.py`): two dict updates, no lock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from dash_ray.errors import (
    DashError,
    MalformedBodyError,
    NotFoundError,
    PayloadTooLargeError,
    RetryableError,
    SignatureError,
    UnavailableError,
)
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.ingest.body import decode_body
from dash_ray.ingest.budget import BodyBudget
from dash_ray.sources.base import Receiver, Route
from dash_ray.spec import LimitsSpec
from serve_app.gateway import Gateway, IngestInfo
from serve_app.metrics import ReplicaMetrics
from serve_app.requests import EVENTS, HOOK, pipeline_route, read_bounded
from serve_app.responses import is_answer, request_id_of, retry_after, unexpected_error

__all__ = ["INGEST_ROUTES", "IngestFront"]

# The routes this front serves (POST), by the route of a path (`pipeline_route`).
INGEST_ROUTES: dict[str, Route] = {EVENTS: "events", HOOK: "hooks"}

_IDEMPOTENCY_KEY_MAX = 200
_BODY_TIMEOUT_S = 60.0


def _check_queue(batch: RawBatch, limits: LimitsSpec) -> None:
    # Larger than the pipeline's whole queue: no wait would ever make room, so not a 429.
    if batch.count > limits.queue_records:
        raise PayloadTooLargeError(
            f"request has {batch.count} records, more than this pipeline's whole queue holds "
            f"(limits.queue_records = {limits.queue_records}); send it in smaller requests",
            where="limits.queue_records")
    if batch.nbytes > limits.queue_bytes:
        raise PayloadTooLargeError(
            f"request has {batch.nbytes} bytes of records, more than this pipeline's whole queue holds "
            f"(limits.queue_bytes = {limits.queue_bytes}); send it in smaller requests",
            where="limits.queue_bytes")


_JSON = [(b"content-type", b"application/json")]


class IngestFront:
    """ASGI app: POSTs to the ingest routes are answered here; everything else goes to `app`.

    `budget` bounds the bytes of bodies read but not yet verified, across this replica;
    `body_timeout_s` bounds how long one body may take to arrive (so a stalled client cannot
    keep its share of the budget); `metrics` counts each answer."""

    def __init__(self, app: Any, gateway: Gateway, *, budget: BodyBudget | None = None,
                 body_timeout_s: float = _BODY_TIMEOUT_S, metrics: ReplicaMetrics | None = None) -> None:
        self.app = app
        self.gateway = gateway
        self.metrics = metrics or ReplicaMetrics(gateway)
        self.budget = budget or BodyBudget()
        self.body_timeout_s = body_timeout_s
        # Tasks reading a body, by deadline; one timer sweeps them (a timer per request would
        # cost more than the rest of a small request's checks).
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweep_timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            named = pipeline_route(scope["path"])
            if named is not None:
                pipeline_id, at = named
                route = INGEST_ROUTES.get(at)
                if route is not None:
                    started = time.perf_counter()
                    status, body, extra = await self.handle(pipeline_id, scope, receive, route=route)
                    self.metrics.observe(pipeline_id, status, time.perf_counter() - started)
                    await send({"type": "http.response.start", "status": status, "headers": _JSON + extra})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    async def handle(self, pipeline_id: str, scope: dict[str, Any], receive: Any, *,
                     route: Route) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """One ingest request: (status, JSON body, extra headers)."""
        received_at_us = time.time_ns() // 1000
        result: Ack | BaseException
        try:
            result = await self._ingest(pipeline_id, scope, receive, route, received_at_us)
        except Exception as exc:  # noqa: BLE001 - a DashError is the answer; anything else a bug
            result = exc
        if isinstance(result, Ack):
            return 202, orjson.dumps(result.to_body()), []
        if is_answer(result):
            extra = []
            if isinstance(result, RetryableError):
                extra.append((b"retry-after", retry_after(result).encode()))
            return result.status, orjson.dumps(result.to_body()), extra
        return _internal(result, scope)

    async def _ingest(self, pipeline_id: str, scope: dict[str, Any], receive: Any, route: Route,
                      received_at_us: int) -> Ack | DashError:
        gateway = self.gateway
        info = await gateway.info(pipeline_id)
        receiver = _receiver(info, route)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            checked = _precheck(info, receiver, headers)
        except SignatureError:
            # A secret rotated or a pipeline re-created moments ago: look once more.
            fresh = await gateway.info(pipeline_id, refresh=True)
            if fresh is info:
                raise
            info = fresh
            receiver = _receiver(info, route)
            checked = _precheck(info, receiver, headers)
        limits = info.spec.limits
        body, held = await self._read_in_time(headers.get("content-length"), receive, limits.max_body_bytes)
        try:
            try:
                replay_key = receiver.verify(headers, body, info.secrets, checked)
            except SignatureError:
                fresh = await gateway.info(pipeline_id, refresh=True)
                if fresh is info:
                    raise
                info = fresh
                receiver = _receiver(info, route)
                replay_key = receiver.verify(headers, body, info.secrets)
        finally:
            self.budget.give(held)
        if info.status == "failed":
            raise UnavailableError(f"pipeline {pipeline_id} has failed; see its last error", retry_after=30)
        key = headers.get("idempotency-key")
        if key is None and receiver.idempotency_header:
            key = headers.get(receiver.idempotency_header)
        if key is not None and (not key or len(key) > _IDEMPOTENCY_KEY_MAX):
            raise MalformedBodyError(f"Idempotency-Key must be 1 to {_IDEMPOTENCY_KEY_MAX} characters",
                                     where="Idempotency-Key")
        batch = decode_body(
            body, content_type=headers.get("content-type"), content_encoding=headers.get("content-encoding"),
            max_bytes=limits.max_body_bytes, received_at_us=received_at_us, idempotency_key=key,
            replay_key=replay_key)
        _check_queue(batch, limits)
        return await gateway.ingest(pipeline_id, batch, limits)

    async def _read_in_time(self, length: str | None, receive: Any, max_bytes: int) -> tuple[bytes, int]:
        task = asyncio.current_task()
        assert task is not None
        self._deadlines[task] = time.monotonic() + self.body_timeout_s
        if self._sweep_timer is None:
            self._sweep_timer = asyncio.get_running_loop().call_later(min(1.0, self.body_timeout_s), self._sweep)
        try:
            return await read_bounded(length, receive, max_bytes, self.budget)
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
            raise MalformedBodyError(f"the body did not arrive within {self.body_timeout_s:g} s",
                                     where="body") from None
        finally:
            del self._deadlines[task]
            self._expired.discard(task)

    def _sweep(self) -> None:
        """Cancel the reads past their deadline (each then answers 400); runs every second
        while any body is being read."""
        self._sweep_timer = None
        if not self._deadlines:
            return
        now = time.monotonic()
        for task, deadline in list(self._deadlines.items()):
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._sweep_timer = asyncio.get_running_loop().call_later(min(1.0, self.body_timeout_s), self._sweep)


def _internal(exc: BaseException, scope: dict[str, Any]) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The 500 answer to a bug (or an InternalError/OperatorError from behind), logged with
    its traceback and request id."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    request_id = request_id_of(headers)
    error = unexpected_error(exc, "POST", scope["path"], request_id)
    body = error.to_body()
    body["error"]["request_id"] = request_id
    return error.status, orjson.dumps(body), [(b"x-request-id", request_id.encode())]


def _receiver(info: IngestInfo, route: Route) -> Receiver:
    """The pipeline's receiver when its source takes requests on `route`; 404 otherwise."""
    receiver = info.receiver
    if receiver is not None and receiver.route == route:
        return receiver
    pipeline_id = info.spec.id
    if route == "hooks":
        raise NotFoundError(f"pipeline {pipeline_id} takes no webhooks", where=pipeline_id)
    raise NotFoundError(f"pipeline {pipeline_id} takes no pushed events; its source is {info.spec.source.kind}",
                        where=pipeline_id)


def _precheck(info: IngestInfo, receiver: Receiver, headers: dict[str, str]) -> Any:
    if not info.secrets:
        raise SignatureError("this pipeline has no valid ingest secret")
    return receiver.precheck(headers)
