"""A pipeline's recovery when it starts: where storage ends in the lake (the files an unfinished
commit left are discarded, `commit.py`), which entries of the write-ahead log lie past it (to be
mapped and stored again), and the idempotency keys of every entry the log still holds.

Guarantees:
- Every key the log holds is remembered with the ack it was first given, also the keys of
  entries already in the lake: a crash between the lake write and the trim must not forget
  them. Those are persisted, then the log is trimmed through the stored seq.
- The entries past the stored seq follow it without a gap; otherwise InternalError, and
  nothing is trimmed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from dash_ray.errors import InternalError
from dash_ray.ingest.batch import Ack
from dash_ray.ingest.idempotency import IdempotencyIndex
from dash_ray.lake import Lake
from dash_ray.lake_owner import LakeFence
from dash_ray.log.base import Log
from dash_ray.pipeline.commit import Commit
from dash_ray.pipeline.entry import LoggedEntry, decode_entry
from dash_ray.silver.base import SilverStore
from dash_ray.silver.follower import SilverFollower

__all__ = ["Recovered", "recover"]


@dataclass
class Recovered:
    """What a start found: the commit step and the idempotency keys it goes on with, where
    storage ends (`stored_seq`, and the newest silver rows to warm the hot cache with), and
    the log's entries past it with their keys, in order."""

    commit: Commit
    keys: IdempotencyIndex
    stored_seq: int
    silver_tail: pa.Table | None
    waiting: list[tuple[LoggedEntry, list[str]]] = field(default_factory=list)

    @property
    def next_seq(self) -> int:
        return self.waiting[-1][0].last_seq + 1 if self.waiting else self.stored_seq + 1

    @property
    def records(self) -> int:
        return sum(entry.count for entry, _ in self.waiting)

    @property
    def nbytes(self) -> int:
        return sum(len(entry.payload) for entry, _ in self.waiting)


async def recover(pipeline_id: str, *, log: Log, folder: Path, lake: Lake, silver: SilverStore,
                  followers: Sequence[SilverFollower], hot_records: int, window_s: float, max_keys: int,
                  clock: Callable[[], float]) -> Recovered:
    """Open the log, find where the lake's storage ends and what of the log lies past it.
    Raises StorageError when the lake cannot be read, WalCorruptError when the log is damaged,
    InternalError when the lake and the log disagree."""
    # The log first: it creates its folder (fsync'd into its parent), where the keys live.
    entries = await asyncio.to_thread(lambda: [decode_entry(e.data) for e in log.open()])
    # The log fences older owners' appends from here; the marker fences their lake commits.
    fence = LakeFence(lake, pipeline_id)
    await asyncio.to_thread(fence.take, log.epoch)
    folder.mkdir(parents=True, exist_ok=True)  # for a log kept elsewhere
    # Off the event loop: opening (or creating) the SQLite file costs fsyncs, and the loop may
    # be a shared host's, serving other pipelines meanwhile.
    keys = await asyncio.to_thread(IdempotencyIndex, folder / "idempotency.sqlite", window_s=window_s,
                                   max_keys=max_keys, clock=clock)
    try:
        commit = Commit(pipeline_id, lake=lake, silver=silver, log=log, keys=keys, followers=followers, fence=fence)
        found = await asyncio.to_thread(commit.recover, hot_records)
        recovered = Recovered(commit, keys, found.stored_seq, found.silver_tail)
        stored_keys: list[str] = []
        for entry in entries:
            remembered = _remember(keys, entry)
            if entry.last_seq <= found.stored_seq:
                stored_keys += remembered
                continue
            if entry.first_seq != recovered.next_seq:
                raise InternalError(
                    f"pipeline {pipeline_id}: log entry starts at seq {entry.first_seq}, expected "
                    f"{recovered.next_seq}; the lake and the log disagree")
            recovered.waiting.append((entry, remembered))
        if stored_keys:
            await asyncio.to_thread(keys.persist, stored_keys)
        if entries:
            await log.trim(found.stored_seq)
    except BaseException:
        keys.close()
        raise
    return recovered


def _remember(keys: IdempotencyIndex, entry: LoggedEntry) -> list[str]:
    """Remember the keys of the batches of a logged entry, each with its first ack."""
    remembered = []
    seq = entry.first_seq
    for meta in entry.batches:
        if meta.dedupe_keys:
            ack = Ack(meta.count - len(meta.rejected), seq, seq + meta.count - 1, meta.rejected)
            for key in meta.dedupe_keys:
                keys.remember(key, ack, at=meta.received_at_us / 1e6)
                remembered.append(key)
        seq += meta.count
    return remembered
