"""How the supervisor keeps each pipeline going: its state in memory (`Supervised`), one lock
per pipeline, and `Watch`, which starts, health-checks, adopts, stops and restarts pipelines
one-for-one under the restart policy and writes their states to the catalog.

A crash is handled first and written to the catalog after: a restart is scheduled whatever
the catalog does, and a state the catalog could not take stays marked and is written by a
later health round. Every method that changes a pipeline runs with its lock held.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from dash_ray.catalog import Catalog, PipelineRecord, PipelineStatus
from dash_ray.errors import NotFoundError, UnavailableError
from dash_ray.settings import RestartPolicy
from dash_ray.spec import PipelineSpec
from dash_ray.supervision.clock import Clock
from dash_ray.supervision.policy import RestartTracker
from dash_ray.supervision.runtime import Health, Runtime
from dash_ray.timeouts import timeout

__all__ = ["Locks", "Supervised", "Watch", "error_text", "log_failures"]

log = logging.getLogger(__name__)


@dataclass
class Supervised:
    """The supervisor's memory of one pipeline."""

    spec: PipelineSpec
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    tracker: RestartTracker
    status: PipelineStatus = "starting"
    last_error: str | None = None
    handle: Any = None
    health: Health | None = None
    health_at: dt.datetime | None = None
    missed: int = 0
    restart_task: asyncio.Task[None] | None = None
    next_restart_at: dt.datetime | None = None
    unrecorded: bool = False  # its state is not in the catalog yet

    @classmethod
    def from_record(cls, record: PipelineRecord, policy: RestartPolicy) -> Supervised:
        # The catalog does not say whether a `restarting` pipeline ever ran; assuming it did
        # keeps retrying it (with back-off) rather than leaving its log unflushed for good.
        ran = record.status in ("running", "restarting")
        tracker = RestartTracker(policy, total=record.restarts, ran=ran)
        return cls(record.spec, record.version, record.created_at, record.updated_at, tracker,
                   status=record.status, last_error=record.last_error)


class Locks:
    """One lock per pipeline id, kept while anyone holds or awaits it, so a pipeline deleted
    and created again still waits for what is being done to its former self."""

    def __init__(self) -> None:
        self._slots: dict[str, list[Any]] = {}  # id -> [lock, users]

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        slot = self._slots.setdefault(key, [asyncio.Lock(), 0])
        slot[1] += 1
        try:
            async with slot[0]:
                yield
        finally:
            slot[1] -= 1
            if not slot[1]:
                del self._slots[key]

    def busy(self, key: str) -> bool:
        return key in self._slots


def error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # a remote error (Ray's RayTaskError) carries its cause
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]


def log_failures(what: str, ids: list[str], results: list[Any]) -> None:
    for pipeline_id, result in zip(ids, results, strict=True):
        if isinstance(result, BaseException):
            log.error("supervisor: %s of pipeline %s failed: %s", what, pipeline_id, error_text(result),
                      exc_info=result)


