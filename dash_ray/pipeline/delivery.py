"""One sink of a pipeline, delivering off the ingest path: `DeliverySink`.

Two tasks of its own, never the pipeline's:
- the taker moves mapped records into the sink's durable state (`store.py`): those the
  `when` selects go to `pending`, and the cursor moves past every record looked at. Records
  come from `offer` (the pipeline's mapped batches, kept in a queue bounded in records) or,
  for what the queue does not hold, from the lake's silver files: after a restart everything
  after the cursor up to what the lake had stored at the start (the log's records after that
  are mapped and offered again by the pipeline), and after an overflow of the queue (dropped
  in one piece, never blocking) what it dropped, once the lake has stored it. While
  `max_pending` records wait in the sink (a destination down), it takes no more: its queue
  overflows and the lake holds the rest.
- the sender forms the deliveries that are due (`grouping.Timing`) and sends them in order,
  one at a time: a delivery is formed once, in one transaction with its records leaving
  `pending`, so it keeps its id and body across restarts (at least once, duplicates only with
  the same `webhook-id`). A failed attempt is tried again after the retry schedule's delay
  (`Retry-After` honoured) unless the breaker is open; after the last it is dead, kept with its
  reason until `redeliver`. A 410 kills the delivery and disables the sink until `redeliver`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.lake import Lake
from dash_ray.silver.follower import catch_up_chunks
from dash_ray.sinks.base import MappedBatch
from dash_ray.sinks.grouping import Messages, SinkSpec, Timing, delivery_id
from dash_ray.sinks.outbound import Destination, Outcome, destination_for
from dash_ray.sinks.policy import Breaker, Retries
from dash_ray.sinks.rows import rows_as_json
from dash_ray.sinks.select import Selector
from dash_ray.sinks.store import Delivery, SinkStore
from dash_ray.spec.sinks import WebhookSink

__all__ = ["DeliverySink"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_CURSOR_EVERY_S = 1.0
_LAKE_FILES = 8
_POLL_S = 0.2
_TAKE_ROWS = 20_000
_TAKE_EVERY_S = 0.1


class DeliverySink:
    """`offer` from the pipeline's loop, `start(stored_seq)` once, `await close()` at the end."""

    def __init__(self, pipeline_id: str, spec: SinkSpec, *, folder: Path, lake: Lake, types: dict[str, str],
                 json_columns: frozenset[str], stored_seq: Callable[[], int], secrets: Mapping[str, str],
                 max_queue_records: int = 50_000, clock: Callable[[], float] = time.time,
                 destination: Destination | None = None, inline_db: bool = False) -> None:
        self.name = spec.name
        self.spec = spec
        self.pipeline_id = pipeline_id
        self._lake = lake
        self._json_columns = json_columns
        self._stored_seq = stored_seq
        self._clock = clock
        self._selector = Selector.compile(spec.when, types)
        self._group_by = None if isinstance(spec, WebhookSink) else spec.group_by
        self._messages = Messages(pipeline_id, spec)
        self._timing = Timing.of(spec)
        self._retries = Retries(spec.retry)
        self.breaker = Breaker(spec.retry.breaker_failures, spec.retry.breaker_open)
        self._store = SinkStore(folder / "state.sqlite")
        self._lock = asyncio.Lock()
        self._inflight: asyncio.Future[Any] | None = None
        self._inline_db = inline_db  # in the sink process: no ingest waits on its loop, and a thread hop costs more
        self._error: str | None = None
        self._destination: Destination | None
        try:
            self._destination = destination or destination_for(spec, secrets)
        except KeyError as exc:
            self._destination = None
            self._error = f"secret {exc.args[0]!r} is not set"
        self.max_queue_records = max_queue_records
        self._queue: collections.deque[MappedBatch] = collections.deque()
        self._queued = 0
        self._lake_through = 0
        self._cursor = self._store.cursor()
        self._cursor_saved = (self._cursor, 0.0)
        self._disabled = self._store.get("disabled")
        self._delivered_seq = int(self._store.get("delivered_seq") or 0)
        self._held = self._store.pending_count() + self._store.outbox_counts()["queued_records"]
        self.counts = {"delivered": 0, "delivered_records": 0, "retried": 0, "dead": 0, "dropped": 0}
        self._outbox = self._store.outbox_counts()
        self._dead_list: list[dict[str, Any]] = [d.info() for d in self._store.dead_deliveries()]
        self._last_error_at: float | None = None
        self._wake_taker = asyncio.Event()
        self._wake_sender = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._taken = True  # records were taken since the sender last formed deliveries
        self.version = 0  # moves whenever `status()` may have changed

    # -- the hook --------------------------------------------------------------------------

    def offer(self, batch: MappedBatch) -> None:
        if self._closing or batch.last_seq <= self._cursor:
            return
        rows = batch.rows.num_rows
        if self._queued + rows > self.max_queue_records:
            # Never block, never grow: drop the queue whole and read it back from the lake.
            last = max([batch.last_seq, *(b.last_seq for b in self._queue)])
            self._lake_through = max(self._lake_through, last)
            self._queue.clear()
            self._queued = 0
            self.counts["dropped"] += 1
            self.version += 1
        else:
            self._queue.append(batch)
            self._queued += rows
        self._wake_taker.set()

    def read_back(self, through: int) -> None:
        """Read records up to `through`, which never reached this sink, from the lake once stored."""
        self._lake_through = max(self._lake_through, through)
        self._wake_taker.set()

    def start(self, stored_seq: int, *, through: int = 0) -> None:
        """Begin: what the lake stored after the cursor (up to `stored_seq`, or up to `through`
        once it is stored) is read from it. A new sink (no state yet) starts after
        `stored_seq`: it does not send the history."""
        if self._store.get("cursor") is None:
            self._store.put("cursor", str(stored_seq))
            self._cursor = max(self._cursor, stored_seq)
        self._lake_through = max(self._lake_through, stored_seq, through)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._guarded(self._take_loop), name=f"sink-take:{self.name}"),
                       loop.create_task(self._guarded(self._send_loop), name=f"sink-send:{self.name}")]

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._inflight is not None:
            with contextlib.suppress(Exception):
                await self._inflight
        with contextlib.suppress(Exception):
            await self._db(self._store.put, "cursor", str(self._cursor))
        if self._destination is not None:
            await self._destination.close()
        self._store.close()

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._inline_db:
            return fn(*args, **kwargs)
        async with self._lock:
            # Shielded: a cancelled task leaves its call to finish (`close` waits for it), so
            # the database is never closed under a running call.
            self._inflight = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
            return await asyncio.shield(self._inflight)

    async def _guarded(self, loop: Callable[[], Awaitable[None]]) -> None:
        while not self._closing:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("sink %s of %s failed; going on in 1 s", self.name, self.pipeline_id)
                self._note_error(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)

    # -- taking records --------------------------------------------------------------------

    async def _take_loop(self) -> None:
        while True:
            if self._held >= self.spec.max_pending or self._disabled:
                await self._sleep(self._wake_taker, 0.5)
                continue
            if self._cursor < self._lake_through:
                await self._take_from_lake(self._lake_through)
                continue
            if not self._queue:
                await self._sleep(self._wake_taker, 1.0)
                continue
            # What waits in the queue, up to `_TAKE_ROWS` rows, in one transaction.
            tables, through, count = [], self._cursor, 0
            while self._queue and count < _TAKE_ROWS:
                batch = self._queue.popleft()
                self._queued -= batch.rows.num_rows
                if batch.last_seq > through:
                    rows = batch.rows
                    if batch.first_seq <= through:
                        rows = rows.filter(pc.greater(rows.column("seq"), through))
                    count += rows.num_rows
                    tables.append(rows)
                    through = batch.last_seq
            if through > self._cursor:
                # `when` once over the take's rows: its cost is mostly per call, not per row.
                rows = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
                await self._take(self._selector.select(rows), through)
            if self._queued < _TAKE_ROWS:
                # Let batches gather: a take's cost is mostly per take, and a sink's records
                # need not go out within a tenth of a second.
                await asyncio.sleep(_TAKE_EVERY_S)

    async def _take_from_lake(self, through: int) -> None:
        while self._stored_seq() < through:
            await asyncio.sleep(_POLL_S)
        files = await asyncio.to_thread(self._lake.files, "silver", self.pipeline_id)
        for chunk in catch_up_chunks(files, after=self._cursor, through=through, max_files=_LAKE_FILES):
            tables = [await asyncio.to_thread(self._lake.read_file, f) for f in chunk.files]
            table = pa.concat_tables(tables, promote_options="permissive") if tables else None
            if table is not None and table.num_rows:
                seq = table.column("seq")
                keep = pc.and_(pc.greater(seq, self._cursor), pc.less_equal(seq, chunk.last_seq))
                table = self._selector.select(table.filter(keep).sort_by("seq"))
            await self._take(table, chunk.last_seq)
            if self._held >= self.spec.max_pending:
                return

    async def _take(self, selected: pa.Table | None, through: int) -> None:
        """Take the records `when` selected (`selected`) and move the cursor to `through`."""
        now = self._clock()
        if selected is not None and selected.num_rows:
            quiet = None if self._timing.batching else now - self._timing.repeat
            # The records' JSON is made in the database's thread, off the event loop ingest runs on.
            await self._db(self._take_rows, selected, through, now, quiet)
            self._cursor_saved = (through, now)
            self._held += selected.num_rows
            self._taken = True
            self._wake_sender.set()
        elif now - self._cursor_saved[1] >= _CURSOR_EVERY_S:
            # Nothing selected: looking at these records again after a crash costs nothing.
            await self._db(self._store.put, "cursor", str(through))
            self._cursor_saved = (through, now)
        self._cursor = max(self._cursor, through)
        self.version += 1

    def _take_rows(self, selected: pa.Table, through: int, now: float, quiet: float | None) -> None:
        records = rows_as_json(selected, self._json_columns, self._group_by)
        self._store.take(records, through, now, quiet_since=quiet)

    # -- sending ---------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        next_due = float("-inf")
        while True:
            now = self._clock()
            # Only when a group may be due: the look at the groups is the loop's dearest step.
            form = now >= next_due or self._taken
            self._taken = self._taken and not form
            formed, delivery = await self._db(self._next_delivery, now, form)
            if formed is not None:
                next_due, self._outbox = formed
                self.version += 1
            if self._disabled or self._destination is None:
                await self._sleep(self._wake_sender, 5.0)
                continue
            if delivery is None:
                await self._sleep(self._wake_sender, min(max(next_due - now, 0.01), 5.0))
                continue
            ready_at = max(delivery.next_at, now + self.breaker.wait_s())
            if ready_at > now or not self.breaker.allow():
                await self._sleep(self._wake_sender, min(max(min(ready_at, next_due) - now, 0.01), 5.0))
                continue
            outcome = await self._destination.send(delivery)
            await self._settle(delivery, outcome)

    def _next_delivery(self, now: float, form: bool) -> tuple[tuple[float, dict[str, int]] | None, Delivery | None]:
        """In the database's thread, in one trip from the event loop: form the deliveries due
        now (when `form`: when the next one is due, the outbox's counts), then the next queued."""
        formed = self._form_due(now) if form else None
        return formed, self._store.next_queued()

    def _form_due(self, now: float) -> tuple[float, dict[str, int]]:
        """Form the deliveries due now, each in its own transaction; when the next one is due
        and the outbox's counts."""
        store, timing = self._store, self._timing
        next_due = float("inf")
        groups = store.pending_groups()
        for grp, (count, times) in sorted(groups.items(), key=lambda g: g[1][1].started):
            due = timing.due_at(count, times)
            while due <= now and count > 0:
                taken = store.pending_json(grp, timing.take())
                seqs = [seq for seq, _ in taken]
                body = self._messages.body_of([r for _, r in taken], grp)
                ident = delivery_id(self.pipeline_id, self.name, grp, min(seqs), max(seqs))
                store.form(ident, grp, seqs, body, now, batching=timing.batching)
                count -= len(seqs)
                due = float("-inf") if timing.batching and count >= timing.max_records else now + (
                    timing.wait if timing.batching else timing.interval)
            if count > 0:
                next_due = min(next_due, due)
        if not timing.batching:
            store.forget_groups(now - timing.repeat)
        return next_due, store.outbox_counts()

    def _delivered(self, delivery: Delivery) -> dict[str, int]:
        self._store.delivered(delivery)
        return self._store.outbox_counts()

    async def _settle(self, delivery: Delivery, outcome: Outcome) -> None:
        now = self._clock()
        attempts = delivery.attempts + 1
        if outcome.ok:
            self.breaker.success()
            self._outbox = await self._db(self._delivered, delivery)
            self.counts["delivered"] += 1
            self.counts["delivered_records"] += delivery.records
            self._delivered_seq = max(self._delivered_seq, delivery.last_seq)
            self._held -= delivery.records
        else:
            reason = outcome.error or "failed"
            self._note_error(reason)
            delay = None if outcome.gone else self._retries.delay(attempts, outcome.retry_after)
            if outcome.status != 429:
                self.breaker.failure()
            if delay is None:
                await self._db(self._store.dead, delivery, attempts, reason, now)
                self.counts["dead"] += 1
                self._held -= delivery.records
                self._dead_list = [d.info() for d in await self._db(self._store.dead_deliveries)]
            else:
                await self._db(self._store.retry, delivery, attempts, now + delay, reason)
                self.counts["retried"] += 1
            if outcome.gone:
                self._disabled = f"the destination answered 410 Gone ({now:.0f}); redeliver to enable it again"
                await self._db(self._store.put, "disabled", self._disabled)
            self._outbox = await self._db(self._store.outbox_counts)
        self.version += 1  # after the awaits: what `status()` says now is all of it
        self._wake_taker.set()

    async def redeliver(self) -> int:
        """Queue every dead delivery again (same ids) and enable a disabled sink; how many."""
        count = await self._db(self._store.redeliver, self._clock())
        await self._db(self._store.put, "disabled", None)
        self._disabled = None
        self.breaker.success()
        self._held += sum(d["records"] for d in self._dead_list)
        self._dead_list = []
        self._outbox = await self._db(self._store.outbox_counts)
        self.version += 1
        self._wake_sender.set()
        self._wake_taker.set()
        return int(count)

    # -- state -----------------------------------------------------------------------------

    def _note_error(self, reason: str) -> None:
        self._error = reason[:500]
        self._last_error_at = self._clock()
        self.version += 1

    async def _sleep(self, event: asyncio.Event, seconds: float) -> None:
        """Until `event` is set or `seconds` pass. Not `asyncio.wait_for`: on Python 3.11 its
        cancellation can hang when the event is set at the same moment (seen in `close`)."""
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()
        event.clear()

    def status(self) -> dict[str, Any]:
        """Counters (since the process started, but `dead`/`queued`/`retrying`, which are
        durable), breaker state, last error, last delivered seq, cursor, dead deliveries."""
        state = "disabled" if self._disabled else "failing" if self._destination is None else (
            "open" if self.breaker.state != "closed" else "running")
        return {
            "name": self.name, "kind": self.spec.kind, "state": state, "breaker": self.breaker.state,
            "delivered": self.counts["delivered"], "delivered_records": self.counts["delivered_records"],
            "failed": self.counts["retried"] + self.counts["dead"], "retrying": self._outbox["retrying"],
            "queued": self._outbox["queued"], "dead": self._outbox["dead"], "pending_records": self._held,
            "dropped_batches": self.counts["dropped"], "disabled": self._disabled,
            "last_error": self._error, "last_error_at": _iso(self._last_error_at),
            "last_delivered_seq": self._delivered_seq, "cursor": self._cursor,
            "dead_deliveries": self._dead_list,
        }

    def deliveries(self) -> dict[str, int]:
        """For `dash_sink_deliveries_total`: deliveries by result since the process started."""
        return {"delivered": self.counts["delivered"], "retried": self.counts["retried"],
                "dead": self.counts["dead"]}


def _iso(at: float | None) -> str | None:
    return None if at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
