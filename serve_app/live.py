"""`WS /v1/pipelines/{id}/live?after=<seq>`: a pipeline's mapped records as they are stored,
to WebSocket clients (read scope), and `POST /v1/live-tickets`, the ticket a browser opens
it with.

Credentials, in order: the `Authorization` header (the SDK), else `?token=` (kept for clients
that cannot set a header; discouraged: browsers print a socket's URL and proxies log it), else
`?ticket=` (a single-use ticket made within the last 30 s by `POST /v1/live-tickets`), else
the page session's cookie (the page's own sockets), whose handshake must come from the
platform's page (its `Origin`, `dash_ray.auth.origins`): one from another site is refused
before it is accepted (HTTP 403). Every few seconds each replica checks the credentials of its
sockets again (`dash_ray.live.guard`): the sockets of a revoked token or an ended session
close 4401.

This module only wires sockets to the fan-out in `dash_ray.live.fanout`: each replica keeps
one `Topic` per pipeline that has watchers (one long poll on the pipeline actor's feed, one
encoding per message), and each socket is a `Watcher` with its own bounded queue, caught up
from the feed's ring or the lake's silver store when it resumes or falls behind. A socket to
a pipeline that is not running is kept and told its status until its records flow; what a
client sends is read (and ignored) from the start, so a client that leaves is let go at once.

The socket is accepted before it is refused, so a browser sees the close code: 4401 for a
bad, missing or used credential, 4403 for a scope that cannot read, 4404 for an unknown
pipeline (or one deleted while watched), 4400 for a bad `after`, 1013 when the registry cannot
check the credential now (try again). WebSocket pings (the server's, every `ping_interval_s`)
find dead peers.

Memory per socket (issue 16: 5,000 sockets at <= 50 KB each): a socket is a plain ASGI call
(`LiveSocket`), dispatched by `LiveFront` ahead of Starlette's middleware, and uvicorn speaks
the lighter protocol of `serve_app.websocket`; `benchmarks/live.py` measures it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Send

from dash_ray.auth.sessions import Credential
from dash_ray.auth.tickets import TICKET_TTL_S
from dash_ray.errors import AuthError, DashError, ForbiddenError, NotFoundError
from dash_ray.live.fanout import StoredRead, Topic
from dash_ray.live.feed import LiveRead
from dash_ray.live.guard import TokenGuard
from serve_app.gateway import Gateway
from serve_app.metrics import ReplicaMetrics
from serve_app.query import QueryEngines
from serve_app.requests import LIVE, credential_of, pipeline_route, requires
from serve_app.responses import json_response

__all__ = ["LiveFront", "LiveHub", "LiveSocket", "live_routes"]

log = logging.getLogger(__name__)

CLOSE_BAD_REQUEST, CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND = 4400, 4401, 4403, 4404
CLOSE_TRY_AGAIN = 1013
_REASONS = {CLOSE_UNAUTHORIZED: "the token was revoked", CLOSE_FORBIDDEN: "the token may no longer read",
            CLOSE_NOT_FOUND: "the pipeline was deleted"}


class _PipelineFeed:
    """A `FeedSource` over one pipeline: its actor's feed and its lake's silver store."""

    def __init__(self, gateway: Gateway, engines: QueryEngines, pipeline_id: str) -> None:
        self.gateway, self.engines, self.pipeline_id = gateway, engines, pipeline_id

    async def read(self, after: int | None, *, wait_s: float, limit: int) -> LiveRead:
        return await self.gateway.pipeline(self.pipeline_id).live_read(after, wait_s=wait_s, limit=limit)

    async def stored(self, after: int, *, limit: int) -> StoredRead:
        info = await self.gateway.info(self.pipeline_id)
        return await self.engines.reads.run(self.engines.records_after, info.spec, after, limit=limit)

    async def status(self) -> str:
        """What the registry says of the pipeline (NotFoundError: deleted), asked at most once
        a second (`Gateway.info`)."""
        return (await self.gateway.info(self.pipeline_id, refresh=True)).status


class LiveHub:
    """The topics of one replica, by pipeline (a topic goes when its last watcher leaves),
    and the guard that checks their tokens again."""

    def __init__(self, gateway: Gateway, engines: QueryEngines, *, metrics: ReplicaMetrics | None = None,
                 recheck_s: float = 5.0, **topic_options: Any) -> None:
        self.gateway, self.engines, self.metrics = gateway, engines, metrics
        self.topic_options = topic_options
        self.topics: dict[str, Topic] = {}
        self.guard: TokenGuard[Credential] = TokenGuard(lambda credential: gateway.recheck(credential, "read"),
                                                        every_s=recheck_s)

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


def _pipeline_of(scope: dict[str, Any]) -> str | None:
    """The pipeline id of a live socket's path (None: another path)."""
    named = pipeline_route(scope["path"])
    return named[0] if named is not None and named[1] == LIVE else None


def _params(scope: dict[str, Any]) -> tuple[int | None, dict[str, str], str | None]:
    """`after` (ValueError when it is not a seq), the headers of a live socket's handshake
    (an `Authorization` made of `?token=` when it has none) and its `?ticket=`."""
    query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    raw = query.get("after")
    after = None
    if raw is not None and raw != "":
        after = int(raw)  # ValueError: a bad request
        if after < 0:
            raise ValueError(raw)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    token = query.get("token")
    if token and "authorization" not in headers:
        headers["authorization"] = f"Bearer {token}"
    return after, headers, query.get("ticket") or None


