"""The `pipeline` source: another pipeline's mapped records, in seq order, each once, fed
through this pipeline's durable ingest.

The follower pulls: it asks the producer for the records after the last seq it has stored
(a long poll of the producer's live feed; what has left the feed's ring is read from the
producer's stored silver rows instead), so a slow follower never holds its producer up, and
it resumes from its own position after a restart of either side.

Each record reaches this pipeline's mapping as an object of the producer's mapped fields,
with `seq` (the producer's) and `time` (ISO 8601 UTC) beside them.

Exactly once: the position is kept in `follow.json` in the pipeline's state folder. Before a
batch is appended, the file names the batch (its records and an idempotency key made of the
producer's id and seq range); after the append, the position moves past it. A restart
between the two appends the named batch again under the same key (stored once either way:
`dash_ray.ingest.idempotency`), then moves on.

A producer that does not exist (yet), or does not answer (restarting), is asked again with
a back-off (shown in `source_state.last_error`); a cycle of `pipeline` sources is refused at
deploy (`follow_cycle`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from dash_ray.errors import NotFoundError, Problem, SpecError
from dash_ray.ingest.batch import RawBatch
from dash_ray.sources.base import FeedContext, Ingest, iso_utc
from dash_ray.sources.durable import append_until_stored, batch_from_json, batch_to_json, write_atomically
from dash_ray.spec import PipelineSource, PipelineSpec

__all__ = ["FeedRead", "FollowFeed", "Upstream", "check_no_cycle", "follow_cycle"]

_WAIT_S = 20.0
_MAX_BACKOFF_S = 10.0


class FeedRead(Protocol):
    """A read of the producer's live feed (`dash_ray.live.feed.LiveRead`)."""

    records: list[dict[str, Any]]
    last_seq: int
    behind: bool
    first_seq: int


class Upstream(Protocol):
    """How a follower reaches its producer: its live feed (a long poll of up to `wait_s`), and
    its stored records after a seq: (records, the seq read up to, the first seq it can
    answer for; `dash_ray.query.duckdb.DuckDBEngine.records_after`). Either may raise;
    NotFoundError: no such pipeline."""

    async def read(self, after: int, *, wait_s: float, limit: int) -> FeedRead: ...

    async def stored(self, after: int, *, limit: int) -> tuple[list[dict[str, Any]], int, int]: ...


def follow_cycle(pipeline_id: str, source_of: Mapping[str, str | None]) -> list[str] | None:
    """The cycle `pipeline_id` would be part of, given what each pipeline follows
    (`source_of`: id -> the id its `pipeline` source reads, or None), as the ids around it
    (`[a, b, a]`), or None."""
    path = [pipeline_id]
    current = source_of.get(pipeline_id)
    while current is not None:
        path.append(current)
        if current == pipeline_id:
            return path
        if current in path[:-1]:
            return None  # a cycle further up that this pipeline is not part of
        current = source_of.get(current)
    return None


def check_no_cycle(spec: PipelineSpec, others: Mapping[str, PipelineSpec]) -> None:
    """SpecError when `spec`'s `pipeline` source would close a cycle with the pipelines
    `others` (by id; `spec`'s own entry, if any, is its older version)."""
    if not isinstance(spec.source, PipelineSource):
        return
    source_of = {pid: s.source.from_ if isinstance(s.source, PipelineSource) else None for pid, s in others.items()}
    source_of[spec.id] = spec.source.from_
    if (cycle := follow_cycle(spec.id, source_of)) is not None:
        raise SpecError(problems=[Problem("source.from", "pipelines would follow each other in a cycle: "
                                                         + " -> ".join(cycle))])


@dataclass
class _State:
    position: int = 0
    records: int = 0
    last_read_at: float | None = None
    last_ok_at: float | None = None
    last_error: str | None = None
    gaps: int = 0


