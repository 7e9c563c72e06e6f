"""Live resume against a real pipeline core and its real lake, with flushes and restarts
landing at every point of a resuming client's read of the silver store: whatever the
interleaving, a client that resumes after a seq gets every record after it, once, in order.

The store's read (DuckDB over the lake) runs in a thread; the lake it reads through lets the
pipeline store its backlog in the middle of that read (`RacingLake`), which is the race a
flush on the pipeline's own loop can win at any time."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake, LakeFile
from dash_ray.live.fanout import StoredRead, Topic
from dash_ray.live.feed import LiveRead
from dash_ray.pipeline.core import PipelineCore
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import parse_spec
from tests.waiting import until

SPEC = {"id": "resume", "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}},
                                     "filter": "n % 10 <> 3", "validate": [{"field": "n", "min": 0}]},
        "flush": {"records": 100_000, "seconds": 3600}}


class RacingLake(Lake):
    """The pipeline's lake as a reader in another thread sees it, where a listing may be the
    moment the pipeline stores what it holds: `race_at` counts the reader's listings (1 is
    its first), and at that one `flush` runs on the pipeline's loop before the listing."""

    def __init__(self, root: str) -> None:
        base = Lake.from_url(root)
        super().__init__(base.fs, base.root, base.url)
        self.race_at: int | None = None
        self.flush: Callable[[], None] | None = None
        self.listings = 0

    def files(self, area: Any, pipeline: str, *, superseded: bool = False) -> list[LakeFile]:
        self.listings += 1
        if self.listings == self.race_at and self.flush is not None:
            self.flush()
        return super().files(area, pipeline, superseded=superseded)


class Source:
    """The fan-out's source over a core: its feed, and the lake's silver store through DuckDB."""

    def __init__(self, core: PipelineCore, lake: RacingLake) -> None:
        self.core = core
        self.lake = lake
        self.engine = DuckDBEngine(lake, "resume")
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


class Pipeline:
    """A pipeline core that can crash and start again on the same log and lake."""

    def __init__(self, home: Path, *, ring: int) -> None:
        self.home = home
        self.ring = ring
        self.sent = 0  # records ingested: seq s carries n = s - 1
        self.core: PipelineCore | None = None

    async def start(self) -> PipelineCore:
        core = PipelineCore(parse_spec(SPEC), wal_dir=self.home / "wal", lake=Lake.from_url(str(self.home / "lake")),
                            fsync=False)
        core.live.max_records = self.ring
        await core.start()
        self.core = core
        return core

    async def ingest(self, count: int) -> None:
        assert self.core is not None
        payload = b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(self.sent, self.sent + count))
        await self.core.ingest([RawBatch(payload, count, time.time_ns() // 1000)])
        self.sent += count

    async def crash(self) -> None:
        """Stop without storing (the log keeps it) and start again: an empty ring, a backlog."""
        assert self.core is not None
        await self.core.close(flush=False)
        await self.start()

    async def resume(self, after: int, *, race_at: int | None, batch: int = 5000) -> list[int]:
        """The seqs a client resuming after `after` receives, until it has the newest."""
        core = self.core
        assert core is not None
        loop = asyncio.get_running_loop()
        lake = RacingLake(str(self.home / "lake"))
        lake.race_at = race_at
        lake.flush = lambda: asyncio.run_coroutine_threadsafe(core.flush(), loop).result(30)
        topic = Topic(Source(core, lake), wait_s=0.2, batch=batch)
        seqs: list[int] = []
        gaps: list[dict] = []

        async def send(text: str) -> None:
            message = orjson.loads(text)
            if message.get("type") == "gap":
                gaps.append(message)
            elif "records" in message:
                seqs.extend(r["seq"] for r in message["records"])

        watcher = await topic.join(send, after)
        task = asyncio.create_task(watcher.run())
        want = expected(self.sent, after)
        try:
            await until(lambda: not want or seqs[-1:] == want[-1:] or task.done(),
                        what=f"the client to reach seq {want[-1:]}")
        finally:
            topic.leave(watcher)
            task.cancel()
            (outcome,) = await asyncio.gather(task, return_exceptions=True)
        if isinstance(outcome, Exception):
            raise outcome
        assert gaps == []
        return seqs

    async def close(self) -> None:
        if self.core is not None:
            await self.core.close()


def expected(upto: int, after: int = 0) -> list[int]:
    """Seqs after `after` up to `upto` that are records (n = seq - 1; n % 10 == 3 filtered)."""
    return [s for s in range(after + 1, upto + 1) if (s - 1) % 10 != 3]


async def test_a_flush_during_the_store_read_after_a_restart_skips_nothing(tmp_path: Path) -> None:
    # The case of issue 21 (item 2): after a restart the ring is empty and the backlog is
    # stored while a client resuming from the start reads the silver store.
    pipeline = Pipeline(tmp_path, ring=10_000)
    await pipeline.start()
    try:
        await pipeline.ingest(10)
        assert pipeline.core is not None
        await pipeline.core.flush()
        await pipeline.ingest(25)
        await pipeline.crash()
        await pipeline.ingest(5)
        for race_at in (1, 2, 3, 4):
            assert await pipeline.resume(0, race_at=race_at) == expected(pipeline.sent), \
                f"flush at listing {race_at}: {pipeline.sent}"
            await pipeline.ingest(7)
            await pipeline.crash()
    finally:
        await pipeline.close()


STEPS = st.lists(st.one_of(
    st.tuples(st.just("ingest"), st.integers(1, 40)),
    st.tuples(st.just("flush"), st.just(0)),
    st.tuples(st.just("crash"), st.just(0)),
    st.tuples(st.just("resume"), st.integers(0, 100), st.one_of(st.none(), st.integers(1, 6)),
              st.sampled_from([3, 7, 5000])),
), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS, ring=st.sampled_from([5, 20, 10_000]))
def test_every_resume_yields_every_record_after_its_seq_whatever_the_interleaving(steps: list[tuple],
                                                                                  ring: int) -> None:
    async def run(home: Path) -> None:
        pipeline = Pipeline(home, ring=ring)
        await pipeline.start()
        try:
            for step in steps:
                assert pipeline.core is not None
                if step[0] == "ingest":
                    await pipeline.ingest(step[1])
                elif step[0] == "flush":
                    await pipeline.core.flush()
                elif step[0] == "crash":
                    await pipeline.crash()
                else:
                    _, percent, race_at, batch = step
                    after = pipeline.sent * percent // 100
                    got = await pipeline.resume(after, race_at=race_at, batch=batch)
                    assert got == expected(pipeline.sent, after), (after, race_at, batch)
        finally:
            await pipeline.close()

    with tempfile.TemporaryDirectory() as home:
        asyncio.run(run(Path(home)))
