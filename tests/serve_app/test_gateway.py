"""The gateway's caches and token checks, driven without Ray: a stand-in registry handle,
reached through the real RegistryClient, counts the calls that reach it."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from dash_ray.auth.sessions import Credential
from dash_ray.auth.tokens import hash_token
from dash_ray.errors import AuthError, ForbiddenError, NotFoundError, UnavailableError
from dash_ray.registry.access import IngestAccess
from dash_ray.settings import Settings
from dash_ray.spec import parse_spec
from serve_app.gateway import Gateway
from serve_app.registry_client import RegistryClient
from tests.waiting import until

ADMIN = "dash_admin_gateway-test"


class _Method:
    def __init__(self, registry: FakeRegistry, name: str) -> None:
        self.registry, self.name = registry, name

    async def _call(self, *args: Any) -> Any:
        self.registry.calls.append((self.name, args))
        if self.registry.holding is not None:
            await self.registry.holding.wait()
        if self.registry.failing is not None:
            raise self.registry.failing
        return getattr(self.registry, f"do_{self.name}")(*args)

    def remote(self, *args: Any) -> Any:
        return self._call(*args)


class FakeRegistry:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.secrets = ("whsec_one",)
        self.tokens = {"dash_0123456789ab_reader": "read"}
        self.pipelines = {"weather"}
        # Set to an exception to fail every call with it (the registry or its catalog down),
        # or to an Event to hold every call until it is set (a registry that does not answer).
        self.failing: BaseException | None = None
        self.holding: asyncio.Event | None = None

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("do_"):
            raise AttributeError(name)
        return _Method(self, name)

    def do_ingest_info(self, pipeline_id: str) -> IngestAccess:
        if pipeline_id not in self.pipelines:
            raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)
        return IngestAccess(parse_spec({"id": pipeline_id}), self.secrets, "running")

    def do_check_token(self, token: str) -> str | None:
        return self.tokens.get(token)

    def do_token_scopes(self) -> dict[str, str]:
        return {hash_token(token): scope for token, scope in self.tokens.items()}

    def do_pipeline_ids(self) -> list[str]:
        return sorted(self.pipelines)

    def do_ready(self, wait_s: float) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def gateway(tmp_path) -> tuple[Gateway, FakeRegistry]:
    settings = Settings.from_env(env={}, home=str(tmp_path), admin_token_hash=hash_token(ADMIN))
    registry = FakeRegistry()
    gw = Gateway(settings.web(), info_ttl_s=60, token_ttl_s=60,
                 registry=RegistryClient(settings.namespace, handle=registry))
    return gw, registry


def _calls(registry: FakeRegistry, name: str) -> int:
    return sum(1 for n, _ in registry.calls if n == name)


async def test_info_is_cached_and_refreshed_at_most_once_a_second(gateway) -> None:
    gw, registry = gateway
    first = await gw.info("weather")
    assert first.secrets == ("whsec_one",) and first.spec.id == "weather"
    assert await gw.info("weather") is first
    registry.secrets = ("whsec_two",)
    assert await gw.info("weather", refresh=True) is first  # refreshed less than 1 s ago
    assert _calls(registry, "ingest_info") == 1
    gw.forget("weather")
    assert (await gw.info("weather")).secrets == ("whsec_two",)


async def test_unknown_and_impossible_pipelines_do_not_flood_the_registry(gateway) -> None:
    gw, registry = gateway
    for _ in range(5):
        with pytest.raises(NotFoundError):
            await gw.info("nope")
    assert len(registry.calls) == 1  # the set of pipeline ids, once
    for bad in ("UPPER", "-x", "a" * 64, "../etc"):
        with pytest.raises(NotFoundError):
            await gw.info(bad)
    assert len(registry.calls) == 1


async def test_tokens_admin_by_hash_others_cached_scopes_enforced(gateway) -> None:
    gw, registry = gateway
    assert await gw.authorize(f"Bearer {ADMIN}", "admin") == "admin"
    assert len(registry.calls) == 0
    assert await gw.authorize("Bearer dash_0123456789ab_reader", "read") == "read"
    with pytest.raises(ForbiddenError):
        await gw.authorize("Bearer dash_0123456789ab_reader", "admin")
    assert _calls(registry, "token_scopes") == 1
    with pytest.raises(AuthError):
        await gw.authorize("Bearer dash_ffffffffffff_unknown", "read")
    with pytest.raises(AuthError):
        await gw.authorize(None, "read")
    with pytest.raises(AuthError):
        await gw.authorize("Basic abc", "read")


async def test_the_registry_client_reraises_dash_errors_and_forgets_a_dead_registry(gateway) -> None:
    from ray.exceptions import ActorDiedError

    from dash_ray.errors import UnavailableError

    gw, registry = gateway
    registry.do_check_token = lambda token: (_ for _ in ()).throw(ActorDiedError())  # type: ignore[method-assign]
    with pytest.raises(UnavailableError, match="not reachable"):
        await gw.registry.check_token("dash_0123456789ab_other")
    assert gw.registry._handle is None  # looked up again on the next call


# -- limits a hostile or careless client meets (issue 21, items 11 and 15) ----------------------

def _made_up_token(i: int) -> str:
    return f"dash_{i:012x}_made-up-secret-{i}"


async def test_made_up_tokens_cost_no_registry_call_per_request(gateway) -> None:
    """1,000 different unknown bearer tokens are refused by this replica: the registry is asked
    at most about once a second (for tokens made moments ago), never once per token."""
    gw, registry = gateway
    for i in range(1000):
        with pytest.raises(AuthError):
            await gw.authorize(f"Bearer {_made_up_token(i)}", "read")
    assert len(registry.calls) <= 2
    assert await gw.authorize("Bearer dash_0123456789ab_reader", "read") == "read"
    assert len(registry.calls) <= 2


async def test_made_up_pipeline_ids_cost_no_registry_call_per_request(gateway) -> None:
    gw, registry = gateway
    for i in range(1000):
        with pytest.raises(NotFoundError):
            await gw.info(f"made-up-{i}")
    assert len(registry.calls) <= 2
    assert (await gw.info("weather")).spec.id == "weather"


async def test_a_token_or_pipeline_made_moments_ago_is_found_within_a_second(tmp_path) -> None:
    clock = Clock()
    settings = Settings.from_env(env={}, home=str(tmp_path))
    registry = FakeRegistry()
    gw = Gateway(settings.web(), info_ttl_s=2, token_ttl_s=10, clock=clock,
                 registry=RegistryClient(settings.namespace, handle=registry))
    with pytest.raises(AuthError):
        await gw.authorize("Bearer dash_00000000000a_new", "read")
    with pytest.raises(NotFoundError):
        await gw.info("fresh")
    registry.tokens["dash_00000000000a_new"] = "write"
    registry.pipelines.add("fresh")
    clock.now += 1.1
    assert await gw.authorize("Bearer dash_00000000000a_new", "read") == "write"
    assert (await gw.info("fresh")).spec.id == "fresh"


async def test_a_revoked_token_stops_working_within_the_token_ttl(tmp_path) -> None:
    clock = Clock()
    settings = Settings.from_env(env={}, home=str(tmp_path))
    registry = FakeRegistry()
    gw = Gateway(settings.web(), token_ttl_s=10, clock=clock,
                 registry=RegistryClient(settings.namespace, handle=registry))
    assert await gw.authorize("Bearer dash_0123456789ab_reader", "read") == "read"
    del registry.tokens["dash_0123456789ab_reader"]
    clock.now += 10.5
    with pytest.raises(AuthError):
        await gw.authorize("Bearer dash_0123456789ab_reader", "read")


async def test_caches_evict_the_least_recently_used_entry_not_everything(gateway) -> None:
    """Past the bound the least recently used entry goes; one in use stays (the caches were
    cleared wholesale at 10,000 entries)."""
    gw, registry = gateway
    registry.pipelines |= {f"p{i}" for i in range(10_100)}
    for i in range(10_100):
        await gw.info(f"p{i}")
        if i % 100 == 0:
            await gw.info("weather")  # in use all along
    assert sum(1 for name, args in registry.calls if args == ("weather",)) == 1
    assert len(gw._info) <= 10_000


async def test_concurrent_requests_share_one_registry_call(gateway) -> None:
    gw, registry = gateway
    registry.holding = asyncio.Event()
    waiting = [asyncio.create_task(gw.info("weather")) for _ in range(100)]
    await until(lambda: registry.calls, what="a call held by the registry")
    registry.holding.set()
    assert {(await w).spec.id for w in waiting} == {"weather"}
    assert sum(1 for name, _ in registry.calls if name == "ingest_info") == 1


async def test_healthz_does_not_reach_the_registry_per_request(gateway) -> None:
    import httpx

    from serve_app.app import build_app

    gw, registry = gateway
    app = build_app(gw.settings, gw)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash") as http:
        for _ in range(200):
            assert (await http.get("/healthz")).status_code == 200
    assert sum(1 for name, _ in registry.calls if name == "ready") <= 2


@pytest.mark.parametrize("outage", ["catalog down", "registry gone", "registry silent"])
async def test_ingest_info_and_tokens_are_served_from_memory_while_the_registry_is_out(tmp_path, outage) -> None:
    """A registry restart or a catalog (PostgreSQL) outage is not a 503 for every request: the
    last answers stand in, for `registry_outage_s`; past that, 503 saying why."""
    from ray.exceptions import ActorDiedError

    clock = Clock()
    settings = Settings.from_env(env={}, home=str(tmp_path), admin_token_hash=hash_token(ADMIN))
    registry = FakeRegistry()
    web = dataclasses.replace(settings.web(), registry_outage_s=600.0)
    gw = Gateway(web, info_ttl_s=2, token_ttl_s=10, clock=clock, registry_timeout_s=0.5,
                 registry=RegistryClient(settings.namespace, handle=registry, locate=lambda: registry))
    first = await gw.info("weather")
    assert await gw.authorize("Bearer dash_0123456789ab_reader", "read") == "read"
    if outage == "catalog down":
        registry.failing = UnavailableError("catalog postgresql://127.0.0.1/dash unreachable", retry_after=2.0)
    elif outage == "registry gone":
        registry.failing = ActorDiedError()
    else:
        registry.holding = asyncio.Event()
    for _ in range(5):
        clock.now += 60
        assert await asyncio.wait_for(gw.info("weather"), 5) is first
        assert await asyncio.wait_for(gw.authorize("Bearer dash_0123456789ab_reader", "read"), 5) == "read"
        with pytest.raises(AuthError):
            await asyncio.wait_for(gw.authorize("Bearer dash_0123456789ab_unknown", "read"), 5)
    calls = len(registry.calls)
    for _ in range(100):  # while the registry stays out, it is tried at most once a second
        assert await gw.info("weather") is first
    assert len(registry.calls) <= calls + 2
    clock.now += 600
    with pytest.raises(UnavailableError):
        await asyncio.wait_for(gw.info("weather"), 5)
    with pytest.raises(UnavailableError):
        await asyncio.wait_for(gw.authorize("Bearer dash_0123456789ab_reader", "read"), 5)
    if registry.holding is not None:
        registry.holding.set()
    registry.failing = None
    assert (await gw.info("weather")).spec.id == "weather"


class _ActorOf:
    """Stands in for a pipeline actor's handle: only `endpoint`, of a real channel server."""

    def __init__(self, endpoint: Any) -> None:
        async def endpoint_call() -> Any:
            return endpoint

        self.endpoint = type("M", (), {"remote": staticmethod(endpoint_call)})()