@dataclass
class FollowFeed:
    """The `pipeline` source, a Feeder over an `Upstream`."""

    spec: PipelineSource
    upstream: Upstream
    state_dir: Path
    clock: Callable[[], float] = time.time
    _state: _State = field(default_factory=_State)

    @classmethod
    def from_spec(cls, spec: PipelineSource, context: FeedContext) -> FollowFeed:
        if context.upstream is None:
            raise RuntimeError("a pipeline source needs a way to reach other pipelines (FeedContext.upstream)")
        return cls(spec, context.upstream(spec.from_), context.state_dir, context.clock)

    @property
    def _path(self) -> Path:
        return self.state_dir / "follow.json"

    def state(self) -> dict[str, Any] | None:
        s = self._state
        return {"from": self.spec.from_, "position": s.position, "records": s.records, "gaps": s.gaps,
                "last_read_at": iso_utc(s.last_read_at), "last_ok_at": iso_utc(s.last_ok_at),
                "last_error": s.last_error}

    async def run(self, ingest: Ingest) -> None:
        position, pending = await asyncio.to_thread(self._load)
        self._state.position = position
        if pending is not None:  # the last run may have stopped during this append: again, same key
            await self._append(ingest, pending[0], pending[1])
        backoff = 0.5
        while True:
            try:
                records, reached = await self._next()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the producer is away: ask again later
                self._state.last_error = _describe(exc, self.spec.from_)
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            backoff = 0.5
            self._state.last_read_at = self.clock()
            if records:
                await self._append(ingest, self._batch(records), reached)
            elif reached > self._state.position:
                self._state.position = reached
                await asyncio.to_thread(self._save, reached, None)

    async def _next(self) -> tuple[list[dict[str, Any]], int]:
        """The records after the position, and the seq they reach (past dead or filtered ones)."""
        after, limit = self._state.position, self.spec.batch
        read = await self.upstream.read(after, wait_s=_WAIT_S, limit=limit)
        if not read.behind:
            return [r for r in read.records if r["seq"] > after], read.last_seq
        records, reached, first = await self.upstream.stored(after, limit=limit)
        if first > after + 1:
            self._state.gaps += 1  # removed by the producer's retention before it was read
        if not records and reached <= after:
            reached = max(reached, read.first_seq - 1, first - 1)  # everything before the ring is stored
        return records, reached

    def _batch(self, records: list[dict[str, Any]]) -> RawBatch:
        lines = [orjson.dumps({**r["data"], "seq": r["seq"], "time": r["time"]}) + b"\n" for r in records]
        key = f"pipeline:{self.spec.from_}:{records[0]['seq']}-{records[-1]['seq']}"
        return RawBatch(payload=b"".join(lines), count=len(lines), received_at_us=int(self.clock() * 1e6),
                        idempotency_key=key)

    async def _append(self, ingest: Ingest, batch: RawBatch, reached: int) -> None:
        """Name the batch durably, store it (until the pipeline takes it), then move past it."""
        await asyncio.to_thread(self._save, self._state.position, (batch, reached))
        state = self._state
        await append_until_stored(ingest, batch, lambda error: setattr(state, "last_error", error))
        state.position, state.last_ok_at, state.last_error = reached, self.clock(), None
        state.records += batch.count
        await asyncio.to_thread(self._save, reached, None)

    def _load(self) -> tuple[int, tuple[RawBatch, int] | None]:
        if not self._path.exists():
            return 0, None
        data = orjson.loads(self._path.read_bytes())
        pending = data.get("pending")
        if pending is None:
            return int(data["position"]), None
        return int(data["position"]), (batch_from_json(pending), int(pending["reached"]))

    def _save(self, position: int, pending: tuple[RawBatch, int] | None) -> None:
        data: dict[str, Any] = {"from": self.spec.from_, "position": position}
        if pending is not None:
            data["pending"] = {**batch_to_json(pending[0]), "reached": pending[1]}
        write_atomically(self._path, data)


def _describe(exc: Exception, producer: str) -> str:
    if isinstance(exc, NotFoundError):
        return f"pipeline {producer!r} does not exist (yet); waiting for it"
    return f"{type(exc).__name__}: {exc}"

