"""What one web replica knows of the cluster: the registry (`registry_client.py`), each
pipeline's actor and coalescer, and short-lived caches of what checking a request needs (a
pipeline's spec and secrets, a token's scope), so the hot path makes no registry call.

Cache bounds: ingest info (or the fact that there is no such pipeline) lives `info_ttl_s`
(2 s) and is refreshed at most once a second per pipeline when a signature fails, so a rotated secret or a new pipeline is seen within
seconds and a flood of bad signatures cannot flood the registry. Token scopes live
`token_ttl_s` (10 s), so a revoked token stops working within that.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
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
from dash_ray.sources.base import Source
from dash_ray.sources.registry import source_for
from dash_ray.spec import PIPELINE_ID_PATTERN, PipelineSpec
from dash_ray.auth.tokens import allows, hash_token
from serve_app.coalescer import Coalescer
from serve_app.registry_client import RegistryClient, unwrap

__all__ = ["Gateway", "IngestInfo", "unwrap"]

_MAX_CACHED = 10_000
_PIPELINE_ID = re.compile(PIPELINE_ID_PATTERN)


@dataclass(frozen=True)
class IngestInfo:
    """What checking an ingest request needs: the spec, the valid secrets, the status, and
    the pipeline's Source (which route it answers, how its requests are verified)."""

    spec: PipelineSpec
    secrets: tuple[str, ...]
    status: str
    source: Source


def _known(found: IngestInfo | NotFoundError) -> IngestInfo:
    if isinstance(found, NotFoundError):
        raise NotFoundError(found.message, where=found.where)
    return found




class Gateway:
    """One per replica (one event loop)."""

    def __init__(self, settings: WebSettings, *, info_ttl_s: float = 2.0, token_ttl_s: float = 10.0,
                 registry: RegistryClient | None = None) -> None:
        self.settings = settings
        self.info_ttl_s = info_ttl_s
        self.token_ttl_s = token_ttl_s
        self.registry = registry or RegistryClient(settings.namespace)
        self._info: dict[str, tuple[float, IngestInfo | NotFoundError]] = {}
        self._tokens: dict[str, tuple[float, str | None]] = {}
        self._actors: dict[str, Any] = {}
        self._channels: dict[str, ChannelClient] = {}
        self._coalescers: dict[str, Coalescer] = {}

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
        """`authorize`, asking the registry now rather than the cache (and caching its
        answer): a live socket's token is checked again every few seconds, so the socket of
        a revoked token closes within them (`dash_ray.live.guard`)."""
        if authorization and authorization.lower().startswith("bearer "):
            self._tokens.pop(hashlib.sha256(authorization[7:].strip().encode()).hexdigest(), None)
        return await self.authorize(authorization, needed)

    async def _scope(self, token: str) -> str | None:
        if self.settings.admin_token_hash and hmac.compare_digest(hash_token(token), self.settings.admin_token_hash):
            return "admin"
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._tokens.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.token_ttl_s:
            return cached[1]
        scope = await self.registry.check_token(token)
        if len(self._tokens) >= _MAX_CACHED:
            self._tokens.clear()
        self._tokens[key] = (now, scope)
        return scope

    # -- pipelines -------------------------------------------------------------------------

    async def info(self, pipeline_id: str, *, refresh: bool = False) -> IngestInfo:
        """The pipeline's spec, secrets and status (NotFoundError when there is none).

        An unknown id is remembered as unknown for the same time, and an id that cannot be a
        pipeline's is refused without asking, so a flood of requests for made-up pipelines
        cannot flood the registry. The caches are cleared past `_MAX_CACHED` entries."""
        now = time.monotonic()
        cached = self._info.get(pipeline_id)
        if cached is not None and not refresh and now - cached[0] < self.info_ttl_s:
            return _known(cached[1])
        if refresh and cached is not None and now - cached[0] < 1.0:
            return _known(cached[1])
        if not _PIPELINE_ID.match(pipeline_id):
            raise NotFoundError(f"no pipeline {pipeline_id[:80]!r}", where="pipeline id")
        try:
            access = await self.registry.ingest_info(pipeline_id)
        except NotFoundError as exc:
            found: IngestInfo | NotFoundError = exc
        else:
            found = IngestInfo(access.spec, tuple(access.secrets), access.status, source_for(access.spec.source))
        if len(self._info) >= _MAX_CACHED:
            self._info.clear()
        self._info[pipeline_id] = (now, found)
        return _known(found)

    def forget(self, pipeline_id: str) -> None:
        """Drop what is cached about a pipeline (after this replica changed it)."""
        self._info.pop(pipeline_id, None)
        self._lost(pipeline_id)

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

    async def ingest(self, pipeline_id: str, batch: RawBatch, queue_records: int) -> Ack | DashError:
        """Hand `batch` to the pipeline through its coalescer; its Ack or the error."""
        coalescer = self._coalescers.get(pipeline_id)
        if coalescer is None:
            async def send(batches: list[RawBatch]) -> Sequence[Ack | DashError]:
                channel = await self.channel(pipeline_id)
                return await channel.call(batches)

            coalescer = self._coalescers[pipeline_id] = Coalescer(
                send, max_inflight=self.settings.coalesce_inflight, max_waiting_records=queue_records,
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
