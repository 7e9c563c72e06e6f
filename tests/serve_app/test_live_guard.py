"""Live sockets of a revoked token close 4401 within the guard's round, though the web tier's
token cache would accept the token for up to 10 s more; one check per distinct token per
round, however many sockets share it; sockets stay while the registry cannot answer. Driven
without Ray: the real Gateway and RegistryClient over a registry handle whose token checks
are the real catalog's (SQLite), as the registry actor's are."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from dash_ray.auth.secretbox import SecretBox
from dash_ray.auth.sessions import Credential
from dash_ray.catalog import open_catalog
from dash_ray.live.fanout import Topic, Watcher
from dash_ray.live.guard import TokenGuard
from dash_ray.settings import Settings
from serve_app.gateway import Gateway
from serve_app.registry_client import RegistryClient
from tests.waiting import until


class _Method:
    def __init__(self, registry: CatalogRegistry, name: str) -> None:
        self.registry, self.name = registry, name

    async def _call(self, *args: Any) -> Any:
        self.registry.calls.append(self.name)
        if self.registry.away:
            raise ConnectionError("registry away")
        if self.name == "token_scopes":
            return await asyncio.to_thread(self.registry.catalog.token_scopes)
        info = await asyncio.to_thread(self.registry.catalog.check_token, *args)
        return None if info is None else info.scope

    def remote(self, *args: Any) -> Any:
        assert self.name in ("check_token", "token_scopes"), self.name
        return self._call(*args)


class CatalogRegistry:
    """The registry's token checks (`token_scopes`, `check_token`) over a real catalog."""

    def __init__(self, catalog: Any) -> None:
        self.catalog = catalog
        self.calls: list[str] = []
        self.away = False

    def __getattr__(self, name: str) -> _Method:
        return _Method(self, name)


async def _nothing(text: str) -> None:
    pass


async def test_sockets_of_a_revoked_token_close_4401_within_a_round(tmp_path: Path) -> None:
    catalog = open_catalog(tmp_path / "catalog.sqlite", box=SecretBox([SecretBox.generate_key()]))
    revoked_id, revoked = catalog.create_token("read", name="viewer")
    _, kept = catalog.create_token("read", name="wall")
    settings = Settings.from_env(env={}, home=str(tmp_path))
    registry = CatalogRegistry(catalog)
    gateway = Gateway(settings.web(), registry=RegistryClient(settings.namespace, handle=registry))
    assert gateway._tokens.fresh_s == 10.0  # what a request may use a revoked token for
    guard: TokenGuard[Credential] = TokenGuard(lambda credential: gateway.recheck(credential, "read"), every_s=0.2)
    topic = Topic(None)  # type: ignore[arg-type]  # the watchers are only closed here
    sockets = {name: [Watcher(topic, _nothing, 0) for _ in range(50)] for name in (revoked, kept)}
    for token, watchers in sockets.items():
        assert await gateway.authorize(f"Bearer {token}", "read") == "read"
        for watcher in watchers:
            guard.add(Credential("bearer", token), watcher)
    catalog.revoke_token(revoked_id)
    # The cache still says yes (a request may use a revoked token for up to 10 s) ...
    assert await gateway.authorize(f"Bearer {revoked}", "read") == "read"
    # ... but its sockets close within a second or so: a recheck asks the registry again once
    # the scopes it holds are a second old (serve_app/gateway.py), the guard's next round.
    revoked_at = time.monotonic()
    await until(lambda: all(w.closed for w in sockets[revoked]), timeout=3, what="the revoked token's sockets closed")
    took = time.monotonic() - revoked_at
    assert took < 2.0 and {w.close_code for w in sockets[revoked]} == {4401}
    assert not any(w.closed for w in sockets[kept])
    calls = len(registry.calls)
    await until(lambda: guard.rounds >= 3, timeout=3, what="three rounds")
    assert len(registry.calls) - calls <= 3  # at most one registry call a round for the 50 sockets left
    # The registry away: nothing is closed, the next round asks again.
    registry.away = True
    rounds = guard.rounds
    await until(lambda: guard.rounds >= rounds + 2, timeout=3, what="two more rounds")
    assert not any(w.closed for w in sockets[kept]) and len(guard) == 50
    for watcher in sockets[kept]:
        guard.discard(Credential("bearer", kept), watcher)
    assert len(guard) == 0 and guard._task is None
    await guard.close()
