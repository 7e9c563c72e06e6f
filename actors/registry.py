"""The registry: the one supervisor of every pipeline actor, and the keeper of the catalog.

A named, detached actor (`registry` in the platform's namespace) that Ray restarts when it
dies. It keeps specs, secrets and tokens in the catalog; starts one `pipeline:<id>` actor per
pipeline; checks their health; restarts a crashed one (one-for-one) with back-off, and after
too many restarts in a window marks it `failed` with its last error instead of looping. When
it restarts itself it rebuilds from the catalog and adopts the pipeline actors still alive.
The restart policy is plain Python (`dash_ray.supervision.policy`); this module wires it to Ray.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors.pipeline import actor_name, launch, pipeline_lake
from dash_ray.catalog import PipelineRecord, PipelineStatus, open_catalog
from dash_ray.errors import DashError, NotFoundError, SpecError
from dash_ray.mapping import compile_mapping
from dash_ray.auth.secretbox import SecretBox
from dash_ray.settings import Settings
from dash_ray.spec import PipelineSpec, parse_spec
from dash_ray.supervision.policy import RestartTracker
from dash_ray.auth.tokens import new_secret

__all__ = ["REGISTRY_NAME", "Registry", "get_or_create_registry"]

log = logging.getLogger(__name__)

REGISTRY_NAME = "registry"
_HEALTH_TIMEOUT_S = 5.0
_MISSED_HEALTH_LIMIT = 3


@dataclass
class _Supervised:
    """The registry's view of one pipeline."""

    spec: PipelineSpec
    tracker: RestartTracker
    status: PipelineStatus = "starting"
    last_error: str | None = None
    actor: Any = None
    missed: int = 0
    counters: dict[str, Any] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    restart_task: asyncio.Task[None] | None = None


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)
class Registry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        box = SecretBox.from_env_or_file(settings.secret_key, Path(settings.home) / "secret.key")
        self._catalog = open_catalog(settings.catalog_url, box=box)
        self._pipelines: dict[str, _Supervised] = {}
        self._booted = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._boot_task = loop.create_task(self._boot())
        self._monitor_task = loop.create_task(self._monitor())

    # -- boot and adoption -----------------------------------------------------------------

    async def _boot(self) -> None:
        records = await asyncio.to_thread(self._catalog.list_pipelines)
        for record in records:
            entry = _Supervised(record.spec, RestartTracker(self._settings.restart),
                                status=record.status, last_error=record.last_error)
            entry.tracker.total = record.restarts
            self._pipelines[record.id] = entry
        await asyncio.gather(*(self._adopt_or_start(pid) for pid, e in self._pipelines.items()
                               if e.status not in ("failed", "stopped")), return_exceptions=True)
        self._booted.set()

    async def _adopt_or_start(self, pipeline_id: str) -> None:
        entry = self._pipelines[pipeline_id]
        async with entry.lock:
            try:
                actor = await asyncio.to_thread(
                    ray.get_actor, actor_name(pipeline_id), namespace=self._settings.namespace)
            except ValueError:
                actor = None
            if actor is not None:
                try:
                    health = await asyncio.wait_for(actor.health.remote(), _HEALTH_TIMEOUT_S)
                except Exception:  # noqa: BLE001 - not healthy: replace it
                    await self._kill(actor)
                else:
                    entry.actor, entry.counters = actor, health["counters"]
                    await self._set_status(pipeline_id, "running", None)
                    log.info("registry: adopted pipeline %s", pipeline_id)
                    return
            await self._start_locked(pipeline_id)

    async def ready(self) -> bool:
        """Wait until the registry has adopted or started every pipeline."""
        await self._booted.wait()
        return True

    # -- supervision -----------------------------------------------------------------------

    async def _start_locked(self, pipeline_id: str) -> None:
        """Start the pipeline's actor; on failure hand it to the restart policy."""
        entry = self._pipelines[pipeline_id]
        actor = None
        try:
            actor = await self._create(entry.spec)
            entry.actor = actor
            health = await asyncio.wait_for(actor.start.remote(), self._settings.start_timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure to start is a crash
            if actor is not None:
                await self._kill(actor)
            entry.actor = None
            await self._crashed(pipeline_id, _error_text(exc))
            return
        entry.counters, entry.missed = health["counters"], 0
        await self._set_status(pipeline_id, "running", entry.last_error)

    async def _create(self, spec: PipelineSpec) -> Any:
        # The name of a just-killed actor may take a moment to be released.
        deadline = time.monotonic() + 10.0
        while True:
            try:
                return launch(spec, self._settings.pipeline())
            except ValueError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def _crashed(self, pipeline_id: str, error: str) -> None:
        entry = self._pipelines.get(pipeline_id)
        if entry is None:
            return
        decision = entry.tracker.on_failure(time.monotonic())
        log.warning("registry: pipeline %s crashed (%s): %s", pipeline_id, error, decision)
        if decision.action == "give_up":
            await self._set_status(pipeline_id, "failed", error)
            return
        await self._set_status(pipeline_id, "restarting", error)
        entry.restart_task = asyncio.get_running_loop().create_task(
            self._restart_later(pipeline_id, decision.delay_s))

    async def _restart_later(self, pipeline_id: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        entry = self._pipelines.get(pipeline_id)
        if entry is None or entry.status != "restarting":
            return
        async with entry.lock:
            await self._start_locked(pipeline_id)

    async def _monitor(self) -> None:
        await self._booted.wait()
        while True:
            await asyncio.sleep(self._settings.health_interval_s)
            running = [(pid, e) for pid, e in self._pipelines.items() if e.status == "running" and e.actor]
            await asyncio.gather(*(self._check(pid, e) for pid, e in running), return_exceptions=True)

    async def _check(self, pipeline_id: str, entry: _Supervised) -> None:
        if entry.lock.locked():
            return
        actor = entry.actor
        try:
            health = await asyncio.wait_for(actor.health.remote(), _HEALTH_TIMEOUT_S)
        except (asyncio.TimeoutError, GetTimeoutError):
            entry.missed += 1
            if entry.missed < _MISSED_HEALTH_LIMIT:
                return
            error = f"no health answer for {_MISSED_HEALTH_LIMIT * _HEALTH_TIMEOUT_S:.0f} s"
        except (RayActorError, DashError, Exception) as exc:  # noqa: BLE001 - any failure is a crash
            error = _error_text(exc)
        else:
            entry.counters, entry.missed = health["counters"], 0
            return
        if entry.actor is not actor or entry.status != "running":
            return  # replaced meanwhile
        async with entry.lock:
            await self._kill(actor)
            entry.actor = None
            await self._crashed(pipeline_id, error)

    async def _kill(self, actor: Any) -> None:
        try:
            await asyncio.to_thread(ray.kill, actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    async def _stop_actor(self, entry: _Supervised) -> None:
        if entry.restart_task is not None:
            entry.restart_task.cancel()
        actor, entry.actor = entry.actor, None
        if actor is None:
            return
        try:
            await asyncio.wait_for(actor.stop.remote(), 30.0)
        except Exception as exc:  # noqa: BLE001 - it keeps its log; the next start replays it
            log.warning("registry: graceful stop failed: %s", _error_text(exc))
        await self._kill(actor)

    async def _set_status(self, pipeline_id: str, status: PipelineStatus, error: str | None) -> None:
        entry = self._pipelines.get(pipeline_id)
        if entry is None:
            return
        entry.status, entry.last_error = status, error
        try:
            await asyncio.to_thread(self._catalog.set_state, pipeline_id, status=status,
                                    restarts=entry.tracker.total, last_error=error)
        except NotFoundError:
            pass  # deleted meanwhile

    # -- the admin API ---------------------------------------------------------------------

    async def put(self, spec_data: dict[str, Any]) -> dict[str, Any]:
        """Create (with a new ingest secret, shown once) or update a pipeline and (re)start it.
        Raises SpecError listing every problem."""
        await self._booted.wait()
        spec = parse_spec(spec_data)
        compile_mapping(spec.mapping)  # SpecError with paths and positions
        entry = self._pipelines.get(spec.id)
        created = entry is None
        secret = new_secret() if created else None
        await asyncio.to_thread(self._catalog.put_pipeline, spec, secret=secret)
        if entry is None:
            entry = self._pipelines[spec.id] = _Supervised(spec, RestartTracker(self._settings.restart))
        async with entry.lock:
            await self._stop_actor(entry)
            entry.spec = spec
            entry.tracker.reset()
            await self._set_status(spec.id, "starting", None)
            await self._start_locked(spec.id)
        view = await self.get(spec.id)
        view["created"] = created
        if secret is not None:
            view["ingest_secret"] = secret
        return view

    async def get(self, pipeline_id: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self._catalog.get_pipeline, pipeline_id)
        if record is None:
            raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)
        return self._view(record)

    async def list(self) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(self._catalog.list_pipelines)
        return [self._view(r) for r in records]

    def _view(self, record: PipelineRecord) -> dict[str, Any]:
        entry = self._pipelines.get(record.id)
        return {
            "id": record.id,
            "status": entry.status if entry else record.status,
            "restarts": entry.tracker.total if entry else record.restarts,
            "last_error": entry.last_error if entry else record.last_error,
            "version": record.version,
            "counters": dict(entry.counters) if entry else {},
            "spec": record.spec.to_json_dict(),
            "created_at": record.created_at.isoformat(),
            "updated_at": record.updated_at.isoformat(),
        }

    async def delete(self, pipeline_id: str, purge: bool = False) -> None:
        """Stop the pipeline and forget it; its data stays unless `purge`."""
        await self._booted.wait()
        entry = self._pipelines.get(pipeline_id)
        if entry is None:
            raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)
        async with entry.lock:
            await self._stop_actor(entry)
            self._pipelines.pop(pipeline_id, None)
            await asyncio.to_thread(self._catalog.delete_pipeline, pipeline_id)
        if purge:
            lake = pipeline_lake(entry.spec, self._settings.pipeline())
            await asyncio.to_thread(lake.purge, pipeline_id)
            await asyncio.to_thread(shutil.rmtree, self._settings.wal_dir(pipeline_id), True)

    async def restart(self, pipeline_id: str) -> dict[str, Any]:
        """Restart a pipeline by hand (also brings back a `failed` one)."""
        entry = self._pipelines.get(pipeline_id)
        if entry is None:
            raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)
        async with entry.lock:
            await self._stop_actor(entry)
            entry.tracker.reset()
            await self._set_status(pipeline_id, "starting", None)
            await self._start_locked(pipeline_id)
        return await self.get(pipeline_id)

    async def rotate_secret(self, pipeline_id: str, grace_s: float) -> str:
        secret = new_secret()
        await asyncio.to_thread(self._catalog.rotate_secret, pipeline_id, secret, grace_seconds=grace_s,
                                now=dt.datetime.now(dt.timezone.utc))
        return secret

    async def ingest_info(self, pipeline_id: str) -> tuple[dict[str, Any], tuple[str, ...], str]:
        """What an ingress needs to take a pipeline's requests: spec, valid secrets, status."""
        record = await asyncio.to_thread(self._catalog.get_pipeline, pipeline_id)
        if record is None:
            raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)
        entry = self._pipelines.get(pipeline_id)
        status = entry.status if entry else record.status
        return record.spec.to_json_dict(), record.valid_secrets(dt.datetime.now(dt.timezone.utc)), status

    async def check_token(self, token: str) -> str | None:
        info = await asyncio.to_thread(self._catalog.check_token, token)
        return None if info is None else info.scope

    async def create_token(self, scope: str, name: str) -> dict[str, Any]:
        try:
            token_id, token = await asyncio.to_thread(self._catalog.create_token, scope, name=name)  # type: ignore[arg-type]
        except ValueError as exc:
            raise SpecError(str(exc), where="scope") from None
        return {"id": token_id, "token": token, "scope": scope, "name": name}

    async def revoke_token(self, token_id: str) -> None:
        if not await asyncio.to_thread(self._catalog.revoke_token, token_id):
            raise NotFoundError(f"no token {token_id!r}", where=token_id)

    async def shutdown(self) -> None:
        """Stop every pipeline gracefully (flushing to the lake); for `dash-ray down`."""
        self._monitor_task.cancel()
        await asyncio.gather(*(self._stop_entry(e) for e in self._pipelines.values()), return_exceptions=True)
        self._catalog.close()

    async def _stop_entry(self, entry: _Supervised) -> None:
        async with entry.lock:
            await self._stop_actor(entry)


def get_or_create_registry(settings: Settings) -> Any:
    """The platform's registry actor, created when there is none."""
    return Registry.options(
        name=REGISTRY_NAME, namespace=settings.namespace, lifetime="detached", get_if_exists=True,
    ).remote(settings)

