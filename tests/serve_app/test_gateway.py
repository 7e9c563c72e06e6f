"""The gateway's caches and token checks, driven without Ray: a stand-in registry handle,
reached through the real RegistryClient, counts the calls that reach it."""

from __future__ import annotations

from typing import Any

import pytest

from actors.registry import IngestAccess
from dash_ray.errors import AuthError, ForbiddenError, NotFoundError
from dash_ray.settings import Settings
from dash_ray.auth.tokens import hash_token
from dash_ray.spec import parse_spec
from serve_app.gateway import Gateway
from serve_app.registry_client import RegistryClient

ADMIN = "dash_admin_gateway-test"


class _Method:
    def __init__(self, registry: FakeRegistry, name: str) -> None:
        self.registry, self.name = registry, name

    async def _call(self, *args: Any) -> Any:
        self.registry.calls.append((self.name, args))
        return getattr(self.registry, f"do_{self.name}")(*args)

    def remote(self, *args: Any) -> Any:
        return self._call(*args)


class FakeRegistry:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []
        self.secrets = ("whsec_one",)
        self.tokens = {"dash_0123456789ab_reader": "read"}

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("do_"):
            raise AttributeError(name)
        return _Method(self, name)

    def do_ingest_info(self, pipeline_id: str) -> IngestAccess:
        if pipeline_id != "weather":
            raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)
        return IngestAccess(parse_spec({"id": "weather"}), self.secrets, "running")

    def do_check_token(self, token: str) -> str | None:
        return self.tokens.get(token)


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
    assert _calls(registry, "ingest_info") == 1
    for bad in ("UPPER", "-x", "a" * 64, "../etc"):
        with pytest.raises(NotFoundError):
            await gw.info(bad)
    assert _calls(registry, "ingest_info") == 1


async def test_tokens_admin_by_hash_others_cached_scopes_enforced(gateway) -> None:
    gw, registry = gateway
    assert await gw.authorize(f"Bearer {ADMIN}", "admin") == "admin"
    assert _calls(registry, "check_token") == 0
    assert await gw.authorize("Bearer dash_0123456789ab_reader", "read") == "read"
    with pytest.raises(ForbiddenError):
        await gw.authorize("Bearer dash_0123456789ab_reader", "admin")
    assert _calls(registry, "check_token") == 1
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
