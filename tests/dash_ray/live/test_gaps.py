"""Gap messages on a real pipeline core, its real lake and real retention: a client catching up
from the silver store is told of records that no longer exist (retention removed them) and of
nothing else: records that were filtered out or dead-lettered never were rows, so a range of
them is passed over silently, also when it is the oldest the store has."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.lifecycle.retention import apply_retention
from dash_ray.live.fanout import StoredRead, Topic
from dash_ray.live.feed import LiveRead
from dash_ray.pipeline.core import PipelineCore
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import RetentionSpec, parse_spec
from tests.waiting import until

SPEC = {"id": "gaps", "mapping": {"fields": {"time": {"path": "$.ts", "type": "timestamp"},
                                              "n": {"path": "$.n", "type": "int"}},
                                   "filter": "n % 10 <> 3", "validate": [{"field": "n", "min": 0}]},
        "flush": {"records": 100_000, "seconds": 3600}}
OLD, NOW = "2020-01-01T00:00:00Z", dt.datetime.now(dt.timezone.utc).isoformat()


class Source:
    def __init__(self, core: PipelineCore) -> None:
        self.core = core
        self.engine = DuckDBEngine(core.lake, "gaps")
        self.columns = spec_schema(core.spec).columns

    async def read(self, after: int | None, *, wait_s: float, limit: int) -> LiveRead:
        if after is None:
            return await self.core.live.read(self.core.live.last_seq, wait_s=0)
        return await self.core.live.read(after, wait_s=wait_s, limit=limit)

    async def stored(self, after: int, *, limit: int) -> StoredRead:
        records, reached, first = await asyncio.to_thread(self.engine.records_after, after, self.columns, limit=limit)
        return StoredRead(records, reached, first)

    async def status(self) -> str:
        return "running"


@pytest.fixture()
async def core(tmp_path: Path) -> Any:
    core = PipelineCore(parse_spec(SPEC), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")),
                        fsync=False)
    core.live.max_records = 1  # the ring lets every stored range go: catch-up reads the store
    await core.start()
    yield core
    await core.close()


async def store(core: PipelineCore, ns: list[int], ts: str) -> None:
    payload = b"".join(orjson.dumps({"n": n, "ts": ts}) + b"\n" for n in ns)
    await core.ingest([RawBatch(payload, len(ns), time.time_ns() // 1000)])
    await core.flush()


async def resume(core: PipelineCore, after: int, last: int) -> tuple[list[int], list[dict]]:
    """What a client resuming after `after` gets until it reaches `last`."""
    seqs: list[int] = []
    gaps: list[dict] = []

    async def send(text: str) -> None:
        message = orjson.loads(text)
        if message.get("type") == "gap":
            gaps.append(message)
        else:
            seqs.extend(r["seq"] for r in message["records"])

    topic = Topic(Source(core), wait_s=0.2, batch=4)
    watcher = await topic.join(send, after)
    task = asyncio.create_task(watcher.run())
    try:
        await until(lambda: seqs[-1:] == [last] or task.done(), what=f"the client to reach seq {last}")
    finally:
        topic.leave(watcher)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return seqs, gaps


async def test_an_oldest_range_that_was_all_filtered_is_no_gap(core: PipelineCore) -> None:
    await store(core, [3, 13, 23], NOW)              # seqs 1..3, every one filtered out
    await store(core, [0, 1, 2, 4, 5], NOW)          # seqs 4..8
    await store(core, [6, 7], NOW)                   # seqs 9..10
    seqs, gaps = await resume(core, 0, 10)
    assert gaps == [] and seqs == [4, 5, 6, 7, 8, 9, 10]


async def test_an_oldest_range_that_was_all_dead_is_no_gap(core: PipelineCore) -> None:
    await store(core, [-1, -2], NOW)                 # seqs 1..2, both dead letters
    await store(core, [0, 1], NOW)                   # seqs 3..4
    seqs, gaps = await resume(core, 0, 4)
    assert gaps == [] and seqs == [3, 4]


async def test_rows_retention_removed_are_a_gap_though_their_dead_letters_remain(core: PipelineCore) -> None:
    await store(core, [0, 1, -1, 2, 4], OLD)         # seqs 1..5: rows of 2020, one dead letter
    await store(core, [5, 6, 7], NOW)                # seqs 6..8
    today = dt.datetime.now(dt.timezone.utc).date()
    # Silver is kept 30 days by event date, dead letters for ever: 2020's rows go.
    apply_retention(core.lake, "gaps", RetentionSpec(silver_days=30), today=today)
    assert core.lake.files("dead", "gaps") and min(f.first_seq for f in core.lake.files("silver", "gaps")) == 6
    seqs, gaps = await resume(core, 0, 8)
    assert gaps == [{"type": "gap", "from": 1, "to": 5}] and seqs == [6, 7, 8]
    # A client past the removed range is told nothing; one inside it, of the rest.
    assert await resume(core, 5, 8) == ([6, 7, 8], [])
    assert await resume(core, 2, 8) == ([6, 7, 8], [{"type": "gap", "from": 3, "to": 5}])


async def test_removed_rows_between_kept_ones_are_a_gap_in_their_place(core: PipelineCore) -> None:
    await store(core, [0, 1], NOW)                   # seqs 1..2
    await store(core, [2, 4, 5], OLD)                # seqs 3..5: a backfill of old events
    await store(core, [6, 7], NOW)                   # seqs 6..7
    apply_retention(core.lake, "gaps", RetentionSpec(silver_days=30), today=dt.datetime.now(dt.timezone.utc).date())
    seqs, gaps = await resume(core, 0, 7)
    assert seqs == [1, 2, 6, 7] and gaps == [{"type": "gap", "from": 3, "to": 5}]


def _file(first: int, last: int, day: str = "2026-05-01") -> Any:
    from dash_ray.lake import LakeFile

    return LakeFile(first, last, dt.date.fromisoformat(day), f"/x/date={day}/{first:020d}-{last:020d}.parquet")


def test_what_retention_notes_stays_short_and_exact(tmp_path: Path) -> None:
    lake = Lake.from_url(str(tmp_path / "lake"))
    assert lake.expired("p") == []
    # 1..10 and 21..30 go; 11..20 holds rows of a kept file: two ranges.
    lake.note_expired("p", [_file(1, 10), _file(21, 30)], kept=[_file(11, 20, "2026-05-02")])
    assert lake.expired("p") == [(1, 10), (21, 30)]
    # 31..40 and 51..60 go, and nothing kept holds 41..50 (all filtered, or dead): one range.
    lake.note_expired("p", [_file(31, 40), _file(51, 60)], kept=[_file(11, 20, "2026-05-02")])
    assert lake.expired("p") == [(1, 10), (21, 60)]
    assert not [f for f in lake.files("silver", "p")]  # the note is no file a reader lists


def test_lost_ranges_are_the_removed_ones_less_what_kept_files_hold() -> None:
    from dash_ray.query.duckdb import lost_ranges

    assert lost_ranges([], [_file(1, 5)], 5) == []
    assert lost_ranges([(1, 10)], [_file(4, 6, "2026-05-02")], 100) == [(1, 3), (7, 10)]
    assert lost_ranges([(1, 3), (4, 9)], [], 100) == [(1, 9)]
    assert lost_ranges([(1, 50)], [_file(10, 60)], 30) == [(1, 9)]
    assert lost_ranges([(20, 30), (1, 5)], [], 100) == [(1, 5), (20, 30)]


async def test_a_reader_far_behind_reads_the_store_a_page_of_files_at_a_time(core: PipelineCore) -> None:
    # Twenty stored files of 100 seqs holding one row each (the rest filtered out or dead): a
    # read after seq 0 for 50 records reads the first file only, not all twenty (issue 21).
    for k in range(20):
        await store(core, [10 * k + 3] * 99 + [10 * k], NOW)
    source = Source(core)
    first = await source.stored(0, limit=50)
    assert [r["data"]["n"] for r in first.records] == [0] and first.last_seq == 100
    seen, after = [], 0
    while after < 2000:
        page = await source.stored(after, limit=50)
        seen += [r["data"]["n"] for r in page.records]
        assert page.last_seq > after
        after = page.last_seq
    assert seen == [10 * k for k in range(20)]
