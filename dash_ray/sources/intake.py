"""How a polled page's records reach the pipeline, once each: those older than the
incremental cursor or already ingested (by their key) are skipped, the rest are staged in the
poller's outbox, sent through the pipeline's durable ingest with an idempotency key per batch,
and their keys noted as seen only once ingest acknowledged them (`dash_ray.sources.cursor`
explains why a kill at any point neither loses nor doubles a record).

A record's key is its `primary_key` value; with no `primary_key` but an incremental cursor,
the record itself (so records sharing the cursor's last value are not ingested again by the
next poll, which asks from that value); with neither, records have no key and each poll's are
all ingested (a snapshot of the API each time).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.sources.base import Ingest
from dash_ray.sources.cursor import PollStore, Staged, record_key
from dash_ray.sources.locate import Locator
from dash_ray.sources.polling import PollError, PollStatus

__all__ = ["Intake", "later"]

# Records per batch sent to ingest (a page larger than this goes as several batches of one call).
BATCH_RECORDS = 1000


def later(a: Any, b: Any) -> bool:
    """Whether cursor value `a` comes after `b`: numbers by value, anything else as text (ISO
    8601 times of one format sort as text)."""
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return a > b
    return str(a) > str(b)


class Intake:
    """Takes the pages of one poller's polls. `poll_max` is the highest cursor value seen in the
    current poll (`begin` resets it)."""

    def __init__(self, store: PollStore, status: PollStatus, *, primary_key: Locator | None,
                 cursor: Locator | None, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._status = status
        self._primary_key = primary_key
        self._cursor = cursor
        self._clock = clock
        self.poll_max: Any = None
        self._start: Any = None

    def begin(self, start: Any) -> None:
        """A poll starts, asking for records from cursor value `start` (None: from the first)."""
        self._start = start
        self.poll_max = start

    async def drain(self, ingest: Ingest) -> None:
        """Send what a kill left in the outbox, before anything new."""
        staged = await asyncio.to_thread(self._store.staged)
        if staged is not None:
            await self._send(staged, ingest, staged.keys)

    async def take(self, records: list[Any], ingest: Ingest) -> None:
        """Ingest a page's new records; returns once they are acknowledged and noted."""
        fresh: list[Any] = []
        keys: list[str] = []
        for record in records:
            if self._cursor is not None:
                value = self._cursor.value(record)
                if value is not None:
                    if self._start is not None and later(self._start, value):
                        self._status.skipped += 1
                        continue
                    if self.poll_max is None or later(value, self.poll_max):
                        self.poll_max = value
            fresh.append(record)
            key = self._key(record)
            if key is not None:
                keys.append(key)
        if not keys:
            if fresh:
                await self._ingest(fresh, [], ingest)
            return
        known = await asyncio.to_thread(self._store.known, keys)
        new, new_keys, page_keys = [], [], set()
        for record, key in zip(fresh, keys, strict=True):
            if key in known or key in page_keys:
                self._status.skipped += 1
                continue
            page_keys.add(key)
            new.append(record)
            new_keys.append(key)
        if new:
            await self._ingest(new, new_keys, ingest, also_seen=list(known))
        else:
            await asyncio.to_thread(self._store.commit, list(known))
        self._status.seen_keys = await asyncio.to_thread(self._store.seen_count)

    def _key(self, record: Any) -> str | None:
        if self._primary_key is not None:
            value = self._primary_key.value(record)
            return None if value is None else record_key(value)
        return record_key(record) if self._cursor is not None else None

    async def _ingest(self, records: list[Any], keys: list[str], ingest: Ingest, *,
                      also_seen: list[str] | None = None) -> None:
        parts = []
        for start in range(0, len(records), BATCH_RECORDS):
            chunk = records[start:start + BATCH_RECORDS]
            payload = b"".join(orjson.dumps(r) + b"\n" for r in chunk)
            parts.append((payload, len(chunk), f"poll-{uuid.uuid4().hex}"))
        staged = Staged(parts, keys)
        await asyncio.to_thread(self._store.stage, staged)
        await self._send(staged, ingest, keys + (also_seen or []))

    async def _send(self, staged: Staged, ingest: Ingest, seen: list[str]) -> None:
        now_us = int(self._clock() * 1e6)
        batches = [RawBatch(payload=p, count=c, received_at_us=now_us, idempotency_key=i) for p, c, i in staged.parts]
        answers = await ingest(batches)
        refused = [a for a in answers if not isinstance(a, Ack)]
        if refused:
            raise PollError(f"the pipeline did not take the records: {refused[0]}",
                            retry_after=getattr(refused[0], "retry_after", None))
        await asyncio.to_thread(self._store.commit, seen)
        self._status.records += sum(a.accepted for a in answers if isinstance(a, Ack) and not a.duplicate)
