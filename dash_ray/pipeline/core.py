"""The life of one pipeline in plain Python: durable ingest through the write-ahead log,
mapping, the hot cache, handing mapped records to sinks, storage through the commit step,
recovery after a crash (`recovery.py`). `host.py` runs it in a process of its own.

Guarantees:
- `ingest` answers with an Ack only after the batch is in the write-ahead log and synced;
  a batch it refuses (413, 429, 503) was not stored.
- Sequence numbers are consecutive, start at 1, and never repeat, across restarts.
- Every acknowledged record is stored exactly once: the commit step (`commit.py`) writes a
  range's silver and dead rows, then its bronze file (the mark), then its keys, then trims
  the log; a restart discards what an unfinished commit left and replays the log after the
  mark. A mapping error that is not the record's fault dead-letters the batch with rule
  `internal` rather than losing it.
- A retried request with the same `Idempotency-Key` (or the same replay key, which the
  ingress derives from the signature) within the window gets the first ack.
- `start` returns once the log is read; what it holds is mapped in the background while new
  ingest is acknowledged, so a large backlog does not hold up a restart.
- `totals` (in `health`'s counters) go on across restarts (`totals.py`).
Not guaranteed: the hot cache and the counters are memory; after a restart the hot cache is
rebuilt from the lake's newest silver rows and the log, and the counters start again (`since`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from dash_ray.errors import DashError, InternalError, UnavailableError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.lake import Lake
from dash_ray.lifecycle.jobs import Replays
from dash_ray.lifecycle.maintenance import Maintenance
from dash_ray.live.feed import LiveFeed
from dash_ray.log.base import Log
from dash_ray.log.file import WriteAheadLog
from dash_ray.pipeline.admission import Admission, Plan
from dash_ray.pipeline.commit import Commit
from dash_ray.pipeline.counters import Counters
from dash_ray.pipeline.entry import encode_entry
from dash_ray.pipeline.mapper import Mapper
from dash_ray.pipeline.recovery import recover
from dash_ray.pipeline.totals import Totals, TotalsFile
from dash_ray.silver.follower import SilverFollower
from dash_ray.silver.lake import LakeSilver
from dash_ray.silver.rollup import spec_plan
from dash_ray.sinks.base import Sinks
from dash_ray.spec import PipelineSpec
from dash_ray.timeouts import timeout

__all__ = ["Counters", "PipelineCore"]

log = logging.getLogger(__name__)

State = Literal["new", "running", "closing", "closed", "failed"]
_MAX_FLUSH_BACKOFF_S = 30.0
_HEALTH_MAP_LIMIT = _READ_MAP_LIMIT = 50_000  # mapped at most per call: never a whole backlog


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


class PipelineCore:
    """One pipeline: `await start()`, then `ingest`/`records`/`flush`, then `await close()`."""

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        wal_dir: str | Path,
        lake: Lake,
        silver: LakeSilver | None = None,
        log: Log | None = None,
        sinks: Sinks | None = None,
        followers: Sequence[SilverFollower] = (),
        idempotency_window_s: float = 3600.0,
        idempotency_max_keys: int = 100_000,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.lake = lake
        self.counters = Counters()
        self._wal_dir = Path(wal_dir)
        self._wal: Log = log or WriteAheadLog(self._wal_dir, fsync=fsync)
        self._totals_file = TotalsFile(lake, spec.id)
        self._stored_totals = self._base_totals = Totals()  # through stored_seq; as of start
        plan = spec_plan(spec)
        self._silver = silver or LakeSilver(lake, spec.id, plan)
        self.maintenance = Maintenance(lake, spec.id, spec.storage, plan, stored_seq=lambda: self.counters.stored_seq,
                                       secondaries=lambda: [f.store for f in self.followers])
        self._sinks = sinks if sinks is not None else Sinks()  # an empty hook is falsy
        self._mapper = Mapper(spec, self.counters, sinks=self._sinks, on_mapped=self._mapped_some,
                              active=lambda: self._state in ("running", "closing"))
        self.live = LiveFeed(self._mapper.json_columns, stored_seq=lambda: self.counters.stored_seq)
        self._sinks.add(self.live)
        # Secondary silver stores kept caught up with the lake (add before `start`).
        self.followers = list(followers)
        self._idempotency_window_s = idempotency_window_s
        self._idempotency_max_keys = idempotency_max_keys
        self._admission = Admission(spec, self.counters)
        self._commit: Commit | None = None
        self.replays: Replays | None = None
        self._clock = clock
        self._state: State = "new"
        self._next_seq = 1
        # Acknowledged, not yet stored (unmapped, then mapped: see `_mapper`).
        self._pending_records = 0
        self._pending_bytes = 0
        self._flush_wanted: asyncio.Event | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._flush_error: str | None = None
        self._failure: str | None = None
        # Resolved after each stored range: calls waiting for room in the queue look again.
        self._stored: asyncio.Future[None] | None = None

    @property
    def state(self) -> State:
        return self._state

    def use_log(self, log: Log) -> None:
        """Keep the write-ahead log in `log` instead (a backend made once its settings are
        known); only before `start`."""
        if self._state != "new":
            raise RuntimeError(f"pipeline {self.id} is {self._state}: its log is in use")
        self._wal = log

    @property
    def id(self) -> str:
        return self.spec.id

    # -- start / recover -------------------------------------------------------------------

    async def start(self) -> None:
        """Recover from the lake and the log (`recovery.py`), then accept ingest; the log's
        entries are mapped in the background. Raises StorageError when the lake cannot be read,
        WalCorruptError when the log is damaged."""
        if self._state != "new":
            raise RuntimeError(f"pipeline {self.id} is {self._state}")
        self._flush_wanted = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        found = await recover(self.id, log=self._wal, folder=self._wal_dir, lake=self.lake, silver=self._silver,
                              followers=self.followers, hot_records=self.spec.hot_records,
                              window_s=self._idempotency_window_s, max_keys=self._idempotency_max_keys,
                              clock=self._clock)
        self._admission.keys, self._commit = found.keys, found.commit
        self._mapper.warm(found.silver_tail)
        self.replays = Replays(self.id, lake=self.lake, mapping=self._mapper.mapping, silver=self._silver,
                               lock=self.maintenance.lock, stored_seq=lambda: self.counters.stored_seq,
                               path=self._wal_dir / "jobs.sqlite",
                               secondaries=lambda: [f.store for f in self.followers])
        stored = found.stored_seq
        self.counters.stored_seq = self._mapper.applied_seq = stored
        self._stored_totals = self._base_totals = await asyncio.to_thread(self._totals_file.load, stored)
        self.counters.since = _utc_now().isoformat()
        self.live.begin(stored)
        for entry, keys in found.waiting:
            self._mapper.durable[entry.first_seq] = (entry, keys)
        self._pending_records += found.records
        self._pending_bytes += found.nbytes
        self.counters.replayed += found.records
        self._next_seq = found.next_seq
        self.counters.last_seq = self._next_seq - 1
        self._state = "running"
        for follower in self.followers:
            follower.start(stored)
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        self.maintenance.start()
        if self._mapper.durable:
            log.info("pipeline %s: %d record(s) in the log, mapping them in the background",
                     self.id, self.counters.replayed)
            self._mapper.schedule(0.0)

    # -- ingest ----------------------------------------------------------------------------

    async def ingest(self, batches: list[RawBatch]) -> list[Ack | DashError]:
        """Store each batch durably and answer for each: its Ack, or the error that refused
        it. Batches refused with an error were not stored. Batches of one call are logged
        in one entry, so they share one sync."""
        if self._state != "running":
            error = UnavailableError(f"pipeline {self.id} is {self._state}", retry_after=1.0)
            return [error] * len(batches)
        await self._room_for(batches)
        plan = self._admission.plan(batches, queued_records=self._pending_records, queued_bytes=self._pending_bytes,
                                    storage_error=self._flush_error)
        if plan.fresh:
            await self._log(plan)
        else:
            self._admission.settle(plan, [], None)
        await self._admission.answer_twins(plan)
        return [r if r is not None else UnavailableError("not answered") for r in plan.results]

    async def _room_for(self, batches: list[RawBatch]) -> None:
        """Wait (up to `limits.queue_wait_s`) while the queue has no room for the call and a
        flush is draining it; returns at once when it has room or nothing drains it."""
        limits = self.spec.limits
        records = sum(b.count for b in batches)
        nbytes = sum(len(b.payload) for b in batches)
        if records > limits.queue_records or nbytes > limits.queue_bytes:
            return  # a 413, or batches that fit one by one: the plan sorts them
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while self._state == "running" and self._flush_error is None and self._draining():
            room, room_bytes = self._admission.room(queued_records=self._pending_records,
                                                    queued_bytes=self._pending_bytes)
            if records <= room and nbytes <= room_bytes:
                return
            now = loop.time()
            deadline = deadline if deadline is not None else now + limits.queue_wait_s
            if now >= deadline:
                return
            if self._stored is None or self._stored.done():
                self._stored = loop.create_future()
            try:
                async with timeout(deadline - now):
                    await asyncio.shield(self._stored)
            except asyncio.TimeoutError:
                return

    def _wake_waiters(self) -> None:
        if self._stored is not None and not self._stored.done():
            self._stored.set_result(None)

    def _draining(self) -> bool:
        """Whether a flush is storing the queue now or is due for its size."""
        assert self._flush_lock is not None
        return self._flush_lock.locked() or self._pending_records >= self.spec.flush.records

    async def _log(self, plan: Plan) -> None:
        """Append the plan's fresh batches as one log entry; on its sync, answer them."""
        stored = [b for _, b in plan.fresh if b.count]
        first = self._next_seq
        entry, data = encode_entry(first, stored)
        acks: list[Ack] = []
        seq = first
        for _, batch in plan.fresh:
            acks.append(Ack(batch.count - len(batch.rejected), seq, seq + batch.count - 1, batch.rejected))
            seq += batch.count
        error: DashError | None = None
        if entry.count:
            self._next_seq = entry.last_seq + 1
            try:
                await self._wal.append(entry.last_seq, data)
            except BaseException as exc:
                # Not acknowledged. Whatever the log did, a seq given out cannot be taken
                # back, so the pipeline stops; a restart recovers what the log holds.
                self._fail(f"write-ahead log failed: {_error_text(exc)}")
                error = UnavailableError(f"pipeline {self.id} cannot write its log: {exc}", retry_after=1.0)
                if not isinstance(exc, Exception):
                    self._admission.settle(plan, acks, error)
                    raise
        keys = self._admission.settle(plan, acks, error)
        if error is None and entry.count:
            self._pending_records += entry.count
            self._pending_bytes += len(entry.payload)
            self.counters.last_seq = max(self.counters.last_seq, entry.last_seq)
            self._mapper.add(entry, keys)

    def _mapped_some(self) -> None:
        self.live.advance(self._mapper.applied_seq)
        if self._pending_records >= self.spec.flush.records and self._flush_wanted is not None:
            self._flush_wanted.set()

    def _fail(self, reason: str) -> None:
        log.error("pipeline %s failed: %s", self.id, reason)
        self._state = "failed"
        self._failure = reason
        self._wake_waiters()
        self.counters.last_error = reason

    # -- reading ---------------------------------------------------------------------------

    def records(self, *, after: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest records, oldest first (HotBuffer.since); a backlog: `await catch_up()` first."""
        self._mapper.map_all(_READ_MAP_LIMIT)
        return self._mapper.hot.since(after, limit)

    async def catch_up(self) -> None:
        """Map what waits a chunk at a time, yielding between chunks, for up to ~5 s."""
        await self._mapper.catch_up(5.0)

    def health(self) -> dict[str, Any]:
        """State and counters, current as of the call; raises UnavailableError unless the
        pipeline is running (a closing or closed core cannot take ingest: replace it)."""
        if self._state != "running":
            why = f": {self._failure}" if self._failure else ""
            raise UnavailableError(f"pipeline {self.id} is {self._state}{why}")
        if self._flusher is not None and self._flusher.done():
            raise UnavailableError(f"pipeline {self.id}: flush loop stopped")
        self._mapper.map_all(_HEALTH_MAP_LIMIT)
        c = self.counters
        c.pending, c.pending_bytes = self._pending_records, self._pending_bytes
        c.mapping_backlog = self._mapper.backlog
        counters = c.as_dict()
        counters["totals"] = self._base_totals.report(c)
        for follower in self.followers:
            counters.update(follower.counters())
        return {"state": self._state, "counters": counters, "wal_bytes": self._wal.stats.bytes,
                "flush_error": self._flush_error}

    # -- storing ---------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        assert self._flush_wanted is not None
        backoff = 0.0
        while self._state == "running":
            try:
                async with timeout(backoff or self.spec.flush.seconds):
                    await self._flush_wanted.wait()
            except asyncio.TimeoutError:
                pass
            self._flush_wanted.clear()
            if self._state != "running":
                break
            try:
                await self._store_mapped()
                backoff = 0.0
            except InternalError as exc:
                # The queue itself is wrong: stop before anything is trimmed; a restart
                # replays the log.
                self._fail(str(exc))
            except Exception as exc:  # any failure: keep the records, retry, say why
                backoff = min(max(backoff * 2, 0.5), _MAX_FLUSH_BACKOFF_S)
                self._flush_error = self.counters.last_error = _error_text(exc)
                self.counters.flush_failures += 1
                self._wake_waiters()  # they get the 503 now rather than at their deadline
                log.warning("pipeline %s: storing failed, retrying in %.1f s: %s", self.id, backoff,
                            self._flush_error, exc_info=not isinstance(exc, DashError))

    async def flush(self) -> int:
        """Map everything acknowledged so far and store it, then trim the log; returns the
        number of records stored. Raises StorageError (the records stay queued and logged)."""
        self._mapper.map_all()
        return await self._store_mapped()

    async def _store_mapped(self) -> int:
        """Store the mapped ranges: first a range an earlier attempt pinned, as it was."""
        assert self._flush_lock is not None and self._commit is not None
        async with self._flush_lock:
            total = 0
            while batch := (self._commit.pinned or list(self._mapper.mapped)):
                started = time.perf_counter()
                totals = self._stored_totals.plus(batch)
                await asyncio.to_thread(self._totals_file.save, self._stored_totals, totals)
                last = await self._commit.store(batch, stored_seq=self.counters.stored_seq)
                self._stored_totals = totals
                self.counters.flush_seconds += time.perf_counter() - started
                del self._mapper.mapped[:len(batch)]
                count = sum(m.count for m in batch)
                total += count
                self._pending_records -= count
                self._pending_bytes -= sum(m.nbytes for m in batch)
                self.counters.stored_seq = last
                self.counters.flushes += 1
                self.counters.last_flush_at = _utc_now().isoformat()
                self._flush_error = None
                self._wake_waiters()
            return total

    # -- close -----------------------------------------------------------------------------

    async def close(self, *, flush: bool = True) -> None:
        """Stop taking ingest, store what is queued (when `flush` and storage allows), close
        the log. What could not be stored stays in the log for the next start. Idempotent."""
        if self._state in ("closed", "new"):
            self._state = "closed"
            return
        was_running = self._state == "running"
        self._state = "closing"
        self._wake_waiters()
        if self._flusher is not None:
            assert self._flush_wanted is not None
            self._flush_wanted.set()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if flush and was_running:
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - the log keeps them for the next start
                log.warning("pipeline %s: final flush failed; the log keeps the records: %s", self.id,
                            _error_text(exc))
        if self.replays is not None:
            await self.replays.close()
        await self.maintenance.close()
        await self._sinks.close()
        for follower in self.followers:
            await follower.close()
        await self._wal.close()
        self._admission.keys.close()
        self._state = "closed"
