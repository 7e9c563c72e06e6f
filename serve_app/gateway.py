"""What one web replica knows of the cluster: the registry (`registry_client.py`), each
pipeline's actor (`pipeline_client.py`) and coalescer, and what checking a request needs (a
pipeline's spec and secrets, the scopes of the catalog's tokens), remembered (`lookups.py`)
so that the hot path makes no registry call and no unauthenticated request makes one of its
own.

What is remembered, and for how long:
- A pipeline's ingest info lives `info_ttl_s` (2 s), and is asked again at most once a second
  when a signature fails (a secret rotated), so a rotated secret or a deleted pipeline is seen
  within seconds. An id no pipeline has is answered from the set of pipeline ids, itself asked
  of the registry at most once a second: a flood of made-up ids costs no call per request.
- The scopes of every live token (by hash) are asked of the registry every `token_ttl_s`
  (10 s), so a revoked token stops working within that; an unknown token looks again at most
  once a second (a token made moments ago on another replica). Made-up tokens cost nothing.
- The live page sessions (`serve_app/sessions.py`) likewise every `token_ttl_s`; a session's
  scope is its token's, so revoking the token ends its sessions within the same 10 s.
- `/healthz` asks the registry at most once a second.
- At most 10,000 pipelines' info is kept; past that the least recently used goes.
- While the registry cannot answer (it restarts, or the catalog's PostgreSQL is down) the last
  answers stand in for up to `registry_outage_s` (15 min): ingest, token checks and reads go
  on; past that, 503 saying why.
"""

from __future__ import annotations

import copy
import hmac
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from dash_ray.auth.sessions import Credential, hash_session
from dash_ray.auth.tokens import allows, hash_token, token_id_of
from dash_ray.errors import AuthError, DashError, ForbiddenError, NotFoundError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.settings import WebSettings
from dash_ray.sources.base import Receiver
from dash_ray.sources.registry import receiver_for
from dash_ray.spec import PIPELINE_ID_PATTERN, LimitsSpec, PipelineSpec
from serve_app.coalescer import Coalescer, WaitingBytes
from serve_app.lookups import LookupCache
from serve_app.pipeline_client import PipelineClient
from serve_app.registry_client import RegistryClient
from serve_app.session_table import SessionTable, no_session

__all__ = ["Gateway", "IngestInfo", "bearer_token"]

_MAX_CACHED = 10_000
_PIPELINE_ID = re.compile(PIPELINE_ID_PATTERN)


@dataclass(frozen=True)
class IngestInfo:
    """What checking an ingest request needs: the spec, the valid secrets, the status, and
    the pipeline's Receiver (which route it answers, how its requests are verified), None
    when its source takes no requests."""

    spec: PipelineSpec
    secrets: tuple[str, ...]
    status: str
    receiver: Receiver | None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, else None."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    return authorization[7:].strip()


def _unknown(pipeline_id: str) -> NotFoundError:
    return NotFoundError(f"no pipeline {pipeline_id[:80]!r}", where=pipeline_id[:80])


