"""The background upkeep of one pipeline's lake: every `compaction.interval_s`, in a thread,
one pass at a time: the rollups of plans the spec no longer has deleted, retention, compaction,
then retention in the secondary silver stores (PostgreSQL) with the same cutoff. A failing
pass is logged and tried again at the next interval; it never touches what is not yet stored,
so it can neither slow nor endanger ingest. Replays take the same lock, so a pass and a
replay never interleave."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dash_ray.lake import Lake
from dash_ray.lifecycle.compaction import compact
from dash_ray.lifecycle.retention import apply_retention, cutoff, drop_unplanned_rollups
from dash_ray.silver.rollup import RollupPlan
from dash_ray.spec import StorageSpec

__all__ = ["Maintenance", "MaintenanceStats"]

log = logging.getLogger(__name__)


class Expiring(Protocol):
    """A secondary silver store that applies retention itself (`PostgresSilver.expire`)."""

    def expire(self, keep_from: dt.date) -> int: ...


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


@dataclass
class MaintenanceStats:
    passes: int = 0
    compacted_files: int = 0
    expired_files: int = 0
    expired_rows: int = 0  # in secondary stores
    dropped_rollups: int = 0  # the pipeline's folders in rollup areas of plans it no longer has
    last_error: str | None = None


class Maintenance:
    """Runs retention and compaction for one pipeline until `close`."""

    def __init__(self, lake: Lake, pipeline_id: str, storage: StorageSpec, plan: RollupPlan | None, *,
                 stored_seq: Callable[[], int], today: Callable[[], dt.date] = _utc_today,
                 secondaries: Callable[[], Sequence[Expiring]] = tuple) -> None:
        self.lake = lake
        self.pipeline_id = pipeline_id
        self.storage = storage
        self.plan = plan
        self.stats = MaintenanceStats()
        self.lock = asyncio.Lock()
        self._stored_seq = stored_seq
        self._today = today
        self._secondaries = secondaries
        self._task: asyncio.Task[None] | None = None
        self._current: asyncio.Future[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.storage.compaction.interval_s)
            try:
                await self.run_once()
            except Exception as exc:  # noqa: BLE001 - the next interval tries again
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("pipeline %s: lake upkeep failed, retrying in %.0f s: %s", self.pipeline_id,
                            self.storage.compaction.interval_s, self.stats.last_error)

    async def run_once(self) -> None:
        """One retention and compaction pass (also for tests and on demand)."""
        async with self.lock:
            # Shielded: a pass in its thread cannot be stopped halfway, so `close` waits for it.
            self._current = asyncio.ensure_future(asyncio.to_thread(self._pass, self._stored_seq()))
            await asyncio.shield(self._current)

    def _pass(self, stored_seq: int) -> None:
        self.stats.dropped_rollups += drop_unplanned_rollups(self.lake, self.pipeline_id, self.plan)
        expired = apply_retention(self.lake, self.pipeline_id, self.storage.retention, today=self._today())
        self.stats.expired_files += expired.removed
        if self.storage.compaction.enabled:
            report = compact(self.lake, self.pipeline_id, stored_seq=stored_seq, plan=self.plan,
                             target_bytes=self.storage.compaction.target_bytes,
                             min_files=self.storage.compaction.min_files)
            self.stats.compacted_files += report.files_in
        silver_days = self.storage.retention.silver_days
        if silver_days is not None:
            # The same cutoff in the stores that follow the lake (PostgreSQL). Last: a store
            # that is down fails this pass after the lake's upkeep is done.
            keep_from = cutoff(silver_days, self._today())
            for store in self._secondaries():
                self.stats.expired_rows += store.expire(keep_from)
        self.stats.passes += 1
        self.stats.last_error = None

    async def close(self) -> None:
        """Stop after the pass running now, if any. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._current is not None:
            await asyncio.gather(self._current, return_exceptions=True)
