"""How the routes read a request (`serve_app.requests`, issue 23): the one parser of paths that
name a pipeline, agreeing with the three places that use it (the ingest front, the live front,
the request's log context); `requires(scope)` over the real app's token checks; the bounded
body and its JSON/YAML, and integer query parameters. Driven without Ray, through the real app
(`build_app`) over httpx's ASGI transport."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.auth.tokens import hash_token
from dash_ray.errors import DashError
from dash_ray.process_logging import JsonFormatter
from dash_ray.settings import Settings
from serve_app.gateway import Gateway
from serve_app.registry_client import RegistryClient
from serve_app.requests import EVENTS, HOOK, LIVE, int_param, json_body, pipeline_route, requires, spec_body
from serve_app.responses import on_error
from tests.serve_app.test_gateway import ADMIN, FakeRegistry

READER = "dash_0123456789ab_reader"


@pytest.mark.parametrize(("path", "named"), [
    ("/v1/pipelines/weather/events", ("weather", EVENTS)),
    ("/v1/hooks/weather", ("weather", HOOK)),
    ("/v1/pipelines/weather/live", ("weather", LIVE)),
    ("/v1/pipelines/weather", ("weather", "/v1/pipelines/{id}")),
    ("/v1/pipelines/weather/dead/replay", ("weather", "/v1/pipelines/{id}/dead/replay")),
    ("/v1/hooks/weather/", ("weather", "/v1/hooks/{id}/")),  # not HOOK: Starlette answers it
    ("/v1/pipelines/a/b/events", ("a", "/v1/pipelines/{id}/b/events")),  # not EVENTS
    ("/v1/pipelines/" + "x" * 300 + "/events", ("x" * 300, EVENTS)),  # the gateway bounds ids
    ("/v1/pipelines//events", None),
    ("/v1/pipelines/", None),
    ("/v1/hooks/", None),
    ("/v1/pipelines", None),
    ("/v1/tokens/weather", None),
    ("/", None),
])
def test_pipeline_route_names_the_pipeline_and_its_route(path: str, named: tuple[str, str] | None) -> None:
    assert pipeline_route(path) == named


@pytest.fixture()
async def app(tmp_path: Any) -> AsyncIterator[tuple[Any, FakeRegistry]]:
    from serve_app.app import build_app

    settings = Settings.from_env(env={}, home=str(tmp_path), admin_token_hash=hash_token(ADMIN))
    registry = FakeRegistry()
    gateway = Gateway(settings.web(), registry=RegistryClient(settings.namespace, handle=registry))
    yield build_app(settings.web(), gateway), registry


async def test_the_fronts_and_the_log_context_dispatch_on_the_one_parser(app) -> None:
    """A POST the ingest front takes, a socket the live front takes, and the pipeline a bug's
    log line names: each by `pipeline_route`."""
    front, registry = app
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=front), base_url="http://dash") as http:
        # The ingest front answers ingest routes itself, without a request id: 401 (unsigned),
        # and 404 naming the route a push pipeline does not take.
        events = await http.post("/v1/pipelines/weather/events", content=b"{}")
        assert events.status_code == 401 and "x-request-id" not in events.headers
        hook = await http.post("/v1/hooks/weather", content=b"{}")
        assert hook.status_code == 404 and "x-request-id" not in hook.headers
        assert hook.json()["error"]["message"] == "pipeline weather takes no webhooks"
        # Any other path goes on to Starlette, which gives every request an id.
        for path in ("/v1/pipelines/a/b/events", "/v1/hooks/weather/", "/v1/pipelines//events"):
            response = await http.post(path, content=b"{}")
            assert response.status_code in (404, 405) and "x-request-id" in response.headers, path
        # A bug on a route is logged with the pipeline its path names.
        registry.failing = RuntimeError("boom")
        lines = io.StringIO()
        handler = logging.StreamHandler(lines)
        handler.setFormatter(JsonFormatter())
        logger = logging.getLogger("serve_app.responses")
        logger.addHandler(handler)
        try:
            response = await http.get("/v1/pipelines/weather", headers={"authorization": f"Bearer {ADMIN}"})
        finally:
            logger.removeHandler(handler)
        assert response.status_code == 500
        [line] = [orjson.loads(line) for line in lines.getvalue().splitlines()]
        assert line["pipeline"] == "weather" and line["request_id"] == response.headers["x-request-id"]


async def test_the_live_front_takes_the_sockets_of_live_routes_only(app) -> None:
    """Through a real uvicorn server and `websockets` client: a live route's socket is the
    live front's (accepted, then closed 4401 for want of a credential); a socket to any other
    path goes on to Starlette's router, which has no such route (refused, 403)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    from tests.serve_app.test_websocket import _serve

    front, _ = app
    async with _serve(front) as (port, _server):
        async with connect(f"ws://127.0.0.1:{port}/v1/pipelines/weather/live") as socket:
            with pytest.raises(ConnectionClosed) as closed:
                await socket.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        for path in ("/v1/pipelines/weather/live/", "/v1/pipelines/weather/x/live", "/v1/hooks/weather"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{port}{path}"):
                    pass
            assert refused.value.response.status_code == 403, path


async def test_requires_checks_the_token_s_scope_and_keeps_it_for_the_endpoint(app) -> None:
    front, _ = app
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=front), base_url="http://dash") as http:
        assert (await http.get("/v1/whoami")).status_code == 401
        unknown = {"authorization": "Bearer dash_ffffffffffff_no"}
        assert (await http.get("/v1/whoami", headers=unknown)).status_code == 401
        whoami = await http.get("/v1/whoami", headers={"authorization": f"Bearer {READER}"})
        assert whoami.status_code == 200 and whoami.json() == {"scope": "read", "auth": "bearer"}
        refused = await http.get("/v1/tokens", headers={"authorization": f"Bearer {READER}"})
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "ForbiddenError"
        refused = await http.post("/v1/pipelines/weather/replay", headers={"authorization": f"Bearer {READER}"})
        assert refused.status_code == 403
        admin = await http.get("/v1/whoami", headers={"authorization": f"Bearer {ADMIN}"})
        assert admin.json() == {"scope": "admin", "auth": "bearer"}


