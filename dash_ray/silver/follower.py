"""Keeping a secondary silver store (PostgreSQL) caught up with what the pipeline has stored
in the lake, off the ingest path: `SilverFollower`.

The lake's silver is the source of truth and is always written by the commit step; the
follower copies it on. After each successful commit the pipeline offers the stored range
(`offer`, which never blocks and never fails); the follower writes ranges in seq order in its
own asyncio task, the store's blocking calls in a thread. Guarantees:

- Nothing lost, nothing doubled: the store's writes are idempotent by range and its progress
  (`stored_seq()`) is durable in the same transaction as the rows, so whatever the follower
  forgets (a restart, a crash, a dropped queue), it finds again by reading the lake's silver
  files after the store's own stored seq ("catching up"), and anything written twice is
  replaced, not added.
- Only ranges the lake has marked stored are written: offers come after the commit, and a
  catch-up reads no further than the last range offered (or the lake's stored seq at start).
- While the store is down or refusing, each attempt is retried with capped exponential
  back-off and jitter; ingest never waits for it.
- The queue of offered ranges is bounded in bytes (`max_queue_bytes`). On overflow the queued
  rows are dropped and the follower catches up from the lake instead.
Not guaranteed: how far behind the store is at any moment (see `counters()`); after `close`,
ranges not yet written are written by the next follower's catch-up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.lake import Lake, LakeFile
from dash_ray.silver.base import FollowingStore
from dash_ray.timeouts import timeout

__all__ = ["Chunk", "SilverFollower", "catch_up_chunks"]

log = logging.getLogger(__name__)

State = Literal["new", "running", "closing", "closed"]
_EMPTY = pa.schema([pa.field("seq", pa.int64()), pa.field("time", pa.timestamp("us", tz="UTC"))]).empty_table()


@dataclass(frozen=True)
class _Range:
    rows: pa.Table | None
    first_seq: int
    last_seq: int
    nbytes: int


@dataclass(frozen=True)
class Chunk:
    """One write of a catch-up: the lake files holding the rows of `first_seq..last_seq`."""

    first_seq: int
    last_seq: int
    files: tuple[LakeFile, ...]


def catch_up_chunks(files: list[LakeFile], *, after: int, through: int, max_files: int) -> list[Chunk]:
    """Split the seq range `after+1..through` into writes of about `max_files` silver files
    each. A chunk ends only where no file spans its end, so each write holds every row of its
    range (a range's rows may lie in several files, one per event day); seqs in no file
    (records that were all dead or filtered) fall into the chunk around them. The last chunk
    ends at `through` even when it has no file, so the store's progress reaches it."""
    if through <= after:
        return []
    wanted = sorted((f for f in files if f.last_seq > after and f.first_seq <= through),
                    key=lambda f: (f.first_seq, f.last_seq))
    chunks: list[Chunk] = []
    start, group, reach = after + 1, [], after
    for i, f in enumerate(wanted):
        group.append(f)
        reach = max(reach, f.last_seq)
        following = wanted[i + 1] if i + 1 < len(wanted) else None
        if len(group) >= max_files and following is not None and following.first_seq > reach and reach < through:
            chunks.append(Chunk(start, reach, tuple(group)))
            start, group = reach + 1, []
    chunks.append(Chunk(start, through, tuple(group)))
    return chunks


class SilverFollower:
    """Follows one pipeline's lake silver into `store`. `start(lake_seq)` in the event loop,
    `offer` after each commit, `await close()` at the end (idempotent)."""

    def __init__(self, store: FollowingStore, lake: Lake, pipeline_id: str, *,
                 max_queue_bytes: int = 64 * 1024 * 1024, coalesce_rows: int = 10_000,
                 catch_up_files: int = 32, backoff_s: float = 0.2, max_backoff_s: float = 30.0,
                 drain_s: float = 10.0, jitter: Callable[[], float] = random.random) -> None:
        self.store = store
        self.lake = lake
        self.pipeline_id = pipeline_id
        self.max_queue_bytes = max_queue_bytes
        self.coalesce_rows = coalesce_rows
        self.catch_up_files = catch_up_files
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.drain_s = drain_s
        self._jitter = jitter
        self._state: State = "new"
        self._queue: collections.deque[_Range] = collections.deque()
        self._queue_bytes = 0
        self._lake_seq = 0
        # What the loop may rely on (None: read it from the store first), and the last value
        # known, for the counters.
        self._stored: int | None = None
        self._known: int | None = None
        self._error: str | None = None
        self.dropped_ranges = 0
        self.catch_ups = 0
        self.failures = 0
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"SilverFollower({self.store!r}, {self._state})"

    @property
    def state(self) -> State:
        return self._state

    @property
    def stored_seq(self) -> int | None:
        """The store's stored seq as last read or written (None before the first answer)."""
        return self._known

    def counters(self) -> dict[str, Any]:
        """For the pipeline's health: `silver_seq` (the store's stored seq, None until it has
        answered once), `silver_lag` (seqs the lake has stored and the store not yet),
        `silver_error` (the last failure, None once a write succeeds again), `silver_refused`
        (rows the store refused and left out; the lake keeps them)."""
        return {"silver_seq": self._known, "silver_lag": max(0, self._lake_seq - (self._known or 0)),
                "silver_error": self._error, "silver_refused": getattr(self.store, "refused", 0)}

    def start(self, lake_seq: int) -> None:
        """Begin following from the lake's stored seq `lake_seq`; call in the event loop."""
        if self._state != "new":
            raise RuntimeError(f"silver follower of {self.pipeline_id} is {self._state}")
        self._lake_seq = max(self._lake_seq, lake_seq)
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._state = "running"
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"silver-follower:{self.pipeline_id}")

    def offer(self, rows: pa.Table | None, *, first_seq: int, last_seq: int) -> None:
        """The lake has stored `first_seq..last_seq` with these silver rows (None or empty:
        none). Never blocks, never raises; past the queue's byte bound the queued rows are
        dropped and the follower catches up from the lake."""
        self._lake_seq = max(self._lake_seq, last_seq)
        if self._state not in ("new", "running"):
            return
        nbytes = rows.nbytes if rows is not None and rows.num_rows else 0
        if self._queue_bytes + nbytes > self.max_queue_bytes:
            self.dropped_ranges += len(self._queue) + 1
            self._queue.clear()
            self._queue_bytes = 0
        else:
            self._queue.append(_Range(rows if nbytes else None, first_seq, last_seq, nbytes))
            self._queue_bytes += nbytes
        if self._wake is not None:
            self._wake.set()

    async def wait_stored(self, seq: int) -> None:
        """Return once the store holds everything through `seq`."""
        assert self._progress is not None, "start the follower first"
        async with self._progress:
            await self._progress.wait_for(lambda: (self._known or 0) >= seq)

    async def close(self, *, drain_s: float | None = None) -> None:
        """Stop following. While the store is healthy, first give it up to `drain_s` seconds
        to write what the lake has (the next follower catches up on the rest); then close
        the store. A write under way in its thread is left to finish, not interrupted."""
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        if self._state == "running":
            drain = self.drain_s if drain_s is None else drain_s
            if drain > 0 and self._error is None and self._task is not None and not self._task.done():
                try:
                    async with timeout(drain):
                        await self.wait_stored(self._lake_seq)
                except asyncio.TimeoutError:
                    log.info("silver follower of %s: %d seq(s) left for the next catch-up", self.pipeline_id,
                             self._lake_seq - (self._known or 0))
            self._state = "closing"
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            close = getattr(self.store, "close", None)
            if close is not None:
                try:
                    async with timeout(10.0):
                        await asyncio.to_thread(close)
                except Exception as exc:  # noqa: BLE001 - closing is best effort
                    log.warning("silver follower of %s: closing the store failed: %s", self.pipeline_id, exc)
        self._state = "closed"
        self._queue.clear()
        self._queue_bytes = 0

    # -- the writer ------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        delay = 0.0
        while self._state == "running":
            try:
                if not await self._step():
                    self._wake.clear()
                    if self._is_idle():
                        await self._wake.wait()
                    continue
                delay = 0.0
                self._error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: retry later, say why
                self.failures += 1
                self._stored = None  # ask the store again: the write may have committed
                self._error = f"{type(exc).__name__}: {exc}"[:500]
                delay = min(self.max_backoff_s, max(self.backoff_s, delay * 2))
                pause = delay * (0.5 + 0.5 * self._jitter())
                log.warning("silver follower of %s: %s; retrying in %.1f s", self.pipeline_id, self._error, pause)
                self._wake.clear()
                await asyncio.sleep(pause)

    def _is_idle(self) -> bool:
        return not self._queue and self._stored is not None and self._stored >= self._lake_seq

    async def _step(self) -> bool:
        """One unit of work; False when there was none."""
        if self._stored is None:
            stored = await asyncio.to_thread(self.store.stored_seq)
            if stored > self._lake_seq:
                # The store holds seqs the lake does not (the lake was rebuilt or replaced):
                # the lake is the truth.
                log.warning("silver follower of %s: the store is at seq %d, the lake at %d; discarding the rest",
                            self.pipeline_id, stored, self._lake_seq)
                await asyncio.to_thread(self.store.discard_after, self._lake_seq)
                stored = self._lake_seq
            await self._advance(stored)
            return True
        stored = self._stored
        while self._queue and self._queue[0].last_seq <= stored:
            self._queue_bytes -= self._queue.popleft().nbytes
        if self._queue and self._queue[0].first_seq == stored + 1:
            await self._write_queued()
            return True
        if stored < self._lake_seq:
            await self._catch_up(stored, self._lake_seq)
            return True
        return False

    async def _write_queued(self) -> None:
        """Write the queue's head, with the consecutive ranges after it up to `coalesce_rows`
        rows, as one range. Small ranges are joined (a write has a fixed cost of a dozen
        statements); a large one goes alone, as the very table the lake was given, so the
        rollup partials computed for the lake are used again (`partials.py`)."""
        taken: list[_Range] = []
        rows = 0
        for item in self._queue:
            size = item.rows.num_rows if item.rows is not None else 0
            if taken and (item.first_seq != taken[-1].last_seq + 1 or rows + size > self.coalesce_rows):
                break
            taken.append(item)
            rows += size
        tables = [t.rows for t in taken if t.rows is not None]
        table = _EMPTY if not tables else tables[0] if len(tables) == 1 else pa.concat_tables(
            tables, promote_options="permissive")
        first, last = taken[0].first_seq, taken[-1].last_seq
        await asyncio.to_thread(self.store.write, table, first_seq=first, last_seq=last)
        for item in taken:
            # An overflow during the write may have emptied the queue meanwhile.
            if self._queue and self._queue[0] is item:
                self._queue_bytes -= self._queue.popleft().nbytes
        await self._advance(last)

    async def _catch_up(self, stored: int, through: int) -> None:
        """Write `stored+1..through` from the lake's silver files, chunk by chunk."""
        self.catch_ups += 1
        log.info("silver follower of %s: catching up from the lake, seq %d..%d", self.pipeline_id, stored + 1, through)
        files = await asyncio.to_thread(self.lake.files, "silver", self.pipeline_id)
        for chunk in catch_up_chunks(files, after=stored, through=through, max_files=self.catch_up_files):
            table = await asyncio.to_thread(self._read, chunk)
            await asyncio.to_thread(self.store.write, table, first_seq=chunk.first_seq, last_seq=chunk.last_seq)
            await self._advance(chunk.last_seq)
            if self._state != "running":
                return

    def _read(self, chunk: Chunk) -> pa.Table:
        if not chunk.files:
            return _EMPTY
        datasets = self.lake.datasets_of(list(chunk.files))
        if len(datasets) == 1:
            table = datasets[0].to_table()
        else:  # a field retyped by a spec update: its values as DuckDB reads them
            from dash_ray.silver.evolution import union_by_name

            table = union_by_name([d.to_table() for d in datasets])
        seq = table.column("seq")
        table = table.filter(pc.and_(pc.greater_equal(seq, chunk.first_seq), pc.less_equal(seq, chunk.last_seq)))
        return table.sort_by("seq")

    async def _advance(self, stored: int) -> None:
        assert self._progress is not None
        self._stored = stored
        self._known = stored
        async with self._progress:
            self._progress.notify_all()
