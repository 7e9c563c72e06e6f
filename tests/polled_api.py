"""A real HTTP API for the polling sources' tests, served by uvicorn on a free loopback port in a
thread of the test process: its items paginate in each of dlt's ways, it answers scripted
failures (429 with Retry-After, 500s, malformed JSON, a slow answer) before its normal answer,
honours If-None-Match, and serves a GraphQL endpoint (graphql-core) over the same items.

Items are `{"id": n, "updated_at": n * 10, "value": ...}`; `since` (or the GraphQL `since`
variable) keeps those with `updated_at >= since`, as many APIs do (inclusive), so a poller that
asks from its cursor sees the last item again and must deduplicate it.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import graphql
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PAGE = 3


@dataclass
class Scripted:
    """An answer given instead of the normal one: `status`, `headers`, raw `body`, or a delay."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"error": "scripted"}'
    delay: float = 0.0


class PolledApi:
    """The API's state: its items, the answers scripted for the next requests, and every
    request's path, query and headers (`requests`), for the tests to read."""

    def __init__(self, items: int = 0) -> None:
        self.items: list[dict[str, Any]] = []
        self.script: list[Scripted] = []
        self.requests: list[dict[str, Any]] = []
        self.version = 0
        self.gate: threading.Event | None = None  # set: pages past the first wait for it
        self.add(items)
        self.url = ""

    def add(self, count: int) -> None:
        start = len(self.items)
        self.items += [{"id": n, "updated_at": n * 10, "value": f"v{n}"} for n in range(start + 1, start + count + 1)]
        self.version += 1

    def selected(self, since: Any) -> list[dict[str, Any]]:
        return [i for i in self.items if since is None or i["updated_at"] >= int(since)]

    def app(self) -> Starlette:
        schema = graphql.build_schema(SCHEMA_SDL)
        routes = [Route(f"/{kind}", self._rest(kind), methods=["GET"]) for kind in
                  ("single", "json_link", "header_link", "cursor", "page_number", "offset", "etag")]
        routes.append(Route("/graphql", self._graphql(schema), methods=["POST"]))
        return Starlette(routes=routes)

    def _note(self, request: Request, body: Any = None) -> Scripted | None:
        self.requests.append({"path": request.url.path, "query": dict(request.query_params),
                              "headers": dict(request.headers), "body": body, "at": time.time()})
        return self.script.pop(0) if self.script else None

    def _rest(self, kind: str) -> Any:
        async def endpoint(request: Request) -> Response:
            if (scripted := self._note(request)) is not None:
                await asyncio.sleep(scripted.delay)
                return Response(scripted.body, scripted.status, headers=scripted.headers,
                                media_type="application/json")
            q = request.query_params
            items = self.selected(q.get("since"))
            return await self._page(kind, request, q, items)
        return endpoint

    async def _page(self, kind: str, request: Request, q: Any, items: list[dict[str, Any]]) -> Response:
        if kind in ("single", "etag"):
            etag = f'"v{self.version}"'
            if kind == "etag" and request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"etag": etag})
            return JSONResponse({"data": items}, headers={"etag": etag} if kind == "etag" else None)
        if kind == "offset":
            offset, limit = int(q.get("offset", 0)), int(q.get("limit", PAGE))
            return JSONResponse({"items": items[offset:offset + limit], "total": len(items)})
        if kind == "cursor":
            start = int(base64.b64decode(q["cursor"])) if q.get("cursor") else 0
            following = base64.b64encode(str(start + PAGE).encode()).decode() if start + PAGE < len(items) else None
            await self._gate(start)
            return JSONResponse({"data": items[start:start + PAGE], "meta": {"next": following}})
        page = int(q.get("page", 1))
        chunk = items[(page - 1) * PAGE:page * PAGE]
        more = page * PAGE < len(items)
        if kind == "page_number":
            return JSONResponse({"data": chunk, "total_pages": -(-len(items) // PAGE)})
        following = str(request.url.include_query_params(page=page + 1)) if more else None
        if kind == "json_link":
            return JSONResponse({"data": chunk, "links": {"next": following}})
        headers = {"link": f'<{following}>; rel="next", <{request.url}>; rel="self"'} if following else {}
        return JSONResponse({"data": chunk}, headers=headers)

    async def _gate(self, start: int) -> None:
        """With a gate, every page but the first waits for it (the test kills a poller there)."""
        if start and self.gate is not None:
            while not self.gate.is_set():
                await asyncio.sleep(0.05)

    def _graphql(self, schema: graphql.GraphQLSchema) -> Any:
        async def endpoint(request: Request) -> Response:
            body = orjson.loads(await request.body())
            if (scripted := self._note(request, body)) is not None:
                return Response(scripted.body, scripted.status, headers=scripted.headers,
                                media_type="application/json")
            result = await graphql.graphql(schema, body["query"], root_value=Root(self),
                                           variable_values=body.get("variables"))
            answer: dict[str, Any] = {"data": result.data}
            if result.errors:
                answer["errors"] = [e.formatted for e in result.errors]
            return JSONResponse(answer)
        return endpoint


SCHEMA_SDL = """
type Item { id: Int!, updated_at: Int!, value: String! }
type PageInfo { endCursor: String, hasNextPage: Boolean! }
type ItemConnection { nodes: [Item!]!, pageInfo: PageInfo! }
type Query { items(first: Int = 3, after: String, since: Int): ItemConnection!, broken: Int }
"""


class Root:
    """The GraphQL resolvers: `items` is a Relay-style connection; `broken` always fails."""

    def __init__(self, api: PolledApi) -> None:
        self._api = api

    def items(self, info: Any, first: int = PAGE, after: str | None = None, since: int | None = None) -> dict:
        items = self._api.selected(since)
        start = int(after) if after else 0
        end = start + first
        return {"nodes": items[start:end], "pageInfo": {"endCursor": str(end), "hasNextPage": end < len(items)}}

    def broken(self, info: Any) -> int:
        raise ValueError("the broken field is broken")


@contextmanager
def serving(api: PolledApi) -> Iterator[PolledApi]:
    """Serve `api` on a free loopback port (its `url`) while the block runs."""
    # Bound here, handed to uvicorn: no window between choosing a free port and taking it, in
    # which another test on the machine could take it first.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the polled API did not start")
        time.sleep(0.02)
    api.url = f"http://127.0.0.1:{port}"
    try:
        yield api
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
