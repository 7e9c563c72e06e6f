"""The Ray shell around one pipeline's plain-Python core (`dash_ray.pipeline.PipelineCore`).

One detached actor per pipeline, named `pipeline:<id>`, placed on an ingestor node. Ray does
not restart it (`max_restarts=0`): the registry supervises it, with back-off and a limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

import ray

from actors.names import REGISTRY_NAME, actor_name
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.ingest.channel import ChannelServer, Endpoint
from dash_ray.errors import DashError, SpecError, UnavailableError
from dash_ray.lifecycle.jobs import Replays
from dash_ray.lifecycle.selection import ReplayRequest
from dash_ray.lake import Lake
from dash_ray.live.feed import LiveRead
from dash_ray.lake_roots import pipeline_lake as lake_of
from dash_ray.process_logging import setup_logging
from dash_ray.pipeline.core import PipelineCore
from dash_ray.settings import PipelineSettings, ingestor_selector
from dash_ray.silver.choice import postgres_follower, silver_problems, uses_postgres
from dash_ray.sources.registry import feeder_for
from dash_ray.spec import PipelineSpec, parse_spec

__all__ = ["PipelineActor", "actor_name", "launch", "pipeline_lake"]  # actor_name: from actors.names


def pipeline_lake(spec: PipelineSpec, settings: PipelineSettings) -> Lake:
    """The pipeline's lake (see `dash_ray.lake_roots.pipeline_lake`)."""
    return lake_of(spec, lake_url=settings.lake_url, lake_options=settings.lake_options)


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=10_000)
class PipelineActor:
    def __init__(self, spec_data: dict[str, Any], settings: PipelineSettings) -> None:
        spec: PipelineSpec = parse_spec(spec_data)
        setup_logging(settings.log_format, pipeline=spec.id)
        self._core = PipelineCore(
            spec,
            wal_dir=settings.wal_dir(spec.id),
            lake=pipeline_lake(spec, settings),
            idempotency_window_s=settings.idempotency_window_s,
            idempotency_max_keys=settings.idempotency_max_keys,
        )
        self._feeder: asyncio.Task[None] | None = None
        self._namespace = settings.namespace
        # The data path for ingest from web replicas (dash_ray.ingest.channel), on this
        # node's address: the address Ray advertises (127.0.0.1 on a loopback instance).
        self._channel = ChannelServer(self._core.ingest, host=ray.util.get_node_ip_address())

    async def start(self) -> dict[str, Any]:
        """Recover and start taking ingest; raises when the pipeline cannot run."""
        await asyncio.to_thread(self._core.lake.check)
        await self._follow_silver()
        await self._core.start()
        await self._channel.start()
        # A source that feeds records (the demo) runs from here; one that receives has no feeder.
        if (feeder := feeder_for(self._core.spec.source)) is not None:
            self._feeder = asyncio.get_running_loop().create_task(feeder.run(self._core.ingest))
        # What exists now (Ray, pyarrow, the spec, the recovered state) lives as long as the
        # actor: out of the collector's sight, a full collection no longer walks it all.
        gc.freeze()
        return self._core.health()

    async def _follow_silver(self) -> None:
        """Add a PostgreSQL follower when the spec wants one. The DSN is asked of the registry
        here, never passed in this actor's (pickled, logged) constructor arguments."""
        spec = self._core.spec
        if spec.storage.silver == "lake" or self._core.followers:
            return
        registry = await asyncio.to_thread(ray.get_actor, REGISTRY_NAME, namespace=self._namespace)
        dsn = await registry.silver_dsn.remote()
        if problems := silver_problems(spec, has_dsn=dsn is not None):
            raise SpecError(problems=problems)
        if dsn is not None and uses_postgres(spec, has_dsn=True):
            self._core.followers.append(postgres_follower(spec, self._core.lake, dsn))

    async def ingest(self, batches: list[RawBatch]) -> list[Ack | DashError]:
        """Ingest over Ray (the web tier uses `endpoint` instead: far cheaper per call)."""
        return await self._core.ingest(batches)

    async def endpoint(self) -> Endpoint:
        """Where this pipeline takes ingest over its channel, with the token it wants."""
        if self._core.state != "running":
            raise UnavailableError(f"pipeline {self._core.id} is {self._core.state}", retry_after=1.0)
        return self._channel.endpoint

    async def records(self, after: int | None, limit: int) -> list[dict[str, Any]]:
        await self._core.catch_up()  # a backlog is mapped a chunk at a time: ingest goes on
        return self._core.records(after=after, limit=limit)

    async def health(self) -> dict[str, Any]:
        return self._core.health()

    async def live_read(self, after: int | None, wait_s: float, limit: int) -> LiveRead:
        """The live feed after `after` (a long poll of up to `wait_s`); `after=None` asks only
        where the feed is (`dash_ray.live.feed`)."""
        feed = self._core.live
        if after is None:
            return LiveRead(last_seq=feed.last_seq, first_seq=feed.first_seq)
        return await feed.read(after, wait_s=min(wait_s, 30.0), limit=limit)

    async def flush(self) -> int:
        return await self._core.flush()

    async def replay(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a replay job (`request`: a `ReplayRequest` as a dict; dash_ray.lifecycle.jobs)."""
        return self._replays().submit(ReplayRequest.of(request)).as_dict()

    async def replay_dead(self) -> dict[str, Any]:
        return self._replays().replay_dead().as_dict()

    async def job(self, job_id: str) -> dict[str, Any]:
        return self._replays().get(job_id).as_dict()

    def _replays(self) -> Replays:
        if self._core.replays is None:
            raise UnavailableError(f"pipeline {self._core.id} is not running yet", retry_after=1.0)
        return self._core.replays

    async def stop(self) -> None:
        """Flush what is queued and close the log; the actor can then be killed."""
        await self._channel.close()
        if self._feeder is not None:
            self._feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feeder
        await self._core.close()


def launch(spec: PipelineSpec, settings: PipelineSettings) -> ray.actor.ActorHandle:
    """Create the pipeline's actor (not yet started: call `start`)."""
    return PipelineActor.options(
        name=actor_name(spec.id),
        namespace=settings.namespace,
        lifetime="detached",
        label_selector=ingestor_selector(),
    ).remote(spec.to_json_dict(), settings)