async def _echo_app() -> Starlette:
    async def echo(request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind == "json":
            value = await json_body(request, 64)
        elif kind == "json-or-empty":
            value = await json_body(request, 64, empty={"empty": True})
        elif kind == "spec":
            value = await spec_body(request)
        else:
            value = {"n": int_param(request, "n", 7, low=1, high=10)}
        return Response(repr(value))

    return Starlette(routes=[Route("/{kind}", echo, methods=["POST"])],
                     exception_handlers={DashError: on_error, Exception: on_error})  # type: ignore[dict-item]


async def test_bodies_and_parameters_are_read_within_their_bounds() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=await _echo_app()), base_url="http://x") as http:
        assert (await http.post("/json", content=b'{"a": 1}')).text == "{'a': 1}"
        bad = await http.post("/json", content=b"{")
        assert bad.status_code == 400 and bad.json()["error"]["where"] == "body"
        assert (await http.post("/json", content=b"[" + b"1," * 40 + b"1]")).status_code == 413
        assert (await http.post("/json-or-empty", content=b"  ")).text == "{'empty': True}"
        assert (await http.post("/json", content=b"")).status_code == 400
        yaml_spec = b"id: w\nmapping:\n  fields: {}\n"
        assert (await http.post("/spec", content=yaml_spec, headers={"content-type": "application/yaml"})).text \
            == "{'id': 'w', 'mapping': {'fields': {}}}"
        alias = b"a: &x [1]\nb: *x\n"
        refused = await http.post("/spec", content=alias, headers={"content-type": "text/yaml"})
        assert refused.status_code == 400 and "aliases" in refused.json()["error"]["message"]
        assert (await http.post("/param")).text == "{'n': 7}"
        assert (await http.post("/param", params={"n": "3"})).text == "{'n': 3}"
        for wrong in ("0", "11", "x"):
            refused = await http.post("/param", params={"n": wrong})
            assert refused.status_code == 400 and refused.json()["error"]["where"] == "n", wrong


def test_requires_keeps_the_endpoint_s_name_for_starlette() -> None:
    @requires("read")
    async def some_endpoint(request: Request) -> Response:
        return Response()

    assert some_endpoint.__name__ == "some_endpoint"
    assert Route("/x", some_endpoint).name == "some_endpoint"
