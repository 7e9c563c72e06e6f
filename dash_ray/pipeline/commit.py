"""The commit step: how mapped ranges of a pipeline become stored, and how a restart finds
where storage ends. It owns the order every crash test relies on:

1. silver rows (through the `SilverStore`) and dead letters (the lake's `dead` area) of the
   range, in any order;
2. the raw records as the lake's `bronze` file of the range, which marks it stored;
3. the idempotency keys of the range, persisted;
4. only then the log entries of the range are trimmed.

Before steps 1 and 2 it checks it is still the pipeline's owner: an owner a newer
one replaced writes nothing more to the lake (`dash_ray.lake_owner`), as its log refuses its appends and trims.

After the trim, each follower (`dash_ray.silver.follower`) is offered the range's silver rows,
to copy them into a secondary store off the ingest path; a follower that misses an offer finds
the range in the lake.

A crash anywhere leaves the range either unmarked (no bronze file: recovery discards its silver
and dead files and the log replays it) or marked and still in the log (recovery skips it and
keeps its keys). A failed attempt is retried with the same range and the same day, so the
retry's file names are the first attempt's and replace them (no orphan beside a larger range).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from dash_ray.errors import InternalError
from dash_ray.ingest.idempotency import IdempotencyIndex
from dash_ray.lake import Lake
from dash_ray.lake_owner import LakeFence
from dash_ray.log.base import Log
from dash_ray.mapping import MappingResult
from dash_ray.pipeline.entry import LoggedEntry, input_table
from dash_ray.silver.base import SilverStore
from dash_ray.silver.follower import SilverFollower

__all__ = ["Commit", "Mapped", "Recovery"]


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


@dataclass
class Mapped:
    """Consecutive durable log entries, mapped together, waiting to be stored."""

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

    @property
    def nbytes(self) -> int:
        return sum(len(e.payload) for e in self.entries)


@dataclass(frozen=True)
class Recovery:
    """Where storage ends after a restart: the last stored seq and the newest silver rows."""

    stored_seq: int
    silver_tail: pa.Table | None


@dataclass
class _Attempt:
    """A range being committed: pinned, with its day, until it is stored."""

    batch: list[Mapped]
    day: dt.date


class Commit:
    """Stores one pipeline's mapped ranges in order; one owner, one event loop."""

    def __init__(self, pipeline_id: str, *, lake: Lake, silver: SilverStore, log: Log,
                 keys: IdempotencyIndex, today: Callable[[], dt.date] = _utc_today,
                 followers: Sequence[SilverFollower] = (), fence: LakeFence | None = None) -> None:
        self.pipeline_id = pipeline_id
        self.lake = lake
        self.silver = silver
        self.log = log
        self.keys = keys
        self._today = today
        self.followers = list(followers)
        self.fence = fence
        self._attempt: _Attempt | None = None

    def recover(self, hot_rows: int) -> Recovery:
        """Find the last stored seq (the newest bronze file) and discard silver and dead files
        past it (an unfinished commit). Blocking: call it in a thread."""
        stored = self.lake.last_seq("bronze", self.pipeline_id)
        self.silver.discard_after(stored)
        self.lake.remove_after("dead", self.pipeline_id, stored)
        return Recovery(stored, self.lake.tail("silver", self.pipeline_id, hot_rows))

    @property
    def pinned(self) -> list[Mapped] | None:
        """The range a failed attempt left to retry, if any."""
        return self._attempt.batch if self._attempt else None

    async def store(self, batch: Sequence[Mapped], *, stored_seq: int) -> int:
        """Store `batch` (which must follow `stored_seq` without a gap) and trim the log
        through it; returns its last seq. On any error the range stays pinned: the next call
        must pass the same batch (`pinned`), and nothing of it is trimmed."""
        if self._attempt is None:
            _check_contiguous(self.pipeline_id, batch, stored_seq)
            self._attempt = _Attempt(list(batch), self._today())
        elif [id(m) for m in batch] != [id(m) for m in self._attempt.batch]:
            raise InternalError(f"pipeline {self.pipeline_id}: a retried commit must repeat its range")
        attempt = self._attempt
        first, last = batch[0].first_seq, batch[-1].last_seq
        rows = await asyncio.to_thread(self._write, attempt, first, last)
        keys = [k for m in batch for k in m.keys]
        if keys:
            await asyncio.to_thread(self.keys.persist, keys)
        await self.log.trim(last)
        self._attempt = None
        for follower in self.followers:
            follower.offer(rows, first_seq=first, last_seq=last)
        return last

    def _write(self, attempt: _Attempt, first: int, last: int) -> pa.Table | None:
        batch = attempt.batch
        rows = [m.result.rows for m in batch if m.result.rows.num_rows]
        dead = [m.result.dead for m in batch if m.result.dead.num_rows]
        table = pa.concat_tables(rows, promote_options="permissive") if rows else None
        self._check_owner()
        if table is not None:
            self.silver.write(table, first_seq=first, last_seq=last)
        if dead:
            self.lake.write("dead", self.pipeline_id, pa.concat_tables(dead), first_seq=first, last_seq=last,
                            day=attempt.day)
        # Last: the bronze file is the mark that this range is stored.
        bronze = input_table([e for m in batch for e in m.entries])
        self._check_owner()
        self.lake.write("bronze", self.pipeline_id, bronze, first_seq=first, last_seq=last, day=attempt.day)
        return table


    def _check_owner(self) -> None:
        if self.fence is not None:
            self.fence.check()


def _check_contiguous(pipeline_id: str, batch: Sequence[Mapped], stored_seq: int) -> None:
    expected = stored_seq + 1
    for mapped in batch:
        for entry in mapped.entries:
            if entry.first_seq != expected:
                raise InternalError(
                    f"pipeline {pipeline_id}: the range to store is not contiguous: expected seq "
                    f"{expected}, found an entry starting at {entry.first_seq}; nothing was trimmed")
            expected = entry.last_seq + 1
