"""The supervisor of every pipeline, in plain Python over a `Runtime` (Ray in production) and
the catalog: it boots from the catalog (adopting what still runs and is healthy, replacing
what is not, starting the rest), serves the admin calls (put, get, list, delete with purge,
restart by hand), runs the health rounds and shuts everything down. How each pipeline is
started, checked and restarted is `watch.py`; when it is restarted, `policy.py`.

Each pipeline moves through

    starting ─▶ running ─crash─▶ restarting ─▶ running
        │                            │
        └──── start fails ───────────┴─ gives up ─▶ failed     (shutdown: stopped)

`failed` is left only by a PUT of a changed spec or a restart by hand. Everything done to one
pipeline (put, delete with its purge, restart, a crash, a scheduled restart) holds that
pipeline's lock, so none of them interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dash_ray.auth.tokens import new_secret
from dash_ray.catalog import Catalog, PipelineStatus
from dash_ray.errors import NotFoundError, OperatorError, Problem, SpecError, UnavailableError
from dash_ray.lake_roots import LakeRoots
from dash_ray.settings import RestartPolicy
from dash_ray.sources.follow import check_no_cycle
from dash_ray.spec import PipelineSpec, secret_refs
from dash_ray.spec_check import admit_spec
from dash_ray.supervision.clock import Clock, SystemClock
from dash_ray.supervision.runtime import Runtime
from dash_ray.supervision.view import Deployed, PipelineView
from dash_ray.supervision.watch import Supervised, Watch, error_text, log_failures
from dash_ray.timeouts import timeout

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)


def _same(a: PipelineSpec, b: PipelineSpec) -> bool:
    # Order-sensitive on purpose: the order of a mapping's fields is part of the spec.
    return json.dumps(a.to_json_dict()) == json.dumps(b.to_json_dict())


class Supervisor:
    """Supervises every pipeline of one catalog. Use `start()` (boot, then health rounds every
    `health_interval_s`) inside a running event loop, and `shutdown()` at the end."""

    def __init__(
        self,
        open_catalog: Callable[[], Catalog],
        runtime: Runtime[Any],
        *,
        policy: RestartPolicy | None = None,
        lake_roots: LakeRoots | None = None,
        purge: Callable[[PipelineSpec, Catalog], Awaitable[None]] | None = None,
        has_database: bool = False,
        clock: Clock | None = None,
        health_interval_s: float = 1.0,
        health_timeout_s: float = 5.0,
        missed_health_limit: int = 3,
        fresh_health_timeout_s: float = 1.0,
        boot_backoff_s: float = 0.5,
        max_boot_backoff_s: float = 30.0,
        make_secret: Callable[[], str] = new_secret,
    ) -> None:
        self._open_catalog = open_catalog
        self._policy = policy or RestartPolicy()
        self._lake_roots = lake_roots
        self._purge = purge
        self._has_database = has_database
        self._clock: Clock = clock or SystemClock()
        self._health_interval_s = health_interval_s
        self._watch = Watch(runtime, lambda: self.catalog, clock=self._clock, health_timeout_s=health_timeout_s,
                            missed_health_limit=missed_health_limit)
        self._pipelines = self._watch.pipelines
        self._locks = self._watch.locks
        self._fresh_timeout_s = fresh_health_timeout_s
        self._boot_backoff_s = (boot_backoff_s, max_boot_backoff_s)
        self._make_secret = make_secret
        self._catalog: Catalog | None = None
        self._booted = asyncio.Event()
        self._boot_error: BaseException | None = None
        self._boot_attempts = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Boot and then watch, in a task of the running loop."""
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        await self.boot()
        while not self._closed:
            await self._clock.sleep(self._health_interval_s)
            try:
                await self.check()
            except Exception:  # the watch must go on
                log.exception("supervisor: health round failed")

    async def boot(self) -> None:
        """Open the catalog, load every pipeline, adopt each live one whose health passes,
        replace the others and start the rest. While the catalog cannot be opened or read
        this tries again with back-off (doubling to a cap), and `ready()` and the admin calls
        raise UnavailableError saying why."""
        delay, cap = self._boot_backoff_s
        while not self._closed:
            self._boot_attempts += 1
            try:
                await self._boot_once()
                return
            except Exception as exc:  # noqa: BLE001 - reported by ready(), tried again
                self._boot_error = exc
                log.error("supervisor: boot attempt %d failed, trying again in %.1f s: %s",
                          self._boot_attempts, delay, error_text(exc))
            await self._clock.sleep(delay)
            delay = min(delay * 2, cap)

    async def _boot_once(self) -> None:
        if self._catalog is None:
            self._catalog = await asyncio.to_thread(self._open_catalog)
        records = await asyncio.to_thread(self._catalog.list_pipelines)
        self._pipelines.clear()
        self._pipelines.update((r.id, Supervised.from_record(r, self._policy)) for r in records)
        live = [pid for pid, e in self._pipelines.items() if e.status not in ("failed", "stopped")]
        results = await asyncio.gather(*(self._watch.adopt_or_start(pid, self._pipelines[pid]) for pid in live),
                                       return_exceptions=True)
        log_failures("adoption", live, results)
        self._boot_error = None
        self._booted.set()
        log.info("supervisor: booted with %d pipeline(s), %d live", len(records), len(live))

    async def ready(self, wait_s: float = 0.0) -> None:
        """Return once booted (waiting up to `wait_s`); else raise UnavailableError saying
        why, or the boot's OperatorError itself (a wrong key: retrying will not help)."""
        if not self._booted.is_set() and wait_s > 0 and not self._closed:
            with contextlib.suppress(asyncio.TimeoutError):
                async with timeout(wait_s):
                    await self._booted.wait()
        self._require_booted()

    def _require_booted(self) -> None:
        if self._closed:
            raise UnavailableError("the registry is shutting down", retry_after=5.0)
        if self._booted.is_set():
            return
        error = self._boot_error
        if isinstance(error, OperatorError):
            raise error
        reason = (f"cannot boot: {error_text(error)} (attempt {self._boot_attempts}; trying again)"
                  if error is not None else "adopting and starting the pipelines")
        raise UnavailableError(f"the registry is not ready: {reason}", retry_after=2.0)

    @property
    def catalog(self) -> Catalog:
        """The open catalog; UnavailableError before it could be opened."""
        if self._catalog is None:
            self._require_booted()
            raise UnavailableError("the catalog is not open", retry_after=2.0)
        return self._catalog

    async def shutdown(self) -> None:
        """Stop every pipeline gracefully (each flushes what it can; the rest stays in its
        log) and close the catalog. Their states in the catalog are left as they were, so the
        next boot starts the same pipelines again. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            [ended] = await asyncio.gather(self._task, return_exceptions=True)
            if isinstance(ended, BaseException) and not isinstance(ended, asyncio.CancelledError):
                log.error("supervisor: the watch had failed: %s", error_text(ended), exc_info=ended)
        ids = list(self._pipelines)
        results = await asyncio.gather(*(self._shut(pid, self._pipelines[pid]) for pid in ids),
                                       return_exceptions=True)
        log_failures("shutdown", ids, results)
        if self._catalog is not None:
            await asyncio.to_thread(self._catalog.close)

    async def _shut(self, pipeline_id: str, entry: Supervised) -> None:
        async with self._locks.hold(pipeline_id):
            await self._watch.stop(pipeline_id, entry, graceful=True)
            entry.status = "stopped"

    # -- the admin calls -------------------------------------------------------------------

    async def put(self, spec_data: dict[str, Any]) -> Deployed:
        """Create a pipeline (with a new ingest secret, returned this once) or update it,
        then (re)start it; returns once it runs or its start failed (then it is
        `restarting`). Calls for one id are served one at a time, so of concurrent creators
        exactly one creates. An identical spec (same JSON, same key order) changes nothing,
        not even a `failed` status (restart by hand for that).
        Raises SpecError naming every problem, UnavailableError when not ready or when the
        catalog cannot be reached (then nothing changed)."""
        self._require_booted()
        pipeline_id = spec_data.get("id") if isinstance(spec_data, dict) else None
        if not isinstance(pipeline_id, str):  # no id to hold a lock on: refused with every problem
            admit_spec(spec_data, has_database=self._has_database)
            raise AssertionError("a spec without an id was admitted")
        async with self._locks.hold(pipeline_id):
            self._require_booted()
            entry = self._pipelines.get(pipeline_id)
            others = [e.spec.storage.lake for pid, e in self._pipelines.items()
                      if pid != pipeline_id and e.spec.storage.lake]
            spec = admit_spec(spec_data, has_database=self._has_database, current=entry.spec if entry else None,
                              lake_roots=self._lake_roots, other_lakes=others)
            check_no_cycle(spec, {pid: e.spec for pid, e in self._pipelines.items()})
            if entry is not None and entry.status != "stopped" and _same(entry.spec, spec):
                return Deployed(self._view(spec.id, entry), created=False)
            await self._check_secrets(spec)
            secret: str | None = None
            record = None
            if entry is None:
                secret = self._make_secret()
                record = await asyncio.to_thread(self.catalog.create_pipeline, spec, secret=secret)
                if record is None:
                    secret = None  # another writer of the catalog created it meanwhile
            if record is None:
                record = await asyncio.to_thread(self.catalog.put_pipeline, spec, secret=None)
            if entry is None:
                entry = self._pipelines[spec.id] = Supervised.from_record(record, self._policy)
            else:
                await self._watch.stop(spec.id, entry, graceful=True)
                entry.version, entry.updated_at = record.version, record.updated_at
                entry.tracker.reset()
            entry.spec = spec
            entry.status, entry.last_error, entry.missed = "starting", None, 0
            await self._watch.record(spec.id, entry)
            await self._watch.start(spec.id, entry)
            return Deployed(self._view(spec.id, entry), created=secret is not None, ingest_secret=secret)

    async def _check_secrets(self, spec: PipelineSpec) -> None:
        """SpecError naming each `{"secret": name}` of `spec` that names no secret."""
        refs = secret_refs(spec)
        if not refs:
            return
        have = await asyncio.to_thread(self.catalog.secrets.names)
        problems = [Problem(path, f"no secret named {name!r}; put it first (PUT /v1/secrets/{name}, "
                                  f"dash-ray secrets set {name})")
                    for path, name in refs if name not in have]
        if problems:
            raise SpecError(problems=problems)

    async def get(self, pipeline_id: str, *, fresh: bool = True) -> PipelineView:
        """The pipeline's view. With `fresh`, a running pipeline is asked for its counters
        now (waiting at most `fresh_health_timeout_s`); when it does not answer in time the
        last known ones are given, `counters_at` saying from when."""
        self._require_booted()
        entry = self._entry(pipeline_id)
        handle = entry.handle
        if fresh and entry.status == "running" and handle is not None:
            try:
                health = await self._watch.health(handle, self._fresh_timeout_s)
            except Exception as exc:  # noqa: BLE001 - the health rounds judge crashes
                log.debug("supervisor: no fresh health of %s: %s", pipeline_id, error_text(exc))
            else:
                if health.running and entry.handle is handle:
                    self._watch.healthy(entry, health)
        return self._view(pipeline_id, entry)

    async def list(self) -> list[PipelineView]:
        """Every pipeline by id, counters as of the last health round."""
        self._require_booted()
        return [self._view(pid, self._pipelines[pid]) for pid in sorted(self._pipelines)]

    def specs(self) -> dict[str, PipelineSpec]:
        """Every pipeline's spec by id (what a dashboard's widgets are checked against)."""
        self._require_booted()
        return {pid: entry.spec for pid, entry in self._pipelines.items()}

    def status(self, pipeline_id: str) -> PipelineStatus | None:
        entry = self._pipelines.get(pipeline_id)
        return None if entry is None else entry.status

    async def delete(self, pipeline_id: str, *, purge: bool = False) -> None:
        """Stop the pipeline gracefully and forget it. Its stored data (lake, log) stays
        unless `purge`; a purge runs under the pipeline's lock, before the catalog forgets it,
        so a PUT of the same id waits for it, and a failed purge can be retried."""
        self._require_booted()
        async with self._locks.hold(pipeline_id):
            entry = self._entry(pipeline_id)
            await self._watch.stop(pipeline_id, entry, graceful=True)
            entry.status = "stopped"
            if purge and self._purge is not None:
                await self._purge(entry.spec, self.catalog)
            await asyncio.to_thread(self.catalog.delete_pipeline, pipeline_id)
            del self._pipelines[pipeline_id]

    async def restart(self, pipeline_id: str) -> PipelineView:
        """Restart the pipeline by hand (also brings back a `failed` one): a graceful stop,
        then a start with the restart history's window forgotten."""
        self._require_booted()
        async with self._locks.hold(pipeline_id):
            entry = self._entry(pipeline_id)
            await self._watch.stop(pipeline_id, entry, graceful=True)
            entry.tracker.reset()
            entry.status, entry.last_error, entry.missed = "starting", None, 0
            await self._watch.record(pipeline_id, entry)
            await self._watch.start(pipeline_id, entry)
            return self._view(pipeline_id, entry)

    def _entry(self, pipeline_id: str) -> Supervised:
        entry = self._pipelines.get(pipeline_id)
        if entry is None:
            raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)
        return entry

    def _view(self, pipeline_id: str, entry: Supervised) -> PipelineView:
        health = entry.health
        return PipelineView(
            id=pipeline_id, status=entry.status, restarts=entry.tracker.total, last_error=entry.last_error,
            version=entry.version, spec=entry.spec, counters=dict(health.counters) if health else {},
            counters_at=entry.health_at, waiting_in_log=health.waiting_in_log if health else 0,
            next_restart_at=entry.next_restart_at if entry.status == "restarting" else None,
            source_state=dict(health.source_state) if health and health.source_state is not None else None,
            created_at=entry.created_at, updated_at=entry.updated_at,
            node=health.node if health and entry.status == "running" else None,
            host=health.host if health and entry.status == "running" else None)

    # -- the watch -------------------------------------------------------------------------

    async def check(self) -> None:
        """One health round (see `Watch.check`); nothing before the boot or after shutdown."""
        if self._booted.is_set() and not self._closed:
            await self._watch.check()
