"""The fan-out without Ray: a real pipeline core's live feed and its real lake (DuckDB) as the
source, clients as functions that receive text. Every client gets every mapped record once,
in order: live from now, resuming from any seq (ring or silver store), and a slow client that
overflows its queue catches up instead of losing records or holding the others up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from dash_ray.errors import NotFoundError
from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.live.fanout import StoredRead, Topic
from dash_ray.pipeline.core import PipelineCore
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import spec_schema
from dash_ray.spec import parse_spec

SPEC = {"id": "live", "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}},
                                   "filter": "n % 10 <> 3", "validate": [{"field": "n", "min": 0}]},
        "flush": {"records": 100_000, "seconds": 3600}}


class Source:
    def __init__(self, core: PipelineCore) -> None:
        self.core = core
        self.engine = DuckDBEngine(core.lake, "live")
        self.columns = spec_schema(core.spec).columns
        self.gone = False
        self.stored_reads = 0

    async def read(self, after: int | None, *, wait_s: float, limit: int) -> Any:
        if self.gone:
            raise NotFoundError("no pipeline 'live'")
        if after is None:
            return await self.core.live.read(self.core.live.last_seq, wait_s=0)
        return await self.core.live.read(after, wait_s=wait_s, limit=limit)

    async def stored(self, after: int, *, limit: int) -> StoredRead:
        self.stored_reads += 1
        records, reached, first = await asyncio.to_thread(self.engine.records_after, after, self.columns, limit=limit)
        return StoredRead(records, reached, first)


class Client:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.records: list[dict] = []
        self.gaps: list[dict] = []

    async def send(self, text: str) -> None:
        message = orjson.loads(text)
        if message.get("type") == "gap":
            self.gaps.append(message)
        else:
            assert message["seq"] >= message["records"][-1]["seq"]
            self.records += message["records"]
        if self.delay:
            await asyncio.sleep(self.delay)

    @property
    def seqs(self) -> list[int]:
        return [r["seq"] for r in self.records]


async def ingest(core: PipelineCore, first: int, count: int) -> None:
    payload = b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(first, first + count))
    await core.ingest([RawBatch(payload, count, time.time_ns() // 1000)])


def expected(upto: int, after: int = 0) -> list[int]:
    # n = seq - 1; records with n % 10 == 3 are filtered out.
    return [s for s in range(after + 1, upto + 1) if (s - 1) % 10 != 3]


async def until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


@pytest.fixture()
async def core(tmp_path: Path) -> Any:
    core = PipelineCore(parse_spec(SPEC), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")), fsync=False)
    await core.start()
    yield core
    await _leave_topics()
    await core.close()


_RUNNING: list[tuple[Topic, object, asyncio.Task]] = []


async def watch(topic: Topic, client: Client, after: int | None) -> asyncio.Task:
    watcher = await topic.join(client.send, after)
    task = asyncio.create_task(watcher.run())
    _RUNNING.append((topic, watcher, task))
    return task


async def _leave_topics() -> None:
    # As the route does when a socket closes: leave, so the topic's long poll stops too.
    while _RUNNING:
        topic, watcher, task = _RUNNING.pop()
        topic.leave(watcher)  # type: ignore[arg-type]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_live_and_resuming_clients_get_every_record_once_in_order(core: PipelineCore) -> None:
    topic = Topic(Source(core), wait_s=0.5)
    await ingest(core, 0, 50)
    core.records()
    live, resumed, middle = Client(), Client(), Client()
    tasks = [await watch(topic, live, None), await watch(topic, resumed, 0), await watch(topic, middle, 25)]
    for first in range(50, 500, 50):
        await ingest(core, first, 50)
    core.records()
    await until(lambda: resumed.seqs[-1:] == [500] and live.seqs[-1:] == [500] and middle.seqs[-1:] == [500])
    assert resumed.seqs == expected(500)
    assert middle.seqs == expected(500, after=25)
    assert live.seqs == expected(500, after=50)
    for task in tasks:
        task.cancel()


async def test_a_client_resuming_from_before_the_ring_is_caught_up_from_the_store(core: PipelineCore) -> None:
    core.live.max_records = 40
    source = Source(core)
    topic = Topic(source, wait_s=0.5)
    for first in range(0, 300, 30):
        await ingest(core, first, 30)
        await core.flush()  # stored, so the ring may let it go
    assert core.live.first_seq > 100
    old = Client()
    task = await watch(topic, old, 7)
    await until(lambda: old.seqs[-1:] == [300])
    assert old.seqs == expected(300, after=7) and old.gaps == [] and source.stored_reads > 0
    task.cancel()


async def test_a_slow_client_catches_up_without_loss_and_does_not_slow_the_others(core: PipelineCore) -> None:
    topic = Topic(Source(core), max_messages=4, wait_s=0.5)
    fast, slow = Client(), Client(delay=0.05)
    tasks = [await watch(topic, fast, None), await watch(topic, slow, None)]
    watchers = list(topic.watchers)
    started = time.monotonic()
    for first in range(0, 600, 10):
        await ingest(core, first, 10)
        core.records()
        await asyncio.sleep(0.002)
    await until(lambda: fast.seqs[-1:] == [600], timeout=5)
    fast_done = time.monotonic() - started
    await until(lambda: slow.seqs[-1:] == [600], timeout=30)
    assert fast.seqs == expected(600) and slow.seqs == expected(600)
    assert max(w.overflows for w in watchers) > 0  # the slow one did overflow, and lost nothing
    assert fast_done < 3.0
    for task in tasks:
        task.cancel()


async def test_records_that_no_longer_exist_are_a_gap(core: PipelineCore) -> None:
    core.live.max_records = 10
    source = Source(core)
    for first in range(0, 100, 20):
        await ingest(core, first, 20)
        await core.flush()
    # Retention removed the oldest range from the silver store.
    lake = core.lake
    oldest = lake.files("silver", "live")[0]
    lake.delete([oldest])
    for f in lake.files("dead", "live"):
        if f.first_seq == oldest.first_seq:
            lake.delete([f])
    client = Client()
    task = await watch(Topic(source, wait_s=0.5), client, 0)
    await until(lambda: client.seqs[-1:] == [100])
    assert client.gaps == [{"type": "gap", "from": 1, "to": oldest.last_seq}]
    assert client.seqs == expected(100, after=oldest.last_seq)
    task.cancel()


async def test_watchers_of_a_deleted_pipeline_are_closed_with_4404(core: PipelineCore) -> None:
    source = Source(core)
    topic = Topic(source, wait_s=0.1)
    client = Client()
    watcher = await topic.join(client.send, None)
    source.gone = True
    await until(lambda: watcher.closed)
    assert watcher.close_code == 4404
    late = await topic.join(Client().send, None)
    assert late.closed and late.close_code == 4404
