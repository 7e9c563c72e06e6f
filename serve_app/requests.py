"""How the routes read a request: the pipeline its path names (`pipeline_route`, the one
parser of `/v1/pipelines/{id}/…` and `/v1/hooks/{id}`), what it authenticates with (its bearer
token or page session, `credential_of`) and the scope that must have (`requires`), its body
read within a bound (`read_body`, `read_bounded`), as JSON or as a spec in JSON or YAML, and
its integer query parameters.

Every refusal is a DashError, so it is answered by the one table in `responses.py`: 401/403
for the token, 400 for a malformed body or parameter, 413 past a body's bound, 503 (with
Retry-After) when the replica holds as many unverified bodies as it may.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, overload

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from dash_ray.auth.origins import SAFE_METHODS, check_origin
from dash_ray.auth.sessions import Credential, session_id_from
from dash_ray.auth.tokens import Scope
from dash_ray.errors import MalformedBodyError, PayloadTooLargeError, UnavailableError
from dash_ray.ingest.budget import BodyBudget
from dash_ray.settings import WebSettings
from dash_ray.spec import yaml_error_text

if TYPE_CHECKING:
    from serve_app.gateway import Gateway

__all__ = ["EVENTS", "HOOK", "LIVE", "MAX_SPEC_BYTES", "credential_of", "int_param", "json_body", "pipeline_route",
           "read_body", "read_bounded", "requires", "spec_body"]

Endpoint = Callable[[Request], Awaitable[Response]]

# The routes a path names once its pipeline id is taken out (`pipeline_route`); the raw fronts
# dispatch on them ahead of Starlette (`ingress.py`, `live.py`).
EVENTS = "/v1/pipelines/{id}/events"
HOOK = "/v1/hooks/{id}"
LIVE = "/v1/pipelines/{id}/live"
_PIPELINES, _HOOKS = "/v1/pipelines/", "/v1/hooks/"
_PIPELINES_ID, _HOOKS_ID = _PIPELINES + "{id}", _HOOKS + "{id}"

MAX_SPEC_BYTES = 1024 * 1024
_YAML_TYPES = frozenset({"application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml"})


def pipeline_route(path: str) -> tuple[str, str] | None:
    """`(pipeline id, route)` of a path that names a pipeline, the route being the path with
    the id written `{id}` (`/v1/pipelines/w/events` gives `("w", EVENTS)`, `/v1/hooks/w`
    gives `("w", HOOK)`); None for any other path, or an empty id. The id is not checked
    here (`Gateway.info` answers 404 for one no pipeline has). The ingest hot path calls it
    on every POST: string operations only, no pattern."""
    if path.startswith(_PIPELINES):
        start, named = 14, _PIPELINES_ID
    elif path.startswith(_HOOKS):
        start, named = 10, _HOOKS_ID
    else:
        return None
    end = path.find("/", start)
    if end < 0:
        end = len(path)
    if end == start:
        return None
    return path[start:end], named + path[end:]


def requires(needed: Scope) -> Callable[[Endpoint], Endpoint]:
    """The endpoint runs only for a request whose bearer token, or page session, allows
    `needed` (Starlette's `@requires`, for this platform's tokens): 401 without a known token
    or live session, 403 for a token of a narrower scope, 403 for a request made with the
    session's cookie that may change something and does not come from the platform's page
    (`credential_of`). The token's own scope is then
    `request.state.token_scope`, and the credential `request.state.credential`. The tokens are
    checked by the app's gateway (`app.state.gateway`, set by `build_app`)."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def checked(request: Request) -> Response:
            gateway: Gateway = request.app.state.gateway
            credential = credential_of(request.headers, request.method, gateway.settings)
            request.state.token_scope = await gateway.check(credential, needed)
            request.state.credential = credential
            return await endpoint(request)

        return checked

    return decorate