class Watch:
    """Starts, checks and restarts the pipelines in `pipelines` (shared with the Supervisor)."""

    def __init__(self, runtime: Runtime[Any], catalog: Callable[[], Catalog], *, clock: Clock,
                 health_timeout_s: float, missed_health_limit: int) -> None:
        self.runtime = runtime
        self.pipelines: dict[str, Supervised] = {}
        self.locks = Locks()
        self._catalog = catalog
        self._clock = clock
        self.health_timeout_s = health_timeout_s
        self._missed_limit = missed_health_limit

    async def health(self, handle: Any, timeout_s: float | None = None) -> Health:
        """The runtime's health answer, waited for at most `timeout_s` (default: the health
        rounds' timeout); asyncio.TimeoutError past it."""
        async with timeout(timeout_s or self.health_timeout_s):
            return await self.runtime.health(handle)

    async def check(self) -> None:
        """One health round: ask every running pipeline for its health (one that fails,
        answers anything but `running`, or misses `missed_health_limit` answers in a row
        crashed), and write to the catalog the states it could not take before."""
        behind = [pid for pid, e in self.pipelines.items() if e.unrecorded]
        due = [pid for pid, e in self.pipelines.items()
               if e.status == "running" and e.handle is not None and not self.locks.busy(pid)]
        results = await asyncio.gather(*(self._rerecord(pid) for pid in behind),
                                       *(self._check_one(pid, self.pipelines[pid]) for pid in due),
                                       return_exceptions=True)
        log_failures("state write", behind, results[:len(behind)])
        log_failures("health check", due, results[len(behind):])

    async def _rerecord(self, pipeline_id: str) -> None:
        async with self.locks.hold(pipeline_id):
            entry = self.pipelines.get(pipeline_id)
            if entry is not None and entry.unrecorded:
                await self.record(pipeline_id, entry)

    async def _check_one(self, pipeline_id: str, entry: Supervised) -> None:
        handle = entry.handle
        try:
            health = await self.health(handle)
        except asyncio.TimeoutError:
            entry.missed += 1
            if entry.missed < self._missed_limit:
                return
            error = f"no health answer for {self._missed_limit * self.health_timeout_s:.0f} s"
        except Exception as exc:  # noqa: BLE001 - any failure is a crash
            error = error_text(exc)
        else:
            if health.running:
                if entry.handle is handle:
                    self.healthy(entry, health)
                return
            error = f"pipeline {pipeline_id} is {health.state}, not running"
        async with self.locks.hold(pipeline_id):
            if self.pipelines.get(pipeline_id) is not entry or entry.handle is not handle \
                    or entry.status != "running":
                return  # replaced or changed meanwhile
            await self.stop(pipeline_id, entry, graceful=False)
            await self._crashed(pipeline_id, entry, error)

    async def adopt_or_start(self, pipeline_id: str, entry: Supervised) -> None:
        """At boot: adopt the pipeline's live process when its health passes (it answers, and
        `running`); otherwise kill it (a process that was stopped, closed or failed can never
        take ingest again) and start a new one."""
        async with self.locks.hold(pipeline_id):
            try:
                handle = await self.runtime.find(pipeline_id)
            except Exception as exc:  # noqa: BLE001 - start one; the runtime reports a clash
                log.warning("supervisor: cannot look for pipeline %s: %s", pipeline_id, error_text(exc))
                handle = None
            if handle is not None:
                try:
                    health = await self.health(handle)
                    if not health.running:
                        raise UnavailableError(f"it is {health.state}")
                except Exception as exc:  # noqa: BLE001 - not healthy: replace it
                    log.warning("supervisor: not adopting pipeline %s (%s); replacing it",
                                pipeline_id, error_text(exc))
                    await self._stop_handle(pipeline_id, handle, graceful=False)
                else:
                    entry.handle, entry.status = handle, "running"
                    self.healthy(entry, health)
                    entry.tracker.on_running(self._clock.monotonic())
                    await self.record(pipeline_id, entry)
                    log.info("supervisor: adopted pipeline %s", pipeline_id)
                    return
            await self.start(pipeline_id, entry)

    async def start(self, pipeline_id: str, entry: Supervised) -> None:
        """Start the pipeline (its lock held); a failure goes to the restart policy."""
        try:
            handle, health = await self.runtime.start(entry.spec)
        except Exception as exc:  # noqa: BLE001 - any failure to start is a crash
            await self._crashed(pipeline_id, entry, error_text(exc))
            return
        if not health.running:
            await self._stop_handle(pipeline_id, handle, graceful=False)
            await self._crashed(pipeline_id, entry, f"pipeline {pipeline_id} started {health.state}")
            return
        entry.handle, entry.status, entry.next_restart_at = handle, "running", None
        self.healthy(entry, health)
        entry.tracker.on_running(self._clock.monotonic())
        await self.record(pipeline_id, entry)

    async def _crashed(self, pipeline_id: str, entry: Supervised, error: str) -> None:
        """Apply the restart policy (its lock held, its process already gone)."""
        decision = entry.tracker.on_failure(self._clock.monotonic())
        log.warning("supervisor: pipeline %s crashed (%s); %s", pipeline_id, error, decision)
        entry.last_error = error
        if decision.action == "give_up":
            entry.status, entry.next_restart_at = "failed", None
        else:
            entry.status = "restarting"
            entry.next_restart_at = self._clock.now() + dt.timedelta(seconds=decision.delay_s)
            # Scheduled before the state is written: whatever the catalog does, it restarts.
            entry.restart_task = asyncio.get_running_loop().create_task(
                self._restart_later(pipeline_id, entry, decision.delay_s))
        await self.record(pipeline_id, entry)

    async def _restart_later(self, pipeline_id: str, entry: Supervised, delay_s: float) -> None:
        await self._clock.sleep(delay_s)
        try:
            async with self.locks.hold(pipeline_id):
                if self.pipelines.get(pipeline_id) is not entry or entry.status != "restarting" \
                        or entry.restart_task is not asyncio.current_task():
                    return
                entry.restart_task = None
                await self.start(pipeline_id, entry)
        except Exception:  # a task's error would otherwise go unseen
            log.exception("supervisor: restart of pipeline %s failed", pipeline_id)

    async def stop(self, pipeline_id: str, entry: Supervised, *, graceful: bool) -> None:
        """End what runs for the pipeline (its lock held): a scheduled restart, its process."""
        task, entry.restart_task = entry.restart_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        handle, entry.handle = entry.handle, None
        if handle is not None:
            await self._stop_handle(pipeline_id, handle, graceful=graceful)

    async def _stop_handle(self, pipeline_id: str, handle: Any, *, graceful: bool) -> None:
        try:
            await self.runtime.stop(handle, graceful=graceful)
        except Exception as exc:  # noqa: BLE001 - its log keeps the records; the next start replays
            log.warning("supervisor: stopping pipeline %s: %s", pipeline_id, error_text(exc))

    def healthy(self, entry: Supervised, health: Health) -> None:
        entry.health, entry.health_at, entry.missed = health, self._clock.now(), 0

    async def record(self, pipeline_id: str, entry: Supervised) -> None:
        """Write the pipeline's state to the catalog; never raises. A state the catalog
        cannot take now is written by a later health round."""
        try:
            await asyncio.to_thread(self._catalog().set_state, pipeline_id, status=entry.status,
                                    restarts=entry.tracker.total, last_error=entry.last_error)
        except NotFoundError:
            entry.unrecorded = False  # deleted meanwhile
        except Exception as exc:  # noqa: BLE001 - kept in memory, written later
            entry.unrecorded = True
            log.warning("supervisor: state %s of pipeline %s is not in the catalog yet: %s",
                        entry.status, pipeline_id, error_text(exc))
        else:
            entry.unrecorded = False
