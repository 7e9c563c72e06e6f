"""The life of one pipeline in plain Python: durable ingest through the write-ahead log,
mapping, the hot cache, flushes to the lake, recovery after a crash. The Ray actor in
`actors/pipeline.py` is a thin shell around `PipelineCore`.

Guarantees:
- `ingest` answers with an Ack only after the batch is in the write-ahead log and synced;
  a batch it refuses (429, 503) was not stored.
- Sequence numbers are consecutive, start at 1, and never repeat, across restarts.
- A flush writes the silver and dead-letter files of a sequence range first and the bronze
  file last; the bronze file marks the range as stored, and only then is the log trimmed.
  Recovery drops silver/dead files past the last bronze file and replays the log after it,
  so every acknowledged record lands in the lake exactly once (file names are seq ranges,
  so a repeated flush replaces rather than duplicates).
- A retried request with the same `Idempotency-Key` within the window gets the first ack.
Not guaranteed: the hot cache and the counters are memory; after a restart the hot cache is
rebuilt from the lake's newest silver rows and the log, and the counters start again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.errors import BackpressureError, DashError, StorageError, UnavailableError
from dash_ray.pipeline.hot import HotBuffer, rows_to_records
from dash_ray.ingest.idempotency import IdempotencyIndex
from dash_ray.lake import Lake
from dash_ray.pipeline.entry import LoggedEntry, decode_entry, encode_entry, input_table
from dash_ray.mapping import CompiledMapping, MappingResult, compile_mapping
from dash_ray.spec import PipelineSpec
from dash_ray.log.file import WriteAheadLog

__all__ = ["Counters", "PipelineCore"]

log = logging.getLogger(__name__)

State = Literal["new", "running", "closing", "closed", "failed"]
_MAX_FLUSH_BACKOFF_S = 30.0
# Mapping has a fixed cost per call, so durable entries are mapped together: once this many
# records wait, or this long after the first one (reads and flushes map what waits at once).
_MAP_BATCH_RECORDS = 2000
_MAP_DELAY_S = 0.02


@dataclass
class Counters:
    """What a pipeline has done since it (re)started; `last_seq` and `stored_seq` are durable
    facts, the rest are memory."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected_requests: int = 0
    mapped: int = 0
    dead: int = 0
    filtered: int = 0
    flushes: int = 0
    last_seq: int = 0
    stored_seq: int = 0
    pending: int = 0
    replayed: int = 0
    last_flush_at: str | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Pending:
    """Consecutive durable entries, mapped together, waiting for the lake."""

    entries: list[LoggedEntry]
    result: MappingResult
    keys: list[str] = field(default_factory=list)

    @property
    def first_seq(self) -> int:
        return self.entries[0].first_seq

    @property
    def last_seq(self) -> int:
        return self.entries[-1].last_seq

    @property
    def count(self) -> int:
        return sum(e.count for e in self.entries)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class PipelineCore:
    """One pipeline: `await start()`, then `ingest`/`records`/`flush`, then `await close()`."""

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        wal_dir: str | Path,
        lake: Lake,
        idempotency_window_s: float = 3600.0,
        idempotency_max_keys: int = 100_000,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.lake = lake
        self.counters = Counters()
        self._mapping: CompiledMapping = compile_mapping(spec.mapping)
        self._json_columns = frozenset(n for n, f in spec.mapping.fields.items() if f.type == "json") | (
            {"extra"} if spec.mapping.keep_extra or not spec.mapping.fields else set())
        self._wal_dir = Path(wal_dir)
        self._wal = WriteAheadLog(self._wal_dir, fsync=fsync)
        self._idempotency_window_s = idempotency_window_s
        self._idempotency_max_keys = idempotency_max_keys
        self._idempotency = IdempotencyIndex(None)  # replaced by the persistent one in start()
        self._hot = HotBuffer(spec.hot_records)
        self._clock = clock
        self._state: State = "new"
        self._next_seq = 1
        self._pending: list[_Pending] = []
        self._pending_records = 0
        self._syncing = 0  # records of ingest calls waiting for their log sync
        self._inflight_keys: dict[str, asyncio.Future[Ack]] = {}
        # Durable entries are mapped after the ack, several at a time, in seq order (even if
        # their syncs were to complete out of order); reads and flushes map what is due first.
        self._durable: dict[int, tuple[LoggedEntry, list[str]]] = {}
        self._applied_seq = 0
        self._apply_scheduled = False
        self._flush_wanted: asyncio.Event | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._failure: str | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def id(self) -> str:
        return self.spec.id

    # -- start / recover -------------------------------------------------------------------

    async def start(self) -> None:
        """Recover from the lake and the log, then accept ingest. Raises StorageError when the
        lake cannot be read, WalCorruptError when the log is damaged."""
        if self._state != "new":
            raise RuntimeError(f"pipeline {self.id} is {self._state}")
        self._flush_wanted = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        stored = await asyncio.to_thread(self._recover_lake)
        self._wal_dir.mkdir(parents=True, exist_ok=True)
        self._idempotency = IdempotencyIndex(
            self._wal_dir / "idempotency.sqlite", window_s=self._idempotency_window_s,
            max_keys=self._idempotency_max_keys, clock=self._clock)
        entries = await asyncio.to_thread(self._wal.open)
        self.counters.stored_seq = stored
        self._applied_seq = stored
        self._next_seq = stored + 1
        replay = []
        for raw in entries:
            entry = decode_entry(raw.data)
            if entry.last_seq <= stored:
                continue
            if entry.first_seq != self._next_seq:
                raise StorageError(
                    f"pipeline {self.id}: log entry starts at seq {entry.first_seq}, expected "
                    f"{self._next_seq}; the lake and the log disagree")
            replay.append(entry)
            self._next_seq = entry.last_seq + 1
        if entries:
            self._wal.trim(stored)
        for entry in replay:
            self._durable[entry.first_seq] = (entry, self._remember_keys(entry))
            self._pending_records += entry.count
            self.counters.replayed += entry.count
        self._apply_ready()
        self.counters.last_seq = self._next_seq - 1
        self._state = "running"
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        if replay:
            log.info("pipeline %s: replayed %d record(s) from the log", self.id, self.counters.replayed)
            self._flush_wanted.set()

    def _recover_lake(self) -> int:
        stored = self.lake.last_seq("bronze", self.id)
        for area in ("silver", "dead"):
            self.lake.remove_after(area, self.id, stored)  # type: ignore[arg-type]
        tail = self.lake.tail("silver", self.id, self.spec.hot_records)
        if tail is not None and tail.num_rows:
            self._hot.extend(rows_to_records(tail.drop_columns(
                [c for c in ("date",) if c in tail.column_names]), self._json_columns))
        return stored

    def _remember_keys(self, entry: LoggedEntry) -> list[str]:
        keys = []
        seq = entry.first_seq
        for meta in entry.batches:
            if meta.dedupe_keys:
                ack = Ack(meta.count - len(meta.rejected), seq, seq + meta.count - 1, meta.rejected)
                for key in meta.dedupe_keys:
                    self._idempotency.remember(key, ack, at=meta.received_at_us / 1e6)
                    keys.append(key)
            seq += meta.count
        return keys

    # -- ingest ----------------------------------------------------------------------------

    async def ingest(self, batches: list[RawBatch]) -> list[Ack | DashError]:
        """Store each batch durably and answer for each: its Ack, or the error that refused
        it. Batches refused with an error were not stored. Batches of one call are logged
        in one entry, so they share one sync."""
        results: list[Ack | DashError | None] = [None] * len(batches)
        if self._state != "running":
            error = UnavailableError(f"pipeline {self.id} is {self._state}", retry_after=1.0)
            return [error] * len(batches)
        fresh: list[tuple[int, RawBatch]] = []
        waits: list[tuple[int, asyncio.Future[Ack]]] = []
        # Records of calls still waiting for their sync count too, so concurrent calls
        # cannot together pass the bound.
        room = self.spec.limits.queue_records - self._pending_records - self._syncing
        loop = asyncio.get_running_loop()
        for i, batch in enumerate(batches):
            self.counters.received += batch.count
            keys = batch.dedupe_keys
            prior = next((a for a in map(self._idempotency.get, keys) if a is not None), None)
            if prior is not None:
                results[i] = prior
                self.counters.duplicates += 1
                continue
            inflight = next((self._inflight_keys[k] for k in keys if k in self._inflight_keys), None)
            if inflight is not None:
                waits.append((i, inflight))
                continue
            if batch.count > room:
                self.counters.rejected_requests += 1
                results[i] = BackpressureError(
                    f"pipeline {self.id} has {self._pending_records} records waiting for the lake "
                    f"(limit {self.spec.limits.queue_records})",
                    retry_after=max(1.0, self.spec.flush.seconds))
                continue
            room -= batch.count
            fresh.append((i, batch))
            if keys:
                future = loop.create_future()
                for key in keys:
                    self._inflight_keys[key] = future
        if fresh:
            reserved = sum(b.count for _, b in fresh)
            self._syncing += reserved
            try:
                await self._store(fresh, results)
            finally:
                self._syncing -= reserved
        for i, future in waits:
            try:
                ack = await asyncio.shield(future)
            except DashError as exc:
                results[i] = exc
            else:
                self.counters.duplicates += 1
                results[i] = Ack(ack.accepted, ack.first_seq, ack.last_seq, ack.rejected, duplicate=True)
        return [r if r is not None else UnavailableError("not answered") for r in results]

    async def _store(self, fresh: list[tuple[int, RawBatch]], results: list[Any]) -> None:
        stored = [b for _, b in fresh if b.count]
        first = self._next_seq
        entry, data = encode_entry(first, stored)
        acks: list[Ack] = []
        seq = first
        for _, batch in fresh:
            acks.append(Ack(batch.count - len(batch.rejected), seq, seq + batch.count - 1, batch.rejected))
            seq += batch.count
        error: DashError | None = None
        if entry.count:
            self._next_seq = entry.last_seq + 1
            try:
                await self._wal.append(entry.last_seq, data)
            except Exception as exc:  # noqa: BLE001 - the log failed: nothing here is acknowledged
                self._fail(f"write-ahead log failed: {exc}")
                error = UnavailableError(f"pipeline {self.id} cannot write its log: {exc}", retry_after=1.0)
        keys = []
        for (i, batch), ack in zip(fresh, acks, strict=True):
            future = None
            for key in batch.dedupe_keys:
                future = self._inflight_keys.pop(key, None) or future
            if error is not None:
                results[i] = error
                if future is not None:
                    future.set_exception(error)
                    future.exception()  # retrieved: a waiter may not exist
                continue
            results[i] = ack
            self.counters.accepted += ack.accepted
            for key in batch.dedupe_keys:
                self._idempotency.remember(key, ack)
                keys.append(key)
            if future is not None:
                future.set_result(ack)
        if error is None and entry.count:
            self._durable[entry.first_seq] = (entry, keys)
            self._pending_records += entry.count
            self.counters.pending = self._pending_records
            self.counters.last_seq = max(self.counters.last_seq, entry.last_seq)
            # Durable but not yet mapped: everything logged after the last mapped seq.
            if self.counters.last_seq - self._applied_seq >= _MAP_BATCH_RECORDS:
                self._apply_ready()
            elif not self._apply_scheduled:
                self._apply_scheduled = True
                asyncio.get_running_loop().call_later(_MAP_DELAY_S, self._apply_ready)

    def _apply_ready(self) -> None:
        """Map the durable entries that follow the last mapped one, in one batch; cache the
        rows, queue them for the lake."""
        self._apply_scheduled = False
        entries: list[LoggedEntry] = []
        keys: list[str] = []
        while self._applied_seq + 1 in self._durable:
            entry, entry_keys = self._durable.pop(self._applied_seq + 1)
            entries.append(entry)
            keys += entry_keys
            self._applied_seq = entry.last_seq
        if not entries:
            return
        result = self._mapping.apply(input_table(entries))
        self._pending.append(_Pending(entries, result, keys))
        self.counters.last_seq = max(self.counters.last_seq, self._applied_seq)
        self.counters.mapped += result.rows.num_rows
        self.counters.dead += result.dead.num_rows
        self.counters.filtered += result.filtered
        if result.rows.num_rows:
            # Only the newest `capacity` rows can stay in the cache: convert just those.
            rows = result.rows.slice(max(0, result.rows.num_rows - self._hot.capacity))
            self._hot.extend(rows_to_records(rows, self._json_columns))
        if self._pending_records >= self.spec.flush.records and self._flush_wanted is not None:
            self._flush_wanted.set()

    def _fail(self, reason: str) -> None:
        log.error("pipeline %s failed: %s", self.id, reason)
        self._state = "failed"
        self._failure = reason
        self.counters.last_error = reason

    # -- reading ---------------------------------------------------------------------------

    def records(self, *, after: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest mapped records in the hot cache, oldest first (see HotBuffer.since).
        Every record acknowledged before the call is in it (or was, before newer ones)."""
        self._apply_ready()
        return self._hot.since(after, limit)

    def health(self) -> dict[str, Any]:
        """State and counters; raises UnavailableError when the pipeline cannot go on."""
        if self._state == "failed":
            raise UnavailableError(f"pipeline {self.id} failed: {self._failure}")
        if self._flusher is not None and self._flusher.done() and self._state == "running":
            raise UnavailableError(f"pipeline {self.id}: flush loop stopped")
        return {"state": self._state, "counters": self.counters.as_dict(), "wal_bytes": self._wal.stats.bytes}

    # -- flushing --------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        assert self._flush_wanted is not None
        backoff = 0.0
        while self._state == "running":
            try:
                await asyncio.wait_for(self._flush_wanted.wait(), timeout=backoff or self.spec.flush.seconds)
            except asyncio.TimeoutError:
                pass
            self._flush_wanted.clear()
            if self._state != "running":
                break
            try:
                await self.flush()
                backoff = 0.0
            except StorageError as exc:
                backoff = min(max(backoff * 2, 0.5), _MAX_FLUSH_BACKOFF_S)
                self.counters.last_error = str(exc)
                log.warning("pipeline %s: flush failed, retrying in %.1f s: %s", self.id, backoff, exc)

    async def flush(self) -> int:
        """Write everything applied so far to the lake, then trim the log; returns the number
        of records written. Raises StorageError (the records stay queued and logged)."""
        assert self._flush_lock is not None
        async with self._flush_lock:
            self._apply_ready()
            batch = list(self._pending)
            if not batch:
                return 0
            first, last = batch[0].first_seq, batch[-1].last_seq
            await asyncio.to_thread(self._write, batch, first, last)
            self._wal.trim(last)
            keys = [k for p in batch for k in p.keys]
            if keys:
                await asyncio.to_thread(self._idempotency.persist, keys)
            del self._pending[:len(batch)]
            count = sum(p.count for p in batch)
            self._pending_records -= count
            self.counters.pending = self._pending_records
            self.counters.stored_seq = last
            self.counters.flushes += 1
            self.counters.last_flush_at = _utc_now().isoformat()
            return count

    def _write(self, batch: list[_Pending], first: int, last: int) -> None:
        day = _utc_now().date()
        rows = [p.result.rows for p in batch if p.result.rows.num_rows]
        dead = [p.result.dead for p in batch if p.result.dead.num_rows]
        if rows:
            silver = pa.concat_tables(rows, promote_options="permissive")
            self.lake.write("silver", self.id, silver, first_seq=first, last_seq=last, day=day)
        if dead:
            self.lake.write("dead", self.id, pa.concat_tables(dead), first_seq=first, last_seq=last, day=day)
        bronze = input_table([e for p in batch for e in p.entries])
        # Last: the bronze file is the mark that this range is stored.
        self.lake.write("bronze", self.id, bronze, first_seq=first, last_seq=last, day=day)

    # -- close -----------------------------------------------------------------------------

    async def close(self, *, flush: bool = True) -> None:
        """Stop taking ingest, flush what is queued (when `flush` and the lake allows), close
        the log. What could not be flushed stays in the log for the next start. Idempotent."""
        if self._state in ("closed", "new"):
            self._state = "closed"
            return
        was_running = self._state == "running"
        self._state = "closing"
        if self._flusher is not None:
            assert self._flush_wanted is not None
            self._flush_wanted.set()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if flush and was_running:
            try:
                await self.flush()
            except StorageError as exc:
                log.warning("pipeline %s: final flush failed; the log keeps the records: %s", self.id, exc)
        await self._wal.close()
        self._idempotency.close()
        self._state = "closed"
