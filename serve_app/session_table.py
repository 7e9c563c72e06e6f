"""What a web replica knows of the live page sessions (`dash_ray.auth.sessions`), so that a
request with the session cookie makes no registry call of its own.

What is remembered, and for how long (as for tokens, `serve_app/gateway.py`): every live
session (by the hash of its id, with its token's hash and deadlines) is asked of the registry
every `ttl_s` (10 s) while sessions are used, with the hashes of the sessions used since the
last ask (their idle deadline moves on); an unknown cookie looks again at most once a second (a
session opened moments ago on another replica). Made-up cookies cost nothing more. A session
signed out or ended with its token on another replica is refused here within `ttl_s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dash_ray.auth.sessions import SessionGrant, hash_session
from dash_ray.errors import AuthError
from serve_app.lookups import LookupCache
from serve_app.registry_client import RegistryClient

__all__ = ["SessionTable", "no_session"]


class SessionTable:
    """The live sessions as this replica last heard of them from the registry."""

    def __init__(self, registry: RegistryClient, *, ttl_s: float = 10.0, stale_s: float = 0.0,
                 timeout_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self._grants: LookupCache[dict[str, SessionGrant]] = LookupCache(
            "sessions", fresh_s=ttl_s, stale_s=stale_s, timeout_s=timeout_s, clock=clock)
        self._wall = wall
        self._seen: set[str] = set()  # hashes of known sessions used since the last ask

    async def grant(self, session_id: str, *, max_age_s: float | None = None) -> SessionGrant | None:
        """What the session grants while it lives; None once it ended (or never was)."""
        digest = hash_session(session_id)
        grant = (await self._grants.get("", self._ask, max_age_s=max_age_s)).get(digest)
        if grant is None:
            # Perhaps opened moments ago on another replica: look again, at most once a second.
            grant = (await self._grants.get("", self._ask, max_age_s=1.0)).get(digest)
        if grant is None or not grant.live(self._wall()):
            return None
        self._seen.add(digest)
        return grant

    def forget(self) -> None:
        """Ask again on the next check (after this replica opened or ended a session)."""
        self._grants.forget("")

    async def _ask(self) -> dict[str, SessionGrant]:
        seen, self._seen = self._seen, set()
        try:
            return await self._registry.sessions(sorted(seen))
        except BaseException:
            self._seen |= seen  # told next time
            raise


def no_session(where: str = "session") -> AuthError:
    return AuthError("the page session has ended (signed out, expired, or its token revoked): sign in again",
                     where=where)
