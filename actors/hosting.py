"""The runtime's side of `placement: shared` (`actors/runtime.py` hands shared pipelines here):
which host actor (`actors/host.py`) each shared pipeline runs in, up to
`DASH_SHARED_HOST_PIPELINES` a host, killing one left empty. Where a pipeline goes is the
runtime's placement (`dash_ray.supervision.placement.Placement.choose_host`): a host with room
on the least-loaded ingestor node, or a new host made there, so shared pipelines spread over
the ingestor nodes.

A pipeline's handle is a `SharedHandle` (host actor + pipeline id), opaque to the supervisor,
which supervises it exactly as a dedicated one: a health answer other than `running` (one
pipeline failed) stops and restarts only that pipeline, with its own back-off; a host actor
that died fails the health of each of its pipelines, and each restarts in another host.

The health calls of one supervisor round are sent as one call per host (`health_many`), so a
round over 2,000 pipelines is 8 Ray calls, not 2,000.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError

from actors.host import launch_host
from actors.names import HOST_PREFIX, host_name
from dash_ray.errors import UnavailableError
from dash_ray.settings import Settings
from dash_ray.spec import PipelineSpec
from dash_ray.supervision.placement import HostRoom
from dash_ray.timeouts import timeout

__all__ = ["SharedHandle", "SharedHosts"]

log = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 30.0

# (pipeline id, the live hosts in order) -> (the host it joins, or None: a new one; its node)
Place = Callable[[str, list[HostRoom]], Awaitable[tuple[str | None, str | None]]]


@dataclass(frozen=True)
class SharedHandle:
    """One shared pipeline: the host actor it runs in, by name and handle."""

    pipeline_id: str
    host: str
    actor: Any


class SharedHosts:
    """The host actors of one registry and the pipelines in each (one event loop)."""

    def __init__(self, settings: Settings, *, place: Place | None = None) -> None:
        """`place`: which host a pipeline joins, or on which node a new host is made for it
        (None: the first host with room, else a new one on any ingestor node)."""
        self._settings = settings
        self._place = place or _first_with_room
        self._pipeline_settings = settings.pipeline()
        self._capacity = settings.shared_host_pipelines
        self._actors: dict[str, Any] = {}  # host name -> handle, for the live hosts
        self._members: dict[str, set[str]] = {}  # host name -> its pipelines (and those starting)
        self._where: dict[str, str] = {}  # pipeline id -> host name, once started there
        self._nodes: dict[str, str | None] = {}  # host name -> the node it runs on (None: not known)
        self._next = 1
        self._lock = asyncio.Lock()
        self._discovered = False
        self._waiting: dict[str, dict[str, list[asyncio.Future[dict[str, Any]]]]] = {}

    def host_of(self, pipeline_id: str) -> str | None:
        """The name of the host actor the pipeline runs in (None: not a shared one here)."""
        return self._where.get(pipeline_id)

    def hosts(self) -> dict[str, int]:
        """Each live host actor's number of pipelines."""
        return {name: len(self._members.get(name, ())) for name in sorted(self._actors)}

    def node_of_host(self, name: str) -> str | None:
        """The node host actor `name` runs on, as last known."""
        return self._nodes.get(name)

    async def find(self, pipeline_id: str) -> SharedHandle | None:
        """The pipeline in a live host actor (after a registry restart: the hosts are found by
        name and asked what they run, once)."""
        if not self._discovered:
            await self._discover()
        name = self._where.get(pipeline_id)
        return None if name is None else SharedHandle(pipeline_id, name, self._actors[name])

    async def _discover(self) -> None:
        async with self._lock:
            if self._discovered:
                return
            named = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
            names = [n["name"] for n in named if n.get("namespace") == self._settings.namespace
                     and str(n.get("name", "")).startswith(HOST_PREFIX)]
            for name in names:
                try:
                    actor = await asyncio.to_thread(ray.get_actor, name, namespace=self._settings.namespace)
                    ids: list[str] = await actor.pipelines.remote()
                    self._nodes[name] = await actor.node.remote()
                except Exception as exc:  # noqa: BLE001 - a host that does not answer is not adopted
                    log.warning("shared hosts: not adopting %s: %s", name, exc)
                    continue
                self._actors[name] = actor
                self._members[name] = set(ids)
                self._where.update((pid, name) for pid in ids)
                self._next = max(self._next, _number(name) + 1)
            self._discovered = True

    async def start(self, spec: PipelineSpec) -> tuple[SharedHandle, dict[str, Any]]:
        """Start the pipeline in a host with room (a new one when all are full); its handle
        and first health. On failure the pipeline is taken out of the host again."""
        name, actor = await self._reserve(spec.id)
        try:
            async with timeout(self._settings.start_timeout_s):
                answer: dict[str, Any] = await actor.add.remote(spec.to_json_dict())
        except BaseException as exc:
            await self._release(spec.id, name, actor, dead=isinstance(exc, RayActorError))
            raise
        self._where[spec.id] = name
        self._learn(name, answer)
        return SharedHandle(spec.id, name, actor), answer

    def _learn(self, name: str, answer: dict[str, Any]) -> None:
        if isinstance(node := answer.get("node"), str) and node and name in self._actors:
            self._nodes[name] = node

    async def _reserve(self, pipeline_id: str) -> tuple[str, Any]:
        async with self._lock:
            rooms = [HostRoom(name, self._nodes.get(name), self._capacity - len(self._members.get(name, ())))
                     for name in sorted(self._actors, key=_number)]
            name, node = await self._place(pipeline_id, rooms)
            if name is None or name not in self._actors:
                name, actor = await self._create(node)
            self._members.setdefault(name, set()).add(pipeline_id)
            return name, self._actors[name]

    async def _create(self, node: str | None) -> tuple[str, Any]:
        while True:
            name = host_name(self._next)
            self._next += 1
            try:
                actor = launch_host(name, self._pipeline_settings, self._capacity, node)
            except ValueError:  # the name is taken (a host being killed, or not ours): the next
                continue
            self._actors[name] = actor
            self._nodes[name] = node
            log.info("shared hosts: created %s on node %s", name, node or "(any ingestor node)")
            return name, actor

    async def _release(self, pipeline_id: str, name: str, actor: Any, *, dead: bool, removed: bool = False) -> None:
        """The pipeline is no longer in host `name` (take it out unless `removed`); a host that
        died or is left empty goes."""
        if not dead and not removed:
            try:
                async with timeout(_STOP_TIMEOUT_S):
                    await actor.remove.remote(pipeline_id, False)
            except RayActorError:
                dead = True
            except Exception as exc:  # noqa: BLE001 - the host answers no more for it: drop it
                log.warning("shared hosts: removing %s from %s: %s", pipeline_id, name, exc)
        async with self._lock:
            if self._where.get(pipeline_id) == name:
                del self._where[pipeline_id]
            members = self._members.get(name, set())
            members.discard(pipeline_id)
            if self._actors.get(name) is not actor or not (dead or not members):
                return
            del self._actors[name]
            for pid in members:
                if self._where.get(pid) == name:
                    del self._where[pid]
            self._members.pop(name, None)
            self._nodes.pop(name, None)
        log.info("shared hosts: %s %s", name, "died" if dead else "is empty: stopping it")
        try:
            await asyncio.to_thread(_kill, actor)
        except Exception:  # noqa: BLE001 - already gone
            pass

    async def stop(self, handle: SharedHandle, *, graceful: bool) -> None:
        """Take the pipeline out of its host (flushing first when `graceful`). Never raises."""
        removed = False
        if graceful:
            try:
                async with timeout(_STOP_TIMEOUT_S):
                    await handle.actor.remove.remote(handle.pipeline_id, True)
                removed = True
            except RayActorError:
                await self._release(handle.pipeline_id, handle.host, handle.actor, dead=True)
                return
            except Exception as exc:  # noqa: BLE001 - it keeps its log; the next start replays it
                log.warning("shared hosts: graceful stop of %s failed: %s", handle.pipeline_id, exc)
        await self._release(handle.pipeline_id, handle.host, handle.actor, dead=False, removed=removed)

    async def health(self, handle: SharedHandle) -> dict[str, Any]:
        """The pipeline's health answer; sent with the others asked in the same moment, as one
        call to its host. Raises UnavailableError when the pipeline is not running there."""
        loop = asyncio.get_running_loop()
        batch = self._waiting.get(handle.host)
        if batch is None:
            batch = self._waiting[handle.host] = {}
            loop.call_soon(lambda: loop.create_task(self._ask(handle.host, handle.actor)))
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        batch.setdefault(handle.pipeline_id, []).append(future)
        return await future

    async def _ask(self, host: str, actor: Any) -> None:
        batch = self._waiting.pop(host, {})
        try:
            answers: dict[str, dict[str, Any] | str] = await actor.health_many.remote(list(batch))
        except Exception as exc:  # noqa: BLE001 - every pipeline asked gets the error
            for future in _futures(batch):
                if not future.done():
                    future.set_exception(exc)
            return
        for pipeline_id, futures in batch.items():
            answer = answers.get(pipeline_id, f"pipeline {pipeline_id} is not in {host}")
            for future in futures:
                if future.done():
                    continue
                if isinstance(answer, dict):
                    self._learn(host, answer)
                    future.set_result(answer)
                else:
                    future.set_exception(UnavailableError(answer))


async def _first_with_room(pipeline_id: str, hosts: list[HostRoom]) -> tuple[str | None, str | None]:
    return next((host.name for host in hosts if host.free > 0), None), None


def _kill(actor: Any) -> None:
    ray.kill(actor, no_restart=True)


def _futures(batch: dict[str, list[asyncio.Future[dict[str, Any]]]]) -> Iterator[asyncio.Future[dict[str, Any]]]:
    for futures in batch.values():
        yield from futures


def _number(name: str) -> int:
    try:
        return int(name.removeprefix(HOST_PREFIX))
    except ValueError:
        return 0
