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
from dash_ray.settings import Settings
from dash_ray.spec import PipelineSpec
from dash_ray.supervision.runtime import Health

__all__ = ["RayRuntime"]

log = logging.getLogger(__name__)

_NAME_RELEASE_S = 10.0
_GRACEFUL_STOP_S = 30.0


class RayRuntime:
    """Pipelines as Ray actors in the platform's namespace."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pipeline_settings = settings.pipeline()
        self.shared = SharedHosts(settings)

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
            handle, answer = await self.shared.start(spec)
            return handle, Health.from_answer(answer)
        actor = await self._create(spec)
        try:
            answer = await asyncio.wait_for(actor.start.remote(), self._settings.start_timeout_s)
        except BaseException:
            await self._kill(actor)
            raise
        return actor, Health.from_answer(answer)

    async def health(self, handle: ActorHandle[Any] | SharedHandle) -> Health:
        if isinstance(handle, SharedHandle):
            return Health.from_answer(await self.shared.health(handle))
        return Health.from_answer(await handle.health.remote())

    async def stop(self, handle: ActorHandle[Any] | SharedHandle, *, graceful: bool) -> None:
        if isinstance(handle, SharedHandle):
            await self.shared.stop(handle, graceful=graceful)
            return
        if graceful:
            try:
                await asyncio.wait_for(handle.stop.remote(), _GRACEFUL_STOP_S)
            except Exception as exc:  # noqa: BLE001 - it keeps its log; the next start replays it
                log.warning("runtime: graceful stop failed, killing it: %s: %s", type(exc).__name__, exc)
        await self._kill(handle)

    async def _create(self, spec: PipelineSpec) -> ActorHandle[Any]:
        # The name of a just-killed actor may take a moment to be released.
        deadline = time.monotonic() + _NAME_RELEASE_S
        while True:
            try:
                return launch(spec, self._pipeline_settings)
            except ValueError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def _kill(self, handle: ActorHandle[Any]) -> None:
        try:
            await asyncio.to_thread(ray.kill, handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
