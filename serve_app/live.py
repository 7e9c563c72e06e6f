"""`WS /v1/pipelines/{id}/live?after=<seq>`: a pipeline's mapped records as they are stored,
to WebSocket clients (read scope; the token in `Authorization` or `?token=`).

This module only wires sockets to the fan-out in `dash_ray.live.fanout`: each replica keeps
one `Topic` per pipeline that has watchers (one long poll on the pipeline actor's feed, one
encoding per message), and each socket is a `Watcher` with its own bounded queue, caught up
from the feed's ring or the lake's silver store when it resumes or falls behind.

The socket is accepted before it is refused, so a browser sees the close code: 4401 for a
bad or missing token, 4403 for a scope that cannot read, 4404 for an unknown pipeline (or
one deleted while watched), 4400 for a bad `after`. WebSocket pings (the server's, every
`ping_interval_s`) find dead peers; what a client sends is read and ignored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from dash_ray.errors import AuthError, ForbiddenError, NotFoundError, UnavailableError
from dash_ray.live.fanout import StoredRead, Topic
from dash_ray.live.feed import LiveRead
from serve_app.gateway import Gateway
from serve_app.metrics import ReplicaMetrics
from serve_app.query import QueryEngines

__all__ = ["LiveHub", "live_routes"]

log = logging.getLogger(__name__)

CLOSE_BAD_REQUEST, CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND = 4400, 4401, 4403, 4404


class _PipelineFeed:
    """A `FeedSource` over one pipeline: its actor's feed and its lake's silver store."""

    def __init__(self, gateway: Gateway, engines: QueryEngines, pipeline_id: str) -> None:
        self.gateway, self.engines, self.pipeline_id = gateway, engines, pipeline_id

    async def read(self, after: int | None, *, wait_s: float, limit: int) -> LiveRead:
        try:
            return await self.gateway.live_read(self.pipeline_id, after, wait_s=wait_s, limit=limit)
        except UnavailableError:
            # Not running: restarting (wait for it) or deleted (NotFoundError ends the topic).
            await self.gateway.info(self.pipeline_id, refresh=True)
            raise

    async def stored(self, after: int, *, limit: int) -> StoredRead:
        info = await self.gateway.info(self.pipeline_id)
        return await asyncio.to_thread(self.engines.records_after, info.spec, after, limit=limit)


class LiveHub:
    """The topics of one replica, by pipeline; a topic goes when its last watcher leaves."""

    def __init__(self, gateway: Gateway, engines: QueryEngines, *, metrics: ReplicaMetrics | None = None,
                 **topic_options: Any) -> None:
        self.gateway, self.engines, self.metrics = gateway, engines, metrics
        self.topic_options = topic_options
        self.topics: dict[str, Topic] = {}

    def topic(self, pipeline_id: str) -> Topic:
        topic = self.topics.get(pipeline_id)
        if topic is None or topic.gone:
            topic = Topic(_PipelineFeed(self.gateway, self.engines, pipeline_id),
                          on_empty=lambda t: self._drop(pipeline_id, t), **self.topic_options)
            self.topics[pipeline_id] = topic
        return topic

    def _drop(self, pipeline_id: str, topic: Topic) -> None:
        if self.topics.get(pipeline_id) is topic:
            del self.topics[pipeline_id]


def _token(ws: WebSocket) -> str | None:
    header = ws.headers.get("authorization")
    if header:
        return header
    token = ws.query_params.get("token")
    return f"Bearer {token}" if token else None


def _after(ws: WebSocket) -> int | None:
    raw = ws.query_params.get("after")
    if raw is None or raw == "":
        return None
    value = int(raw)  # ValueError: a bad request
    if value < 0:
        raise ValueError(raw)
    return value


async def _refuse(ws: WebSocket, code: int, reason: str) -> None:
    await ws.accept()
    await ws.close(code, reason[:120])


def live_routes(gateway: Gateway, hub: LiveHub) -> list[WebSocketRoute]:
    async def live(ws: WebSocket) -> None:
        pipeline_id = ws.path_params["pipeline_id"]
        try:
            after = _after(ws)
            await gateway.authorize(_token(ws), "read")
            await gateway.info(pipeline_id)
        except ValueError:
            return await _refuse(ws, CLOSE_BAD_REQUEST, "'after' must be a seq (an integer >= 0)")
        except AuthError as exc:
            return await _refuse(ws, CLOSE_UNAUTHORIZED, exc.message)
        except ForbiddenError as exc:
            return await _refuse(ws, CLOSE_FORBIDDEN, exc.message)
        except NotFoundError as exc:
            return await _refuse(ws, CLOSE_NOT_FOUND, exc.message)
        await ws.accept()
        watcher = await hub.topic(pipeline_id).join(ws.send_text, after)
        gauge = hub.metrics.live_clients(pipeline_id) if hub.metrics is not None else None
        if gauge is not None:
            gauge.inc()
        # The client's messages are read (and ignored) in a task that ends the watcher when
        # the client goes; deliveries run here.
        reader = asyncio.get_running_loop().create_task(_drain(ws))
        reader.add_done_callback(lambda _: watcher.close())
        try:
            # First, where this client starts (a data message with no records), so a client
            # that joined the live tail knows the seq to resume after.
            await ws.send_text(orjson.dumps({"seq": watcher.cursor, "records": []}).decode())
            await watcher.run()
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the client went while a message was on its way
        finally:
            code = watcher.close_code
            client_gone = reader.done()
            watcher.topic.leave(watcher)
            if gauge is not None:
                gauge.dec()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if code is not None and not client_gone:
            try:
                await ws.close(code, "the pipeline was deleted")
            except (RuntimeError, OSError, WebSocketDisconnect):
                pass

    return [WebSocketRoute("/v1/pipelines/{pipeline_id}/live", live)]


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it goes."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