def credential_of(headers: Mapping[str, str], method: str, settings: WebSettings) -> Credential | None:
    """What the request authenticates with: its bearer token (`Authorization`), else its page
    session (the cookie), else None. A request made with the cookie that may change something
    (any method but GET, HEAD, OPTIONS; every WebSocket handshake, `method` "WS") must come
    from the platform's own page: ForbiddenError otherwise. An `Authorization` header that is
    not a bearer token is no credential (401), whatever cookie comes with it."""
    authorization = headers.get("authorization")
    if authorization is not None:
        if authorization[:7].lower() == "bearer ":
            return Credential("bearer", authorization[7:].strip())
        return None
    session_id = session_id_from(headers.get("cookie"))
    if session_id is None:
        return None
    if method not in SAFE_METHODS:
        check_origin(origin=headers.get("origin"), referer=headers.get("referer"), host=headers.get("host"),
                     allowed=settings.allowed_origins)
    return Credential("session", session_id)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refusing (413) as soon as it passes `max_bytes`."""
    body, _ = await read_bounded(request.headers.get("content-length"), request.receive, max_bytes)
    return body


async def read_bounded(length: str | None, receive: Receive, max_bytes: int,
                       budget: BodyBudget | None = None) -> tuple[bytes, int]:
    """The body (`length`: its Content-Length, if given) and the bytes it holds in `budget`
    (the caller gives them back once the body is verified). Bounded by `max_bytes` (413) and
    by the budget for unverified bodies (503): the declared length is taken before anything is
    read, and a body sent without one takes what has arrived as it arrives. On an error
    nothing stays taken."""
    declared = int(length) if length is not None and length.isdigit() else None
    if declared is not None and declared > max_bytes:
        raise PayloadTooLargeError(f"body of {length} bytes is larger than the limit of {max_bytes} bytes")
    held = 0
    if budget is not None and declared is not None:
        if not budget.take(declared):
            raise _busy()
        held = declared
    try:
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
            if budget is not None and size > held:
                if not budget.take(size - held):
                    raise _busy()
                held = size
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), held
    except BaseException:
        if budget is not None:
            budget.give(held)
        raise


def _busy() -> UnavailableError:
    return UnavailableError("this replica holds as many unverified request bodies as it may; try again",
                            where="body", retry_after=1.0)


async def json_body(request: Request, max_bytes: int = MAX_SPEC_BYTES, *, empty: Any = None) -> Any:
    """The body as JSON (400 when it is not); `empty`, when given, stands for a body of
    nothing but white space."""
    body = await read_body(request, max_bytes)
    if empty is not None and not body.strip():
        return empty
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBodyError(f"body is not valid JSON: {exc}", where="body") from None


class _SpecLoader(yaml.SafeLoader):
    """Safe YAML without aliases: an alias repeats a node by reference, and a few of them
    nested let a small body stand for an enormous spec."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted in a spec",
                                              self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        return super().compose_node(parent, index)


async def spec_body(request: Request) -> Any:
    """The spec a PUT carries (a pipeline's or a dashboard's), as plain data with its keys in
    the order written: JSON, or YAML when the Content-Type says so (`application/yaml`,
    `text/yaml`, `application/x-yaml`), at most `MAX_SPEC_BYTES`."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in _YAML_TYPES:
        return await json_body(request)
    body = await read_body(request, MAX_SPEC_BYTES)
    try:
        return yaml.load(body, Loader=_SpecLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        at, problem = yaml_error_text(exc)
        raise MalformedBodyError(f"body is not valid YAML: {at}: {problem}", where="body") from None


@overload
def int_param(request: Request, name: str, default: int, *, low: int, high: int) -> int: ...


@overload
def int_param(request: Request, name: str, default: None, *, low: int, high: int) -> int | None: ...


def int_param(request: Request, name: str, default: int | None, *, low: int, high: int) -> int | None:
    """The query parameter `name` as an integer in `[low, high]` (400 otherwise), `default`
    when it is absent."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MalformedBodyError(f"query parameter {name!r} must be an integer", where=name) from None
    if not low <= value <= high:
        raise MalformedBodyError(f"query parameter {name!r} must be between {low} and {high}", where=name)
    return value
