"""A pipeline's live feed: its newest mapped records, in seq order, for the web replicas that
fan them out to WebSocket clients (`dash_ray.live.fanout`). It is a sink on the pipeline's
hook, so it sees each mapped range once it is durable.

Readers ask for what follows a seq and wait (long poll) when there is nothing yet. The ring
keeps at least `max_records` of the newest records and never drops a range not yet stored
(the silver store does not have it yet), so everything after the stored seq can be read here
and everything up to it from the silver store: a reader never meets a hole. Records are
converted to their JSON shape (`{"seq", "time", "data"}`) once, when first read.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from dash_ray.errors import UnavailableError
from dash_ray.live.records import rows_to_records
from dash_ray.sinks.base import MappedBatch
from dash_ray.timeouts import timeout

__all__ = ["LiveFeed", "LiveRead"]


@dataclass
class _Range:
    first_seq: int
    last_seq: int
    rows: pa.Table
    records: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class LiveRead:
    """What a read found. `records` follow the reader's seq in order; `last_seq` is where
    the reader now is (it may pass records that were dead-lettered or filtered). `behind`:
    what the reader asked for has left the ring; read it from the silver store up to
    `first_seq - 1`, then come back."""

    records: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0
    behind: bool = False
    first_seq: int = 0


class LiveFeed:
    """One pipeline's ring of recent mapped ranges; one event loop."""

    name = "live"

    def __init__(self, json_columns: frozenset[str], *, stored_seq: Callable[[], int],
                 max_records: int = 10_000) -> None:
        self._json_columns = json_columns
        self._stored_seq = stored_seq
        self.max_records = max_records
        self._ring: deque[_Range] = deque()
        self._records = 0
        self._position = 0  # the last seq mapped (records or not)
        self._start = 1  # the first seq the ring can answer for
        self._changed = asyncio.Event()
        self._closed = False
        self.waiting = 0  # readers in a long poll now (one per web replica with watchers)

    def begin(self, seq: int) -> None:
        """Where the feed starts: after the last stored seq, on start or restart."""
        self._position, self._start = seq, seq + 1
        self._changed.set()  # readers that came before the start ask again
        self._changed = asyncio.Event()

    @property
    def last_seq(self) -> int:
        return self._position

    @property
    def first_seq(self) -> int:
        return self._start

    def offer(self, batch: MappedBatch) -> None:
        if batch.last_seq <= self._position:
            return
        self._ring.append(_Range(batch.first_seq, batch.last_seq, batch.rows))
        self._records += batch.rows.num_rows
        self._position = batch.last_seq
        stored = self._stored_seq()
        while self._ring and self._records - self._ring[0].rows.num_rows >= self.max_records \
                and self._ring[0].last_seq <= stored:
            gone = self._ring.popleft()
            self._records -= gone.rows.num_rows
            self._start = gone.last_seq + 1
        self._changed.set()
        self._changed = asyncio.Event()

    def advance(self, seq: int) -> None:
        """Mapped ranges with no rows (all dead or filtered) move the position too."""
        if seq > self._position:
            self._position = seq
            self._changed.set()
            self._changed = asyncio.Event()

    async def read(self, after: int, *, wait_s: float = 0.0, limit: int = 5000) -> LiveRead:
        """The records after `after`, at most about `limit` (whole ranges), waiting up to
        `wait_s` when there are none yet. UnavailableError once the pipeline is closing."""
        if self._closed:
            raise UnavailableError("the pipeline is closing; its live feed will be back after its restart",
                                   retry_after=1.0)
        if after < self._start - 1:
            return LiveRead(last_seq=after, behind=True, first_seq=self._start)
        if after >= self._position and wait_s > 0:
            self.waiting += 1
            try:
                async with timeout(wait_s):
                    await self._changed.wait()
            except asyncio.TimeoutError:
                pass
            finally:
                self.waiting -= 1
            if after < self._start - 1:
                return LiveRead(last_seq=after, behind=True, first_seq=self._start)
        records: list[dict[str, Any]] = []
        position = max(after, self._start - 1)
        for part in self._ring:
            if part.last_seq <= after:
                continue
            if part.records is None:
                part.records = rows_to_records(part.rows, self._json_columns)
            records += [r for r in part.records if r["seq"] > after]
            position = part.last_seq
            if len(records) >= limit:
                break
        else:
            position = max(position, self._position)
        return LiveRead(records, position, first_seq=self._start)

    async def close(self) -> None:
        """Wake every waiting reader; later reads are refused."""
        self._closed = True
        self._changed.set()
