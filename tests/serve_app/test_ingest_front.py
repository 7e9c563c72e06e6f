"""The raw ASGI ingest front driven directly, without Ray: what a hostile client can make one
replica buffer, and that the pipeline behind it (a real PipelineCore) stores nothing for it.
The registry and the actor handle are stand-ins that count what reaches them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from dash_ray.ingest.channel import ChannelServer, Endpoint
from dash_ray.ingest.signing import signature_header
from dash_ray.lake import Lake
from dash_ray.pipeline.core import PipelineCore
from dash_ray.registry.access import IngestAccess
from dash_ray.settings import Settings
from dash_ray.spec import parse_spec
from serve_app.gateway import Gateway
from serve_app.ingress import IngestFront
from serve_app.registry_client import RegistryClient
from tests.waiting import until

SECRET = "whsec_front-test-secret"
MiB = 2**20


class _Remote:
    def __init__(self, call: Any) -> None:
        self.remote = call


class Registry:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.ingest_info = _Remote(self._ingest_info)
        self.pipeline_ids = _Remote(self._pipeline_ids)

    async def _pipeline_ids(self) -> list[str]:
        return [self.spec["id"]]

    async def _ingest_info(self, pipeline_id: str) -> IngestAccess:
        return IngestAccess(parse_spec(self.spec), (SECRET,), "running")


class Actor:
    """Stands in for the actor handle: its endpoint is a real ingest channel in front of a
    real PipelineCore, as the actor keeps one."""

    def __init__(self, channel: ChannelServer) -> None:
        self.channel = channel
        self.endpoint = _Remote(self._endpoint)

    async def _endpoint(self) -> Endpoint:
        return self.channel.endpoint


@pytest.fixture()
async def front(tmp_path: Path) -> Any:
    spec = {"id": "weather", "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}}}
    core = PipelineCore(parse_spec(spec), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")),
                        fsync=False)
    await core.start()
    channel = ChannelServer(core.ingest)
    await channel.start()
    settings = Settings.from_env(env={}, home=str(tmp_path)).web()
    gateway = Gateway(settings, info_ttl_s=60, registry=RegistryClient(settings.namespace, handle=Registry(spec)),
                      locate_pipeline=lambda pipeline_id: Actor(channel))

    async def fallback(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("not an ingest route")

    yield IngestFront(fallback, gateway), core
    gateway.forget("weather")
    await channel.close()
    await core.close()


def with_timeout(app: IngestFront, seconds: float) -> IngestFront:
    return IngestFront(app.app, app.gateway, budget=app.budget, body_timeout_s=seconds)


class Client:
    """One request: its headers, then its body in chunks as the server asks for them. Counts
    what the server has taken from it while no answer has been sent (`Flood.held`)."""

    def __init__(self, flood: Flood, headers: dict[str, str], body_size: int, chunk: bytes) -> None:
        self.flood, self.headers, self.left, self.chunk = flood, headers, body_size, chunk
        self.taken = 0
        self.status: int | None = None
        self.response_headers: dict[bytes, bytes] = {}

    async def receive(self) -> dict[str, Any]:
        await asyncio.sleep(0.001)  # a slow client: the others get their turn
        part = self.chunk[:self.left]
        self.left -= len(part)
        self.taken += len(part)
        self.flood.held += len(part)
        self.flood.peak = max(self.flood.peak, self.flood.held)
        return {"type": "http.request", "body": part, "more_body": self.left > 0}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.response_headers = dict(message["headers"])
            self.flood.held -= self.taken

    async def run(self, app: Any, path: str) -> None:
        scope = {"type": "http", "method": "POST", "path": path,
                 "headers": [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]}
        await app(scope, self.receive, self.send)


class Flood:
    def __init__(self) -> None:
        self.held = 0
        self.peak = 0


async def _never() -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@pytest.mark.parametrize("signature", [None, "t=1000,v1=" + "ab" * 32, "garbage"])
async def test_headers_that_cannot_be_authentic_get_401_without_reading_the_body(front, signature) -> None:
    app, core = front
    headers = [(b"content-type", b"application/json"), (b"content-length", str(16 * MiB - 1).encode())]
    if signature:
        headers.append((b"dash-signature", signature.encode()))
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/pipelines/weather/events", "headers": headers}
    await asyncio.wait_for(app(scope, _never, send), timeout=5)
    assert sent[0]["status"] == 401
    assert core.counters.received == 0


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_many_plausible_unsigned_requests_cannot_make_the_replica_buffer_past_its_budget(
        front, declared) -> None:
    """Eight concurrent 16 MiB bodies with a well-formed, fresh but wrong signature: without
    a bound the replica holds all 128 MiB before checking any signature."""
    app, core = front
    flood = Flood()
    chunk = b" " * MiB
    headers = {"content-type": "application/json", "dash-signature": f"t={int(time.time())},v1={'ab' * 32}"}
    if declared:
        headers["content-length"] = str(16 * MiB)
    clients = [Client(flood, headers, 16 * MiB, chunk) for _ in range(8)]
    await asyncio.wait_for(asyncio.gather(*(c.run(app, "/v1/pipelines/weather/events") for c in clients)), 60)
    statuses = sorted(c.status for c in clients)
    assert set(statuses) == {401, 503}, statuses
    assert all(c.response_headers.get(b"retry-after") for c in clients if c.status == 503)
    # The budget (64 MiB), plus at most the one chunk each request had in hand when refused.
    assert flood.peak <= 64 * MiB + len(clients) * len(chunk), flood.peak / MiB
    if declared:
        assert all(c.taken == 0 for c in clients if c.status == 503)  # refused without reading
    assert core.counters.received == 0
    body = orjson.dumps({"n": 1})
    signed = Client(flood, {"dash-signature": signature_header(SECRET, body)}, len(body), body)
    await signed.run(app, "/v1/pipelines/weather/events")
    assert signed.status == 202 and core.counters.last_seq == 1


async def test_a_stalled_body_is_given_up_and_its_share_of_the_budget_comes_back(front) -> None:
    """A client that declares a body and never sends it cannot keep its share of the budget."""
    app, core = front
    app = with_timeout(app, 0.5)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(16 * MiB).encode()),
               (b"dash-signature", f"t={int(time.time())},v1={'ab' * 32}".encode())]
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/pipelines/weather/events", "headers": headers}
    stalled = asyncio.ensure_future(app(scope, _never, send))
    await until(lambda: app.budget.used == 16 * MiB, what="the declared body's share taken from the budget")
    await asyncio.wait_for(stalled, timeout=5)
    assert sent[0]["status"] == 400 and b"did not arrive" in sent[1]["body"]
    assert app.budget.used == 0 and core.counters.received == 0


async def test_a_client_that_goes_away_gives_its_share_back(front) -> None:
    app, _ = front
    gone = iter([{"type": "http.request", "body": b"[", "more_body": True}, {"type": "http.disconnect"}])

    async def receive() -> dict[str, Any]:
        return next(gone)

    async def send(message: dict[str, Any]) -> None:
        pass

    headers = [(b"dash-signature", f"t={int(time.time())},v1={'ab' * 32}".encode())]
    await app({"type": "http", "method": "POST", "path": "/v1/pipelines/weather/events", "headers": headers},
              receive, send)
    assert app.budget.used == 0 and app.budget.peak == 1
