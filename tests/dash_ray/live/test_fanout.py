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

from dash_ray.errors import NotFoundError, UnavailableError
from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.live.fanout import StoredRead, Topic
from dash_ray.pipeline.core import PipelineCore
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import parse_spec
from tests.waiting import until

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

    async def status(self) -> str:
        return "running"

    async def stored(self, after: int, *, limit: int) -> StoredRead:
        self.stored_reads += 1
        records, reached, first = await asyncio.to_thread(self.engine.records_after, after, self.columns, limit=limit)
        return StoredRead(records, reached, first)


class Client:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.records: list[dict] = []
        self.gaps: list[dict] = []
        self.statuses: list[str] = []
        self.starts: list[int] = []  # the seq of each data message with no records

    async def send(self, text: str) -> None:
        message = orjson.loads(text)
        if message.get("type") == "gap":
            self.gaps.append(message)
        elif message.get("type") == "status":
            self.statuses.append(message["status"])
        elif not message["records"]:
            self.starts.append(message["seq"])
        else:
            assert message["seq"] >= message["records"][-1]["seq"]
            self.records += message["records"]
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow client's pace, the behaviour under test

    @property
    def seqs(self) -> list[int]:
        return [r["seq"] for r in self.records]


async def ingest(core: PipelineCore, first: int, count: int) -> None:
    payload = b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(first, first + count))
    await core.ingest([RawBatch(payload, count, time.time_ns() // 1000)])


def expected(upto: int, after: int = 0) -> list[int]:
    # n = seq - 1; records with n % 10 == 3 are filtered out.
    return [s for s in range(after + 1, upto + 1) if (s - 1) % 10 != 3]


@pytest.fixture()
async def core(tmp_path: Path) -> Any:
    core = PipelineCore(parse_spec(SPEC), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")),
                        fsync=False)
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
        await asyncio.sleep(0.002)  # the ingest's pace, not a wait
    await until(lambda: fast.seqs[-1:] == [600], timeout=5)
    fast_done = time.monotonic() - started
    await until(lambda: slow.seqs[-1:] == [600], timeout=30)
    assert fast.seqs == expected(600) and slow.seqs == expected(600)
    assert max(w.overflows for w in watchers) > 0  # the slow one did overflow, and lost nothing
    assert fast_done < 3.0
    for task in tasks:
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


class NotRunning(Source):
    """The source of a pipeline whose actor is not running (its feed refuses, as the gateway
    does for a pipeline with no actor) until `run` gives it one; `state` is what the registry
    says of it meanwhile."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.core: PipelineCore | None = None  # type: ignore[assignment]
        self.gone = False
        self.stored_reads = 0
        self.status_asks = 0

    def run(self, core: PipelineCore) -> None:
        Source.__init__(self, core)
        self.state = "running"

    async def read(self, after: int | None, *, wait_s: float, limit: int) -> Any:
        if self.core is None:
            raise UnavailableError("pipeline live is not running", retry_after=1.0)
        return await super().read(after, wait_s=wait_s, limit=limit)

    async def status(self) -> str:
        self.status_asks += 1
        return self.state


async def test_a_client_of_a_pipeline_not_running_is_told_so_then_gets_its_records(tmp_path: Path) -> None:
    source = NotRunning("failed")
    topic = Topic(source, wait_s=0.2)
    resumed, tail = Client(), Client()
    # Joining answers at once, though the feed does not (it waited for the feed: issue 21).
    watchers = [await asyncio.wait_for(topic.join(c.send, after), 2) for c, after in ((resumed, 0), (tail, None))]
    tasks = [asyncio.create_task(w.run()) for w in watchers]
    await until(lambda: resumed.statuses == ["failed"] and tail.statuses == ["failed"])
    assert resumed.starts == tail.starts == [] and not any(t.done() for t in tasks)
    late = Client()
    tasks.append(asyncio.create_task((await topic.join(late.send, None)).run()))
    await until(lambda: late.statuses == ["failed"])
    core = PipelineCore(parse_spec(SPEC), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")),
                        fsync=False)
    await core.start()
    try:
        source.run(core)
        await until(lambda: tail.starts == [0] and late.starts == [0])
        await ingest(core, 0, 20)
        await until(lambda: all(c.seqs[-1:] == [20] for c in (resumed, tail, late)))
        for client in (resumed, tail, late):
            assert client.statuses == ["failed", "running"] and client.seqs == expected(20)
        assert resumed.starts == [0]
    finally:
        for watcher in list(topic.watchers):
            topic.leave(watcher)
        await asyncio.gather(*tasks, return_exceptions=True)
        await core.close()


async def test_clients_that_leave_while_the_pipeline_is_not_running_are_let_go() -> None:
    source = NotRunning("starting")
    topic = Topic(source)
    clients = [Client() for _ in range(100)]
    watchers = [await asyncio.wait_for(topic.join(c.send, None), 2) for c in clients]
    tasks = [asyncio.create_task(w.run()) for w in watchers]
    await until(lambda: all(c.statuses == ["starting"] for c in clients))
    feed = topic._task
    for watcher in watchers:  # as the route does when a socket goes
        topic.leave(watcher)
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert not topic.watchers and topic._task is None and feed is not None and feed.cancelled()