class Gateway:
    """One per replica (one event loop). `locate_pipeline` finds a pipeline's actor handle by
    its id (Ray's named-actor look-up unless a test says)."""

    def __init__(self, settings: WebSettings, *, info_ttl_s: float = 2.0, token_ttl_s: float = 10.0,
                 registry: RegistryClient | None = None, registry_timeout_s: float = 10.0,
                 locate_pipeline: Callable[[str], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.registry = registry or RegistryClient(settings.namespace)
        self._locate_pipeline = locate_pipeline
        common: dict[str, Any] = {"stale_s": settings.registry_outage_s, "timeout_s": registry_timeout_s,
                                  "clock": clock}
        self._info: LookupCache[IngestInfo | NotFoundError] = LookupCache(
            "pipeline", fresh_s=info_ttl_s, max_entries=_MAX_CACHED, **common)
        self._ids: LookupCache[frozenset[str]] = LookupCache("pipeline ids", fresh_s=1.0, **common)
        self._tokens: LookupCache[dict[str, str]] = LookupCache("tokens", fresh_s=token_ttl_s, **common)
        self.sessions = SessionTable(self.registry, ttl_s=token_ttl_s, stale_s=settings.registry_outage_s,
                                     timeout_s=registry_timeout_s, clock=clock)
        self._ready: LookupCache[DashError | None] = LookupCache(
            "readiness", fresh_s=1.0, timeout_s=registry_timeout_s, clock=clock)
        self._known_ids: frozenset[str] = frozenset()
        # Called with a pipeline's id when this replica learns it is gone (metrics drop its series).
        self.on_gone: list[Callable[[str], None]] = []
        self._pipelines: dict[str, PipelineClient] = {}
        self._coalescers: dict[str, Coalescer] = {}
        self._waiting_bytes = WaitingBytes(settings.coalesce_waiting_bytes)

    # -- tokens ----------------------------------------------------------------------------

    async def authorize(self, authorization: str | None, needed: str) -> str:
        """The scope of the request's bearer token, when it allows `needed`."""
        token = bearer_token(authorization)
        if token is None:
            raise AuthError("missing bearer token (Authorization: Bearer <token>)", where="Authorization")
        scope = await self._scope(token)
        if scope is None:
            raise AuthError("unknown or revoked token", where="Authorization")
        if not allows(scope, needed):
            raise ForbiddenError(f"a {scope} token cannot do this; it needs {needed}", where="Authorization")
        return scope

    async def check(self, credential: Credential | None, needed: str) -> str:
        """The scope of a request's credential (`serve_app.requests.credential_of`), when it
        allows `needed`: a bearer token's own, or the scope of the token a page session was
        opened with."""
        if credential is None:
            raise AuthError("missing bearer token (Authorization: Bearer <token>) or page session (sign in)",
                            where="Authorization")
        if credential.kind == "bearer":
            return await self.authorize(f"Bearer {credential.secret}", needed)
        grant = await self.sessions.grant(credential.secret)
        if grant is None:
            raise no_session()
        scope = await self._scope_of(grant.token_hash)
        if scope is None:
            raise no_session()
        if not allows(scope, needed):
            raise ForbiddenError(f"a {scope} token cannot do this; it needs {needed}", where="session")
        return scope

    async def recheck(self, credential: Credential, needed: str) -> str:
        """`check`, with the tokens' scopes (and the sessions) asked of the registry again
        unless they are less than a second old (one call a second at most, however many are
        checked): a live socket's credential is checked again every few seconds, so the socket
        of a revoked token or an ended session closes within them. While the registry cannot
        answer, the last answers stand in (see the module's docstring)."""
        await self._tokens.get("", self.registry.token_scopes, max_age_s=1.0)
        if credential.kind == "session":
            await self.sessions.grant(credential.secret, max_age_s=1.0)
        return await self.check(credential, needed)

    async def open_session(self, token: str) -> str:
        """A new page session for `token` (AuthError when it is unknown or revoked): its id."""
        if await self._scope(token) is None:
            raise AuthError("unknown or revoked token", where="token")
        digest = hash_token(token)
        admin = bool(self.settings.admin_token_hash) and hmac.compare_digest(digest, self.settings.admin_token_hash)
        token_id = "admin" if admin else token_id_of(token)
        assert token_id is not None  # every catalog token has the token format
        session_id, _ = await self.registry.open_session(token_id, digest)
        self.sessions.forget()
        return session_id

    async def close_session(self, session_id: str) -> None:
        """Forget a page session (sign-out), on this replica at once."""
        await self.registry.close_session(hash_session(session_id))
        self.sessions.forget()

    async def _scope(self, token: str) -> str | None:
        return await self._scope_of(hash_token(token), look_again=token_id_of(token) is not None)

    async def _scope_of(self, digest: str, *, look_again: bool = True) -> str | None:
        """The scope of the live token whose hash is `digest`, None when there is none."""
        if self.settings.admin_token_hash and hmac.compare_digest(digest, self.settings.admin_token_hash):
            return "admin"
        scope = (await self._tokens.get("", self.registry.token_scopes)).get(digest)
        if scope is None and look_again:
            # Perhaps made moments ago (on another replica): look again, at most once a second.
            scope = (await self._tokens.get("", self.registry.token_scopes, max_age_s=1.0)).get(digest)
        return scope

    def forget_tokens(self) -> None:
        """Ask for the tokens (and the sessions, which end with theirs) again on the next check
        (after this replica changed them)."""
        self._tokens.forget("")
        self.sessions.forget()

    async def ready(self) -> None:
        """Returns when the registry has booted (asked at most once a second); else raises why."""
        error = await self._ready.get("", self._ask_ready)
        if error is not None:
            raise copy.copy(error)

    async def _ask_ready(self) -> DashError | None:
        try:
            await self.registry.ready()
        except DashError as exc:
            return exc
        return None

    # -- pipelines -------------------------------------------------------------------------

    async def info(self, pipeline_id: str, *, refresh: bool = False) -> IngestInfo:
        """The pipeline's spec, secrets and status (NotFoundError when there is none);
        `refresh` asks again unless the answer is less than a second old."""
        if not refresh:
            found = self._info.fresh(pipeline_id)
            if isinstance(found, IngestInfo):  # the hot path: no coroutine, no pattern
                return found
        if not _PIPELINE_ID.match(pipeline_id):
            raise _unknown(pipeline_id)
        if pipeline_id not in self._info and pipeline_id not in await self._ids.get("", self._ask_ids):
            raise _unknown(pipeline_id)
        found = await self._info.get(pipeline_id, lambda: self._ask_info(pipeline_id),
                                     max_age_s=1.0 if refresh else None)
        if isinstance(found, NotFoundError):
            self._gone(pipeline_id)
            raise _unknown(pipeline_id)
        return found

    async def _ask_info(self, pipeline_id: str) -> IngestInfo | NotFoundError:
        try:
            access = await self.registry.ingest_info(pipeline_id)
        except NotFoundError:
            return _unknown(pipeline_id)  # remembered as briefly as an answer
        return IngestInfo(access.spec, tuple(access.secrets), access.status, receiver_for(access.spec.source))

    async def _ask_ids(self) -> frozenset[str]:
        ids = frozenset(await self.registry.pipeline_ids())
        for pipeline_id in self._known_ids - ids:
            self._info.forget(pipeline_id)  # from now on the set answers for it
            self._gone(pipeline_id)
        self._known_ids = ids
        return ids

    def forget(self, pipeline_id: str, *, deleted: bool = False) -> None:
        """Drop what is cached about a pipeline (after this replica changed or deleted it)."""
        self._info.forget(pipeline_id)
        self._ids.forget("")
        if deleted:
            self._gone(pipeline_id)
        else:
            self._lost(pipeline_id)

    def known(self, pipeline_ids: Collection[str]) -> None:
        """Every pipeline there is now (a fresh list from the registry): forget the others."""
        present = set(pipeline_ids)
        for pipeline_id in (set(self._coalescers) | set(self._pipelines) | self._known_ids) - present:
            self._gone(pipeline_id)
        self._known_ids &= present

    def _gone(self, pipeline_id: str) -> None:
        """The pipeline is no more: drop its coalescer and client (its channel closes), and
        tell `on_gone` (its info stays, as the brief answer that it is not found)."""
        self._coalescers.pop(pipeline_id, None)
        client = self._pipelines.pop(pipeline_id, None)
        if client is not None:
            client.forget()
        for callback in self.on_gone:
            callback(pipeline_id)

    def _lost(self, pipeline_id: str) -> None:
        """Forget the pipeline's actor handle and channel (the actor died or was replaced)."""
        client = self._pipelines.get(pipeline_id)
        if client is not None:
            client.forget()

    def pipeline(self, pipeline_id: str) -> PipelineClient:
        """The client of the pipeline's actor, one per pipeline on this replica (the actor is
        looked up on its first call; check the pipeline exists first, with `info`)."""
        client = self._pipelines.get(pipeline_id)
        if client is None:
            locate = self._locate_pipeline
            client = self._pipelines[pipeline_id] = PipelineClient(
                pipeline_id, self.settings.namespace, locate=None if locate is None else lambda: locate(pipeline_id))
        return client

    async def ingest(self, pipeline_id: str, batch: RawBatch, limits: LimitsSpec) -> Ack | DashError:
        """Hand `batch` to the pipeline through its coalescer; its Ack or the error. What waits
        is bounded by the pipeline's queue limits and by the replica's `coalesce_waiting_bytes`."""
        coalescer = self._coalescers.get(pipeline_id)
        if coalescer is None:
            client = self.pipeline(pipeline_id)
            coalescer = self._coalescers[pipeline_id] = Coalescer(
                client.ingest, max_inflight=self.settings.coalesce_inflight, max_waiting_records=limits.queue_records,
                max_waiting_bytes=limits.queue_bytes, shared=self._waiting_bytes,
                on_transport_error=lambda exc: client.forget())
        return await coalescer.submit(batch)