class LiveSocket:
    """The ASGI app of the live route: one call per socket (a `websocket` scope)."""

    def __init__(self, gateway: Gateway, hub: LiveHub) -> None:
        self.gateway, self.hub = gateway, hub

    async def _redeem(self, ticket: str) -> Credential:
        """The credential a live ticket stands for, once (AuthError when it is not good)."""
        credential = await self.gateway.registry.redeem_live_ticket(ticket[:200])
        if credential is None:
            raise AuthError("unknown, used or expired live ticket (POST /v1/live-tickets makes one)", where="ticket")
        return credential

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        gateway, hub = self.gateway, self.hub
        pipeline_id = _pipeline_of(scope) or ""
        await receive()  # websocket.connect
        try:
            after, headers, ticket = _params(scope)
        except ValueError:
            return await _refuse(send, CLOSE_BAD_REQUEST, "'after' must be a seq (an integer >= 0)")
        by_ticket = ticket is not None and "authorization" not in headers
        credential: Credential | None = None
        if not by_ticket:
            try:
                credential = credential_of(headers, "WS", gateway.settings)
            except ForbiddenError as exc:
                # The page session's cookie, sent by another site's page: never accepted, so
                # that page learns nothing but a failed handshake (HTTP 403).
                log.info("live: %s", exc.message)
                return await send({"type": "websocket.close", "code": 1008, "reason": ""})
        try:
            if ticket is not None and by_ticket:
                credential = await self._redeem(ticket)
            await gateway.check(credential, "read")
            await gateway.info(pipeline_id)
        except AuthError as exc:
            return await _refuse(send, CLOSE_UNAUTHORIZED, exc.message)
        except ForbiddenError as exc:
            return await _refuse(send, CLOSE_FORBIDDEN, exc.message)
        except NotFoundError as exc:
            return await _refuse(send, CLOSE_NOT_FOUND, exc.message)
        except DashError as exc:  # the registry cannot answer now: the client tries again
            return await _refuse(send, CLOSE_TRY_AGAIN, exc.message)
        assert credential is not None  # `check` refuses None
        await send(_ACCEPT)

        async def send_text(text: str) -> None:
            await send({"type": "websocket.send", "text": text})

        watcher = await hub.topic(pipeline_id).join(send_text, after)
        hub.guard.add(credential, watcher)
        gauge = hub.metrics.live_clients(pipeline_id) if hub.metrics is not None else None
        if gauge is not None:
            gauge.inc()
        # The client's messages are read (and ignored) in a task that ends the watcher when
        # the client goes, also while the pipeline is not running yet; deliveries run here.
        reader = asyncio.get_running_loop().create_task(_drain(receive))
        reader.add_done_callback(lambda _: watcher.close())
        try:
            await watcher.run()
        except (OSError, RuntimeError):
            pass  # the client went while a message was on its way (uvicorn: ClientDisconnected)
        finally:
            code = watcher.close_code
            client_gone = reader.done()
            watcher.topic.leave(watcher)
            hub.guard.discard(credential, watcher)
            if gauge is not None:
                gauge.dec()
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        if code is not None and not client_gone:
            try:
                await send({"type": "websocket.close", "code": code, "reason": _REASONS.get(code, "")})
            except (OSError, RuntimeError):
                pass


_ACCEPT = {"type": "websocket.accept"}


async def _refuse(send: Send, code: int, reason: str) -> None:
    await send(_ACCEPT)
    await send({"type": "websocket.close", "code": code, "reason": reason[:120]})


async def _drain(receive: Receive) -> None:
    """Read (and ignore) what the client sends, until it goes."""
    while (await receive())["type"] != "websocket.disconnect":
        pass


def live_routes(live: LiveSocket) -> list[BaseRoute]:
    """The live route in Starlette's table (`LiveFront` serves its sockets: see it for why)
    and `POST /v1/live-tickets`."""
    gateway = live.gateway

    @requires("read")
    async def live_ticket(request: Request) -> Response:
        ticket = await gateway.registry.live_ticket(request.state.credential)
        return json_response({"ticket": ticket, "expires_in": TICKET_TTL_S}, status=201,
                             headers={"Cache-Control": "no-store"})

    return [WebSocketRoute("/v1/pipelines/{pipeline_id}/live", live),
            Route("/v1/live-tickets", live_ticket, methods=["POST"])]


class LiveFront:
    """ASGI middleware: a live socket goes straight to its route, other scopes to `app`.

    A socket lives for hours, and every frame of the stack it was dispatched through lives
    with it: through Starlette (its error and exception middleware, the router, the
    WebSocket session) that was ~6 KB a socket, measured at 5,000 sockets (issue 16)."""

    def __init__(self, app: Any, live: LiveSocket) -> None:
        self.app = app
        self.live = live

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and _pipeline_of(scope) is not None:
            return await self.live(scope, receive, send)
        await self.app(scope, receive, send)
