"""What one web replica knows of the cluster: the registry (`registry_client.py`), each
pipeline's actor and coalescer, and what checking a request needs (a pipeline's spec and
secrets, the scopes of the catalog's tokens), remembered (`lookups.py`) so that the hot path
makes no registry call and no unauthenticated request makes one of its own.

What is remembered, and for how long:
- A pipeline's ingest info lives `info_ttl_s` (2 s), and is asked again at most once a second
  when a signature fails (a secret rotated), so a rotated secret or a deleted pipeline is seen
  within seconds. An id no pipeline has is answered from the set of pipeline ids, itself asked
  of the registry at most once a second: a flood of made-up ids costs no call per request.
- The scopes of every live token (by hash) are asked of the registry every `token_ttl_s`
  (10 s), so a revoked token stops working within that; an unknown token looks again at most
  once a second (a token made moments ago on another replica). Made-up tokens cost nothing.
- `/healthz` asks the registry at most once a second.
- At most 10,000 pipelines' info is kept; past that the least recently used goes.
- While the registry cannot answer (it restarts, or the catalog's PostgreSQL is down) the last
  answers stand in for up to `registry_outage_s` (15 min): ingest, token checks and reads go
  on; past that, 503 saying why.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError

from actors.pipeline import actor_name
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.ingest.channel import ChannelClient
from dash_ray.errors import AuthError, DashError, ForbiddenError, NotFoundError, UnavailableError
from dash_ray.live.feed import LiveRead
from dash_ray.settings import WebSettings
from dash_ray.sources.base import Receiver
from dash_ray.sources.registry import receiver_for
from dash_ray.spec import PIPELINE_ID_PATTERN, LimitsSpec, PipelineSpec
from dash_ray.auth.tokens import allows, hash_token, token_id_of
from serve_app.coalescer import Coalescer, WaitingBytes
from serve_app.lookups import LookupCache
from serve_app.registry_client import RegistryClient, unwrap

__all__ = ["Gateway", "IngestInfo", "unwrap"]

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


def _unknown(pipeline_id: str) -> NotFoundError:
    return NotFoundError(f"no pipeline {pipeline_id[:80]!r}", where=pipeline_id[:80])


class Gateway:
    """One per replica (one event loop)."""

    def __init__(self, settings: WebSettings, *, info_ttl_s: float = 2.0, token_ttl_s: float = 10.0,
                 registry: RegistryClient | None = None, registry_timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.registry = registry or RegistryClient(settings.namespace)
        common: dict[str, Any] = {"stale_s": settings.registry_outage_s, "timeout_s": registry_timeout_s, "clock": clock}
        self._info: LookupCache[IngestInfo | NotFoundError] = LookupCache(
            "pipeline", fresh_s=info_ttl_s, max_entries=_MAX_CACHED, **common)
        self._ids: LookupCache[frozenset[str]] = LookupCache("pipeline ids", fresh_s=1.0, **common)
        self._tokens: LookupCache[dict[str, str]] = LookupCache("tokens", fresh_s=token_ttl_s, **common)
        self._ready: LookupCache[DashError | None] = LookupCache(
            "readiness", fresh_s=1.0, timeout_s=registry_timeout_s, clock=clock)
        self._known_ids: frozenset[str] = frozenset()
        # Called with a pipeline's id when this replica learns it is gone (metrics drop its series).
        self.on_gone: list[Callable[[str], None]] = []
        self._actors: dict[str, Any] = {}
        self._channels: dict[str, ChannelClient] = {}
        self._coalescers: dict[str, Coalescer] = {}
        self._waiting_bytes = WaitingBytes(settings.coalesce_waiting_bytes)

    # -- tokens ----------------------------------------------------------------------------

    async def authorize(self, authorization: str | None, needed: str) -> str:
        """The scope of the request's bearer token, when it allows `needed`."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError("missing bearer token (Authorization: Bearer <token>)", where="Authorization")
        token = authorization[7:].strip()
        scope = await self._scope(token)
        if scope is None:
            raise AuthError("unknown or revoked token", where="Authorization")
        if not allows(scope, needed):
            raise ForbiddenError(f"a {scope} token cannot do this; it needs {needed}", where="Authorization")
        return scope

    async def recheck(self, authorization: str | None, needed: str) -> str:
        """`authorize`, with the tokens' scopes asked of the registry again unless they are
        less than a second old (one call a second at most, however many tokens are checked):
        a live socket's token is checked again every few seconds, so the socket of a revoked
        token closes within them. While the registry cannot answer, the last scopes stand in
        (see the module's docstring)."""
        if authorization and authorization.lower().startswith("bearer "):
            await self._tokens.get("", self.registry.token_scopes, max_age_s=1.0)
        return await self.authorize(authorization, needed)

    async def _scope(self, token: str) -> str | None:
        digest = hash_token(token)
        if self.settings.admin_token_hash and hmac.compare_digest(digest, self.settings.admin_token_hash):
            return "admin"
        scope = (await self._tokens.get("", self.registry.token_scopes)).get(digest)
        if scope is None and token_id_of(token) is not None:
            # Perhaps made moments ago (on another replica): look again, at most once a second.
            scope = (await self._tokens.get("", self.registry.token_scopes, max_age_s=1.0)).get(digest)
        return scope

    def forget_tokens(self) -> None:
        """Ask for the tokens again on the next check (after this replica changed them)."""
        self._tokens.forget("")

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
        for pipeline_id in (set(self._coalescers) | set(self._actors) | self._known_ids) - present:
            self._gone(pipeline_id)
        self._known_ids &= present

    def _gone(self, pipeline_id: str) -> None:
        """The pipeline is no more: drop its coalescer, channel and actor handle, and tell
        `on_gone` (its info stays, as the brief answer that it is not found)."""
        self._coalescers.pop(pipeline_id, None)
        self._lost(pipeline_id)
        for callback in self.on_gone:
            callback(pipeline_id)

    def _lost(self, pipeline_id: str) -> None:
        """Forget the pipeline's actor handle and channel (the actor died or was replaced)."""
        self._actors.pop(pipeline_id, None)
        channel = self._channels.pop(pipeline_id, None)
        if channel is not None:
            channel.abort()

    async def actor(self, pipeline_id: str) -> Any:
        actor = self._actors.get(pipeline_id)
        if actor is None:
            try:
                actor = await asyncio.to_thread(
                    ray.get_actor, actor_name(pipeline_id), namespace=self.settings.namespace)
            except ValueError:
                raise UnavailableError(f"pipeline {pipeline_id} is not running", retry_after=1.0) from None
            self._actors[pipeline_id] = actor
        return actor

    async def channel(self, pipeline_id: str) -> ChannelClient:
        """The connection to the pipeline's ingest channel (`dash_ray.ingest.channel`); its
        endpoint is asked of the actor over Ray once per actor."""
        channel = self._channels.get(pipeline_id)
        if channel is not None and not channel.closed:
            return channel
        endpoint = await self._on_actor(pipeline_id, lambda actor: actor.endpoint.remote())
        channel = self._channels.get(pipeline_id)
        if channel is None or channel.closed:
            channel = self._channels[pipeline_id] = ChannelClient(endpoint)
        return channel

    async def ingest(self, pipeline_id: str, batch: RawBatch, limits: LimitsSpec) -> Ack | DashError:
        """Hand `batch` to the pipeline through its coalescer; its Ack or the error. What waits
        is bounded by the pipeline's queue limits and by the replica's `coalesce_waiting_bytes`."""
        coalescer = self._coalescers.get(pipeline_id)
        if coalescer is None:
            async def send(batches: list[RawBatch]) -> Sequence[Ack | DashError]:
                channel = await self.channel(pipeline_id)
                return await channel.call(batches)

            coalescer = self._coalescers[pipeline_id] = Coalescer(
                send, max_inflight=self.settings.coalesce_inflight, max_waiting_records=limits.queue_records,
                max_waiting_bytes=limits.queue_bytes, shared=self._waiting_bytes,
                on_transport_error=lambda exc: self._lost(pipeline_id))
        return await coalescer.submit(batch)

    async def records(self, pipeline_id: str, after: int | None, limit: int) -> list[dict[str, Any]]:
        return await self._on_actor(pipeline_id, lambda actor: actor.records.remote(after, limit))

    async def live_read(self, pipeline_id: str, after: int | None, *, wait_s: float, limit: int) -> LiveRead:
        """A long poll on the pipeline's live feed (`dash_ray.live.feed`)."""
        return await self._on_actor(pipeline_id, lambda actor: actor.live_read.remote(after, wait_s, limit))

    async def replay(self, pipeline_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """Start a replay job on the pipeline (`request`: a `ReplayRequest` as a dict); its
        job record."""
        return await self._on_actor(pipeline_id, lambda actor: actor.replay.remote(request))

    async def replay_dead(self, pipeline_id: str) -> dict[str, Any]:
        return await self._on_actor(pipeline_id, lambda actor: actor.replay_dead.remote())

    async def job(self, pipeline_id: str, job_id: str) -> dict[str, Any]:
        return await self._on_actor(pipeline_id, lambda actor: actor.job.remote(job_id))

    async def _on_actor(self, pipeline_id: str, call: Any) -> Any:
        """A call on the pipeline's actor; a dead actor's handle is forgotten (the next call
        looks it up again, so a restarted pipeline answers)."""
        actor = await self.actor(pipeline_id)
        try:
            return await call(actor)
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, RayActorError):
                self._lost(pipeline_id)
            raise unwrap(exc) from None
