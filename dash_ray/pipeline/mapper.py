"""The mapping schedule of one pipeline: durable log entries are mapped in seq order (even if
their syncs completed out of order), several at a time, after the ack; each mapped range goes
to the hot cache, to the sinks and to the queue of ranges waiting to be stored.

Mapping has a fixed cost per call, so entries wait a moment to be mapped together: until
`_MAP_BATCH_RECORDS` records wait, or `_MAP_DELAY_S` after the first. A backlog (after a
restart, the whole log) is mapped `_MAP_CHUNK_RECORDS` at a time, yielding to the event loop
between chunks, so ingest goes on meanwhile. Reads map what waits first (`map_all`), so a
client reads its own writes. A mapping error that is not the records' fault dead-letters the
range with rule `internal` instead of losing it: entries leave the durable queue only once
their result is in hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pyarrow as pa

from dash_ray.live.records import rows_to_records
from dash_ray.mapping import CompiledMapping, MappingResult, compile_mapping
from dash_ray.mapping.deadletters import internal_failure
from dash_ray.pipeline.commit import Mapped
from dash_ray.pipeline.counters import Counters
from dash_ray.pipeline.entry import LoggedEntry, input_table
from dash_ray.pipeline.hot import HotBuffer
from dash_ray.sinks.base import MappedBatch, Sinks
from dash_ray.spec import PipelineSpec

__all__ = ["Mapper"]

log = logging.getLogger(__name__)

_MAP_BATCH_RECORDS = 2000
_MAP_DELAY_S = 0.02
_MAP_CHUNK_RECORDS = 20_000


class Mapper:
    """Unmapped durable entries (`durable`, by first seq) and mapped ranges not yet stored
    (`mapped`, in seq order) of one pipeline; one event loop."""

    def __init__(self, spec: PipelineSpec, counters: Counters, *, sinks: Sinks,
                 on_mapped: Callable[[], None], active: Callable[[], bool]) -> None:
        self.spec = spec
        self.counters = counters
        self.mapping: CompiledMapping = compile_mapping(spec.mapping)
        self.hot = HotBuffer(spec.hot_records)
        self.json_columns = frozenset(n for n, f in spec.mapping.fields.items() if f.type == "json") | (
            {"extra"} if spec.mapping.keep_extra or not spec.mapping.fields else set())
        self.durable: dict[int, tuple[LoggedEntry, list[str]]] = {}
        self.mapped: list[Mapped] = []
        self.applied_seq = 0
        self._sinks = sinks
        self._on_mapped = on_mapped
        self._active = active
        self._scheduled = False

    @property
    def backlog(self) -> int:
        """Records durable but not yet mapped."""
        return sum(entry.count for entry, _ in self.durable.values())

    def warm(self, tail: pa.Table | None) -> None:
        """Fill the hot cache from the newest stored silver rows (after a restart)."""
        if tail is not None and tail.num_rows:
            self.hot.extend(rows_to_records(tail, self.json_columns))

    def add(self, entry: LoggedEntry, keys: list[str]) -> None:
        """A durable entry to map (soon, or at once when enough wait)."""
        self.durable[entry.first_seq] = (entry, keys)
        if entry.last_seq - self.applied_seq >= _MAP_BATCH_RECORDS:
            self.map_ready(_MAP_CHUNK_RECORDS)
        self.schedule(_MAP_DELAY_S)

    def schedule(self, delay: float) -> None:
        if not self._scheduled and self.durable:
            self._scheduled = True
            asyncio.get_running_loop().call_later(delay, self._pass)

    def _pass(self) -> None:
        self._scheduled = False
        if self._active():
            self.map_ready(_MAP_CHUNK_RECORDS)
            self.schedule(0.0)  # more may wait (a backlog is mapped a chunk at a time)

    async def catch_up(self, budget_s: float) -> None:
        """Map what waits, a chunk at a time, yielding to the event loop between chunks, for
        up to about `budget_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        while self.map_ready(_MAP_CHUNK_RECORDS) and loop.time() < deadline:
            await asyncio.sleep(0)

    def map_all(self, limit: int | None = None) -> None:
        """Map what waits (at most about `limit` records)."""
        mapped = 0
        while (limit is None or mapped < limit) and (n := self.map_ready(_MAP_CHUNK_RECORDS)):
            mapped += n

    def map_ready(self, max_records: int | None = None) -> int:
        """Map the entries that follow the last mapped one (at least one entry, about
        `max_records` records when given, else all); returns the records mapped."""
        entries: list[LoggedEntry] = []
        keys: list[str] = []
        count = 0
        seq = self.applied_seq + 1
        while seq in self.durable and (max_records is None or not entries or count < max_records):
            entry, entry_keys = self.durable[seq]
            entries.append(entry)
            keys += entry_keys
            count += entry.count
            seq = entry.last_seq + 1
        if not entries:
            return 0
        table = input_table(entries)
        try:
            result = self.mapping.apply(table)
        except Exception as exc:  # not the records' fault: keep them, say why
            log.exception("pipeline %s: mapping seq %d..%d failed; dead-lettering them", self.spec.id,
                          entries[0].first_seq, entries[-1].last_seq)
            reason = f"mapping failed: {type(exc).__name__}: {exc}"[:500]
            result = MappingResult(self.mapping.schema.empty_table(), internal_failure(table, reason), 0)
        # Only now, with the result in hand, do the entries leave the durable queue.
        for entry in entries:
            del self.durable[entry.first_seq]
        self.applied_seq = entries[-1].last_seq
        mapped = Mapped(entries, result, keys)
        self.mapped.append(mapped)
        self.counters.mapped += result.rows.num_rows
        self.counters.dead += result.dead.num_rows
        self.counters.filtered += result.filtered
        if result.rows.num_rows:
            # Only the newest `capacity` rows can stay in the cache: convert just those.
            rows = result.rows.slice(max(0, result.rows.num_rows - self.hot.capacity))
            self.hot.extend(rows_to_records(rows, self.json_columns))
            if len(self._sinks):
                self._sinks.offer(MappedBatch(self.spec.id, mapped.first_seq, mapped.last_seq, result.rows))
        self._on_mapped()
        return count