async def test_a_deleted_pipeline_s_coalescer_and_channel_are_dropped(tmp_path) -> None:
    """(issue 21, item 20) A replica that learns a pipeline is gone (its info says so, or the
    set of ids no longer has it) drops its coalescer, channel and actor handle."""
    from dash_ray.ingest.batch import Ack, RawBatch
    from dash_ray.ingest.channel import ChannelServer

    async def handler(batches):
        return [Ack(b.count, 1, b.count) for b in batches]

    server = ChannelServer(handler)
    endpoint = await server.start()
    clock = Clock()
    settings = Settings.from_env(env={}, home=str(tmp_path))
    registry = FakeRegistry()
    registry.pipelines = {"weather", "rain"}
    gw = Gateway(settings.web(), info_ttl_s=2, clock=clock,
                 registry=RegistryClient(settings.namespace, handle=registry),
                 locate_pipeline=lambda pipeline_id: _ActorOf(endpoint))
    gone: list[str] = []
    gw.on_gone.append(gone.append)
    try:
        for pipeline_id in ("weather", "rain"):
            await gw.info(pipeline_id)
            limits = parse_spec({"id": pipeline_id}).limits
            assert isinstance(await gw.ingest(pipeline_id, RawBatch(b"{}\n", 1, 0), limits), Ack)
        weather = gw.pipeline("weather")
        channel = weather._channel
        assert channel is not None
        registry.pipelines = {"rain"}  # deleted through another replica
        clock.now += 3
        with pytest.raises(NotFoundError):
            await gw.info("weather")
        assert "weather" not in gw._coalescers and "weather" not in gw._pipelines and channel.closed
        assert weather._channel is None and weather._handle is None
        assert gone == ["weather"]
        gw.known(["weather"])  # a fresh list without "rain"
        assert "rain" not in gw._coalescers and "rain" not in gw._pipelines
        assert gone[-1] == "rain"
    finally:
        for client in list(gw._pipelines.values()):
            await client.close()
        await server.close()


async def test_a_recheck_sees_a_revoked_token_within_a_second_at_one_call_a_second(tmp_path) -> None:
    """What the live fan-out uses to close a revoked token's sockets: the scopes are asked
    again past a second's age, once for any number of tokens checked."""
    clock = Clock()
    settings = Settings.from_env(env={}, home=str(tmp_path))
    registry = FakeRegistry()
    registry.tokens["dash_0123456789ac_writer"] = "write"
    gw = Gateway(settings.web(), token_ttl_s=10, clock=clock,
                 registry=RegistryClient(settings.namespace, handle=registry))
    assert await gw.authorize("Bearer dash_0123456789ab_reader", "read") == "read"
    del registry.tokens["dash_0123456789ab_reader"]
    clock.now += 1.5
    with pytest.raises(AuthError):
        await gw.recheck(Credential("bearer", "dash_0123456789ab_reader"), "read")
    assert await gw.recheck(Credential("bearer", "dash_0123456789ac_writer"), "read") == "write"
    assert _calls(registry, "token_scopes") == 2
