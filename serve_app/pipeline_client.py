"""The web tier's one way to a pipeline's actor: a typed method per call, answering with
dataclasses, and ingest over the actor's channel (`dash_ray.ingest.channel`), whose endpoint
is asked of the actor once per actor.

A dedicated pipeline is the actor `pipeline:<id>`; a shared one (`placement: shared`) runs in
a host actor the registry names (`Registry.locate`), whose calls take the pipeline's id first.
Once a shared pipeline's host says it is not there (it moved), the next call looks it up again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from actors.locate import locate_pipeline
from actors.names import actor_name
from dash_ray.errors import DashError, UnavailableError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.ingest.channel import ChannelClient, Endpoint
from dash_ray.lifecycle.jobstore import Job
from dash_ray.lifecycle.selection import ReplayRequest
from dash_ray.live.feed import LiveRead
from serve_app.actor_client import ActorClient

__all__ = ["PipelineClient"]

T = TypeVar("T")


class PipelineClient(ActorClient):
    """The actor of one pipeline (`pipeline:<id>` in `namespace`), for one event loop. Every
    method raises the DashError the pipeline raised, or UnavailableError while it is not
    running or cannot be reached; none retries."""

    def __init__(self, pipeline_id: str, namespace: str, *, handle: Any = None,
                 locate: Callable[[], Any] | None = None) -> None:
        super().__init__(actor_name(pipeline_id), namespace, absent=f"pipeline {pipeline_id} is not running",
                         retry_after_s=1.0, handle=handle, locate=locate or self._locate_it)
        self.pipeline_id = pipeline_id
        self._namespace = namespace
        self._key: tuple[str, ...] = ()  # what each call starts with: (pipeline id,) in a shared host
        self._channel: ChannelClient | None = None

    def _locate_it(self) -> Any:
        actor, self._key = locate_pipeline(self.pipeline_id, self._namespace)
        return actor

    async def _call(self, send: Callable[[Any], Awaitable[T]]) -> T:
        try:
            return await super()._call(send)
        except UnavailableError:
            if self._key:  # a shared host that no longer has it: look it up again next time
                self.forget()
            raise

    def forget(self) -> None:
        """Look the actor up and connect to its channel again on the next call (it died, or
        was replaced); requests on the channel now fail."""
        super().forget()
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.abort()

    async def endpoint(self) -> Endpoint:
        """Where the pipeline takes ingest, with the token it wants (UnavailableError until
        it runs)."""
        return await self._call(lambda actor: actor.endpoint.remote(*self._key))

    async def ingest(self, batches: list[RawBatch]) -> list[Ack | DashError]:
        """One framed call on the pipeline's channel: an Ack (durable) or the error, per
        batch, in order. A transport failure raises (the caller answers 503 for each)."""
        channel = self._channel
        if channel is None or channel.closed:
            endpoint = await self.endpoint()
            channel = self._channel
            if channel is None or channel.closed:  # no other caller connected meanwhile
                channel = self._channel = ChannelClient(endpoint)
        return await channel.call(batches)

    async def records(self, after: int | None, limit: int) -> list[dict[str, Any]]:
        """The newest mapped records (after seq `after`), from the pipeline's ring buffer."""
        return await self._call(lambda actor: actor.records.remote(*self._key, after, limit))

    async def live_read(self, after: int | None, *, wait_s: float, limit: int) -> LiveRead:
        """A long poll on the pipeline's live feed (`dash_ray.live.feed`)."""
        return await self._call(lambda actor: actor.live_read.remote(*self._key, after, wait_s, limit))

    async def replay(self, request: ReplayRequest) -> Job:
        """Start a replay job; the job as it starts (`dash_ray.lifecycle.jobs`)."""
        return Job(**await self._call(lambda actor: actor.replay.remote(*self._key, request.as_dict())))

    async def replay_dead(self) -> Job:
        """Start re-running the dead letters through the current mapping; the job."""
        return Job(**await self._call(lambda actor: actor.replay_dead.remote(*self._key)))

    async def job(self, job_id: str) -> Job:
        """A job of this pipeline (NotFoundError: none has the id, or it was forgotten)."""
        return Job(**await self._call(lambda actor: actor.job.remote(*self._key, job_id)))

    async def sinks(self) -> list[dict[str, Any]]:
        """Each sink's state (`dash_ray.pipeline.delivery.DeliverySink.status`)."""
        return await self._call(lambda actor: actor.sinks.remote(*self._key))

    async def redeliver(self, name: str) -> dict[str, Any]:
        """Queue a sink's dead deliveries again: `{"sink", "redelivered"}`."""
        return await self._call(lambda actor: actor.redeliver.remote(*self._key, name))

    async def close(self) -> None:
        """Close the channel (the actor's handle needs no closing). Idempotent."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
