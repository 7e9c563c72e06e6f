"""The read routes every stored resource has, made once (like REST frameworks' generic list and
detail views): `GET /v1/<things>`, the list, and `GET /v1/<things>/{id}`, one item, each
asked of the registry and answered with its JSON body (`bodies.py`), for a token of `scope`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.auth.tokens import Scope
from serve_app.requests import requires
from serve_app.responses import json_response

__all__ = ["item_route", "list_route"]

T = TypeVar("T")
Body = Callable[[T], dict[str, Any]]


def list_route(path: str, key: str, fetch: Callable[[], Awaitable[Sequence[T]]], body: Body[T], *,
               scope: Scope = "read") -> Route:
    """`GET path`: `{key: [body(item), ...]}` of what `fetch()` answers."""

    @requires(scope)
    async def read_list(request: Request) -> Response:
        return json_response({key: [body(item) for item in await fetch()]})

    return Route(path, read_list, methods=["GET"])


def item_route(path: str, fetch: Callable[[str], Awaitable[T]], body: Body[T], *, scope: Scope = "read") -> Route:
    """`GET path` (one path parameter, the item's id): `body(item)` of what `fetch(id)` answers
    (NotFoundError, 404, when there is none)."""

    @requires(scope)
    async def read_item(request: Request) -> Response:
        [item_id] = request.path_params.values()
        return json_response(body(await fetch(item_id)))

    return Route(path, read_item, methods=["GET"])
