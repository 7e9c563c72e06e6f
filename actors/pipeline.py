"""The Ray shell around one pipeline's process (`dash_ray.pipeline.host.PipelineHost`).

One detached actor per pipeline, named `pipeline:<id>`, placed on an ingestor node. Ray does
not restart it (`max_restarts=0`): the registry supervises it, with back-off and a limit.
A `placement: shared` pipeline runs in a shared host actor instead (`actors/host.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import ray

from actors.names import REGISTRY_NAME, actor_name
from actors.upstream import RayUpstream
from dash_ray.errors import DashError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.ingest.channel import Endpoint
from dash_ray.live.feed import LiveRead
from dash_ray.pipeline.host import PipelineHost
from dash_ray.process_logging import setup_logging
from dash_ray.settings import PipelineSettings, ingestor_selector
from dash_ray.spec import PipelineSpec

__all__ = ["NODE_ID_LABEL", "PipelineActor", "actor_options", "launch"]

NODE_ID_LABEL = "ray.io/node-id"  # Ray's own label on every node


# ray.remote's typed overloads lack the actor-only max_concurrency: mypy then sees the class as
# it is written, not the ActorClass the decorator makes of it (hence the ignores on `.options`).
@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=10_000)  # type: ignore[call-overload]
class PipelineActor:
    def __init__(self, spec_data: dict[str, Any], settings: PipelineSettings) -> None:
        setup_logging(settings.log_format, pipeline=str(spec_data.get("id")))
        self._host = PipelineHost(spec_data, settings, address=ray.util.get_node_ip_address(), freeze_gc=True)
        self._settings = settings
        # Which Ray node runs this pipeline, in each answer (`dash-ray ls`, the placement).
        self._where = {"pipeline": self._host.core.id, "node": ray.get_runtime_context().get_node_id()}

    async def start(self) -> dict[str, Any]:
        """Recover and start taking ingest; raises when the pipeline cannot run."""
        started = await self._host.start(self._silver_dsn, self._secrets,
                                         upstream=lambda producer: RayUpstream(producer, self._settings))
        return {**started, **self._where}

    async def _silver_dsn(self) -> str | None:
        # Asked of the registry, never passed in this actor's (pickled, logged) arguments.
        registry = await asyncio.to_thread(ray.get_actor, REGISTRY_NAME, namespace=self._settings.namespace)
        return cast("str | None", await registry.silver_dsn.remote())  # a Ray call's result is untyped

    async def _secrets(self) -> dict[str, str]:
        # Likewise: the values of the named secrets this pipeline's spec refers to.
        registry = await asyncio.to_thread(ray.get_actor, REGISTRY_NAME, namespace=self._settings.namespace)
        return cast("dict[str, str]", await registry.secrets_for.remote(self._host.core.id))

    async def ingest(self, batches: list[RawBatch]) -> list[Ack | DashError]:
        """Ingest over Ray (the web tier uses `endpoint` instead: far cheaper per call)."""
        return await self._host.core.ingest(batches)

    async def endpoint(self) -> Endpoint:
        return self._host.endpoint()

    async def records(self, after: int | None, limit: int) -> list[dict[str, Any]]:
        return await self._host.records(after, limit)

    async def health(self) -> dict[str, Any]:
        return {**self._host.health(), **self._where}

    async def live_read(self, after: int | None, wait_s: float, limit: int) -> LiveRead:
        return await self._host.live_read(after, wait_s, limit)

    async def flush(self) -> int:
        return await self._host.core.flush()

    async def replay(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._host.replay(request)

    async def replay_dead(self) -> dict[str, Any]:
        return self._host.replay_dead()

    async def job(self, job_id: str) -> dict[str, Any]:
        return self._host.job(job_id)

    async def sinks(self) -> list[dict[str, Any]]:
        return self._host.sink_states()

    async def redeliver(self, name: str) -> dict[str, Any]:
        return await self._host.redeliver(name)

    async def stop(self) -> None:
        """Flush what is queued and close the log; the actor can then be killed."""
        await self._host.stop()


def actor_options(pipeline_id: str, settings: PipelineSettings, node: str | None = None) -> dict[str, Any]:
    """How a pipeline's actor is made, beside its class's options: by name in the platform's
    namespace, detached (it outlives the registry that made it), on an ingestor node; on
    `node` when one is given and still there (else on any ingestor node)."""
    options: dict[str, Any] = {"name": actor_name(pipeline_id), "namespace": settings.namespace, "lifetime": "detached",
               "label_selector": ingestor_selector()}
    if node is not None:
        options["label_selector"] = {**ingestor_selector(), NODE_ID_LABEL: node}
        options["fallback_strategy"] = [{"label_selector": ingestor_selector()}]
    return options


def launch(spec: PipelineSpec, settings: PipelineSettings, node: str | None = None) -> ray.actor.ActorHandle[Any]:
    """Create the pipeline's actor (not yet started: call `start`), on `node` if given."""
    options = PipelineActor.options(**actor_options(spec.id, settings, node))  # type: ignore[attr-defined]
    handle: ray.actor.ActorHandle[Any] = options.remote(spec.to_json_dict(), settings)
    return handle
