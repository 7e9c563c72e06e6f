"""How a pipeline with a `pipeline` source reaches the pipeline it follows over Ray
(`dash_ray.sources.follow.Upstream`): the producer's live feed by a call on its actor (a long
poll the producer answers from its ring, never waiting on the follower), and its stored
records read here, in the follower's process, from the producer's lake with DuckDB, so a
follower catching up costs its producer nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ray

from actors.locate import locate_pipeline
from actors.names import REGISTRY_NAME
from dash_ray.errors import NotFoundError, UnavailableError
from dash_ray.live.feed import LiveRead
from dash_ray.query.engines import QueryEngines
from dash_ray.settings import PipelineSettings
from dash_ray.spec import PipelineSpec

__all__ = ["RayUpstream"]

_SPEC_TTL_S = 10.0


class RayUpstream:
    """One producer, by id, as its follower's process sees it."""

    def __init__(self, pipeline_id: str, settings: PipelineSettings) -> None:
        self._id = pipeline_id
        self._namespace = settings.namespace
        self._engines = QueryEngines(lake_url=settings.lake_url, lake_options=settings.lake_options)
        self._actor: Any = None
        self._key: tuple[str, ...] = ()  # (producer id,) when it runs in a shared host
        self._spec: tuple[float, PipelineSpec] | None = None

    async def read(self, after: int, *, wait_s: float, limit: int) -> LiveRead:
        actor = await self._handle()
        try:
            read: LiveRead = await actor.live_read.remote(*self._key, after, wait_s, limit)
        except ray.exceptions.RayActorError as exc:
            self._actor = None  # restarted: find its new actor next time
            raise UnavailableError(f"pipeline {self._id!r} is restarting", retry_after=1.0) from exc
        except UnavailableError:
            if self._key:
                self._actor = None  # its shared host no longer has it: it moved
            raise
        return read

    async def stored(self, after: int, *, limit: int) -> tuple[list[dict[str, Any]], int, int]:
        return await asyncio.to_thread(self._engines.stored_after, await self._producer_spec(), after, limit=limit)

    async def _producer_spec(self) -> PipelineSpec:
        """The producer's spec as the registry has it (its columns), asked again after 10 s."""
        if self._spec is None or time.monotonic() - self._spec[0] > _SPEC_TTL_S:
            registry = await asyncio.to_thread(ray.get_actor, REGISTRY_NAME, namespace=self._namespace)
            self._spec = (time.monotonic(), (await registry.get.remote(self._id)).spec)
        return self._spec[1]

    async def _handle(self) -> Any:
        if self._actor is None:
            try:
                self._actor, self._key = await asyncio.to_thread(locate_pipeline, self._id, self._namespace)
            except ValueError as exc:
                raise NotFoundError(f"no pipeline {self._id!r} is running") from exc
        return self._actor
