"""The Ray implementation of the supervisor's `Runtime`: one detached `pipeline:<id>` actor per
pipeline (`actors/pipeline.py`), found by name, started, health-checked and killed; a
`placement: shared` pipeline in a shared host actor instead (`actors/hosting.py`)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.hosting import SharedHandle, SharedHosts
from actors.names import actor_name
from actors.pipeline import launch
from dash_ray.settings import INGESTOR_ROLES, ROLE_LABEL, Settings
from dash_ray.spec import PipelineSpec
from dash_ray.supervision.placement import HostRoom, Placement
from dash_ray.supervision.runtime import Health
from dash_ray.timeouts import timeout

__all__ = ["RayRuntime"]

log = logging.getLogger(__name__)

_NAME_RELEASE_S = 10.0
_GRACEFUL_STOP_S = 30.0
_NODES_FRESH_S = 1.0  # how long a listing of the ingestor nodes is used (ray.nodes() is not free)


class RayRuntime:
    """Pipelines as Ray actors in the platform's namespace."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pipeline_settings = settings.pipeline()
        self.placement = Placement()
        self._pipelines: dict[str, str] = {}  # actor id -> pipeline id, while it lives
        self.shared = SharedHosts(settings, place=self._host_for)
        self._ingestors: tuple[float, list[str]] = (-_NODES_FRESH_S, [])

    async def find(self, pipeline_id: str) -> ActorHandle[Any] | SharedHandle | None:
        try:
            return await asyncio.to_thread(ray.get_actor, actor_name(pipeline_id),
                                           namespace=self._settings.namespace)
        except ValueError:
            return await self.shared.find(pipeline_id)

    async def start(self, spec: PipelineSpec) -> tuple[ActorHandle[Any] | SharedHandle, Health]:
        """Create the actor and wait (up to `start_timeout_s`) for its `start`, which recovers
        from the log and lake. On any failure, or when cancelled, the actor is killed. A shared
        pipeline is started in a host actor instead (and taken out of it on failure)."""
        if spec.placement == "shared":
            try:
                handle, answer = await self.shared.start(spec)
            except BaseException:
                self.placement.gone(spec.id)
                raise
            return handle, self._placed(answer, host=handle.host)
        try:
            actor = await self._create(spec)
        except BaseException:
            self.placement.gone(spec.id)
            raise
        try:
            async with timeout(self._settings.start_timeout_s):
                answer = await actor.start.remote()
        except BaseException:
            await self._kill(actor)
            raise
        return actor, self._placed(answer)

    async def health(self, handle: ActorHandle[Any] | SharedHandle) -> Health:
        if isinstance(handle, SharedHandle):
            return self._placed(await self.shared.health(handle), host=handle.host)
        return self._placed(await handle.health.remote())

    def _placed(self, answer: dict[str, Any], host: str | None = None) -> Health:
        health = Health.from_answer(answer, host=host)
        if isinstance(pipeline_id := answer.get("pipeline"), str):
            self.placement.placed(pipeline_id, health.node)
        return health

    async def stop(self, handle: ActorHandle[Any] | SharedHandle, *, graceful: bool) -> None:
        if isinstance(handle, SharedHandle):
            self.placement.gone(handle.pipeline_id)
            await self.shared.stop(handle, graceful=graceful)
            return
        if graceful:
            try:
                async with timeout(_GRACEFUL_STOP_S):
                    await handle.stop.remote()
            except Exception as exc:  # noqa: BLE001 - it keeps its log; the next start replays it
                log.warning("runtime: graceful stop failed, killing it: %s: %s", type(exc).__name__, exc)
        await self._kill(handle)

    async def _ingestor_nodes(self) -> list[str]:
        """The live ingestor nodes, listed at most `_NODES_FRESH_S` ago."""
        at, nodes = self._ingestors
        if time.monotonic() - at >= _NODES_FRESH_S:
            nodes = await asyncio.to_thread(_ingestor_nodes)
            self._ingestors = (time.monotonic(), nodes)
        return nodes

    async def _host_for(self, pipeline_id: str, hosts: list[HostRoom]) -> tuple[str | None, str | None]:
        """The shared host a pipeline joins (None: a new one) and its node; the pipeline counts
        on that node from now on."""
        host, node = self.placement.choose_host(pipeline_id, await self._ingestor_nodes(), hosts)
        self.placement.reserve(pipeline_id, node)
        return host, node

    async def _create(self, spec: PipelineSpec) -> ActorHandle[Any]:
        node = self.placement.choose(spec.id, await self._ingestor_nodes())
        self.placement.reserve(spec.id, node)
        # The name of a just-killed actor may take a moment to be released.
        deadline = time.monotonic() + _NAME_RELEASE_S
        while True:
            try:
                actor = launch(spec, self._pipeline_settings, node)
                self._pipelines[actor._actor_id.hex()] = spec.id
                return actor
            except ValueError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def _kill(self, handle: ActorHandle[Any]) -> None:
        if (pipeline_id := self._pipelines.pop(handle._actor_id.hex(), None)) is not None:
            self.placement.gone(pipeline_id)
        try:
            await asyncio.to_thread(ray.kill, handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def _ingestor_nodes() -> list[str]:
    """The ids of the live nodes a pipeline may run on (by their role label)."""
    nodes: list[dict[str, Any]] = ray.nodes()
    return [n["NodeID"] for n in nodes if n.get("Alive") and (n.get("Labels") or {}).get(ROLE_LABEL) in INGESTOR_ROLES]
