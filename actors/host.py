"""The Ray shell around a shared host (`dash_ray.pipeline.shared.SharedHost`): one detached actor,
named `host:<n>`, running many `placement: shared` pipelines on one event loop.

Placed as a pipeline actor is (an ingestor node) and, like it, never restarted by Ray
(`max_restarts=0`): the registry supervises each pipeline in it on its own (`actors/hosting.py`).
Every per-pipeline call is the pipeline actor's (`actors/pipeline.py`) with the pipeline's id
first; one that names a pipeline not here raises UnavailableError (it moved: look it up again).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import ray

from actors.names import REGISTRY_NAME
from actors.pipeline import actor_options
from actors.upstream import RayUpstream
from dash_ray.errors import DashError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.ingest.channel import Endpoint
from dash_ray.live.feed import LiveRead
from dash_ray.pipeline.shared import SharedHost
from dash_ray.process_logging import setup_logging
from dash_ray.settings import PipelineSettings

__all__ = ["HostActor", "host_options", "launch_host"]


# As PipelineActor's: ray.remote's typed overloads lack the actor-only max_concurrency.
@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=100_000)  # type: ignore[call-overload]
class HostActor:
    def __init__(self, settings: PipelineSettings, capacity: int) -> None:
        setup_logging(settings.log_format)
        self._shared = SharedHost(settings, address=ray.util.get_node_ip_address(), capacity=capacity)
        self._settings = settings
        # Which Ray node runs these pipelines, in each answer (as a pipeline actor's say).
        self._node = ray.get_runtime_context().get_node_id()

    def _where(self, pipeline_id: str, answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "pipeline": pipeline_id, "node": self._node}

    async def add(self, spec_data: dict[str, Any]) -> dict[str, Any]:
        """Start a pipeline here (it recovers from its log and lake); its health."""
        answer = await self._shared.add(spec_data, self._silver_dsn, self._secrets,
                                        upstream=lambda producer: RayUpstream(producer, self._settings))
        return self._where(str(spec_data.get("id")), answer)

    async def remove(self, pipeline_id: str, graceful: bool) -> None:
        await self._shared.remove(pipeline_id, graceful=graceful)

    async def pipelines(self) -> list[str]:
        return self._shared.ids

    async def load(self) -> int:
        return self._shared.load

    async def node(self) -> str:
        """The id of the Ray node this host runs on."""
        return self._node

    async def health_many(self, pipeline_ids: list[str]) -> dict[str, dict[str, Any] | str]:
        answers = self._shared.health_many(pipeline_ids)
        return {pid: self._where(pid, a) if isinstance(a, dict) else a for pid, a in answers.items()}

    async def _registry(self) -> Any:
        return await asyncio.to_thread(ray.get_actor, REGISTRY_NAME, namespace=self._settings.namespace)

    async def _silver_dsn(self) -> str | None:
        return cast("str | None", await (await self._registry()).silver_dsn.remote())

    async def _secrets(self, pipeline_id: str) -> dict[str, str]:
        return cast("dict[str, str]", await (await self._registry()).secrets_for.remote(pipeline_id))

    # -- the pipeline actor's calls, with the pipeline's id first ---------------------------

    async def health(self, pipeline_id: str) -> dict[str, Any]:
        return self._where(pipeline_id, self._shared.health(pipeline_id))

    async def ingest(self, pipeline_id: str, batches: list[RawBatch]) -> list[Ack | DashError]:
        return await self._shared.get(pipeline_id).core.ingest(batches)

    async def endpoint(self, pipeline_id: str) -> Endpoint:
        return self._shared.get(pipeline_id).endpoint()

    async def records(self, pipeline_id: str, after: int | None, limit: int) -> list[dict[str, Any]]:
        return await self._shared.get(pipeline_id).records(after, limit)

    async def live_read(self, pipeline_id: str, after: int | None, wait_s: float, limit: int) -> LiveRead:
        return await self._shared.get(pipeline_id).live_read(after, wait_s, limit)

    async def flush(self, pipeline_id: str) -> int:
        return await self._shared.get(pipeline_id).core.flush()

    async def replay(self, pipeline_id: str, request: dict[str, Any]) -> dict[str, Any]:
        return self._shared.get(pipeline_id).replay(request)

    async def replay_dead(self, pipeline_id: str) -> dict[str, Any]:
        return self._shared.get(pipeline_id).replay_dead()

    async def job(self, pipeline_id: str, job_id: str) -> dict[str, Any]:
        return self._shared.get(pipeline_id).job(job_id)

    async def sinks(self, pipeline_id: str) -> list[dict[str, Any]]:
        return self._shared.get(pipeline_id).sink_states()

    async def redeliver(self, pipeline_id: str, name: str) -> dict[str, Any]:
        return await self._shared.get(pipeline_id).redeliver(name)

    async def stop(self, pipeline_id: str) -> None:
        await self._shared.remove(pipeline_id, graceful=True)

    async def close(self) -> None:
        """Stop every pipeline here gracefully; the actor can then be killed."""
        await self._shared.close()


def host_options(name: str, settings: PipelineSettings, node: str | None = None) -> dict[str, Any]:
    """How a host actor is made: as a pipeline actor is (`actors/pipeline.actor_options`: in
    the platform's namespace, detached, on an ingestor node, on `node` when given and still
    there), under its own name."""
    return {**actor_options(name, settings, node), "name": name}


def launch_host(name: str, settings: PipelineSettings, capacity: int,
                node: str | None = None) -> ray.actor.ActorHandle[Any]:
    """Create a host actor (empty: `add` pipelines to it), on `node` if given."""
    options = HostActor.options(**host_options(name, settings, node))  # type: ignore[attr-defined]
    handle: ray.actor.ActorHandle[Any] = options.remote(settings, capacity)
    return handle
