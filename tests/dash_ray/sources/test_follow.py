"""The `pipeline` source in plain Python: two pipelines' processes (`PipelineHost`, no Ray), the
follower reaching its producer through an `Upstream` made of the producer's own live feed and
its lake read with DuckDB (what `actors/upstream.py` does over Ray). The follower gets the
producer's mapped records in order, each once, across restarts of either side, catches up
from the lake when it fell behind the producer's ring, and a restart between its append and
saving its position stores nothing twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from dash_ray.ingest.batch import RawBatch
from dash_ray.live.feed import LiveRead
from dash_ray.pipeline.host import PipelineHost
from dash_ray.query.engines import QueryEngines
from dash_ray.settings import PipelineSettings
from dash_ray.sources.base import FeedContext
from dash_ray.sources.follow import FollowFeed, follow_cycle
from dash_ray.spec import parse_spec
from tests.waiting import until

PRODUCER = {"id": "producer", "source": {"kind": "push"},
            "mapping": {"fields": {"n": {"path": "$.n", "type": "int", "required": True},
                                   "temp_c": {"path": "$.t", "type": "double"}},
                        "filter": "n % 10 <> 7"},
            "flush": {"records": 200, "seconds": 0.2}}
FOLLOWER = {"id": "follower", "source": {"kind": "pipeline", "from": "producer", "batch": 50},
            "mapping": {"fields": {"n": {"path": "$.n", "type": "int"},
                                   "temp_c": {"path": "$.temp_c", "type": "double"},
                                   "temp_f": {"expr": "temp_c * 9 / 5 + 32", "type": "double"},
                                   "producer_seq": {"path": "$.seq", "type": "int"},
                                   "time": {"path": "$.time", "type": "timestamp"}}},
            "flush": {"records": 100_000, "seconds": 3600}}


class HostUpstream:
    """The producer as a follower in another process would reach it."""

    def __init__(self, host: PipelineHost, engines: QueryEngines) -> None:
        self.host, self.engines = host, engines
        self.stored_reads = 0

    async def read(self, after: int, *, wait_s: float, limit: int) -> LiveRead:
        return await self.host.live_read(after, min(wait_s, 0.5), limit)

    async def stored(self, after: int, *, limit: int) -> tuple[list[dict[str, Any]], int, int]:
        self.stored_reads += 1
        return await asyncio.to_thread(self.engines.stored_after, self.host.core.spec, after, limit=limit)


async def no_dsn() -> str | None:
    return None


class Pair:
    def __init__(self, tmp_path: Path) -> None:
        self.settings = PipelineSettings(wal_root=str(tmp_path / "wal"), lake_url=str(tmp_path / "lake"))
        self.engines = QueryEngines(lake_url=str(tmp_path / "lake"))
        self.producer: PipelineHost | None = None
        self.follower: PipelineHost | None = None
        self.upstream: HostUpstream | None = None
        self.sent = 0

    async def start_producer(self) -> PipelineHost:
        self.producer = PipelineHost(PRODUCER, self.settings, address="127.0.0.1")
        await self.producer.start(no_dsn)
        if self.upstream is not None:
            self.upstream.host = self.producer
        return self.producer

    async def start_follower(self) -> PipelineHost:
        assert self.producer is not None
        self.upstream = self.upstream or HostUpstream(self.producer, self.engines)
        self.follower = PipelineHost(FOLLOWER, self.settings, address="127.0.0.1")
        await self.follower.start(no_dsn, upstream=lambda producer: self.upstream)
        return self.follower

    async def send(self, count: int) -> None:
        assert self.producer is not None
        payload = b"".join(orjson.dumps({"n": self.sent + i, "t": 20.0}) + b"\n" for i in range(count))
        self.sent += count
        [ack] = await self.producer.core.ingest([RawBatch(payload, count, time.time_ns() // 1000)])
        assert ack.accepted == count

    def expected(self) -> list[int]:
        return [n for n in range(self.sent) if n % 10 != 7]

    async def followed(self) -> list[int]:
        """What the follower has stored (flushed first), by `n`."""
        assert self.follower is not None
        await self.follower.core.flush()
        records, _, _ = await asyncio.to_thread(self.engines.stored_after, self.follower.core.spec, 0, limit=100_000)
        return [r["data"]["n"] for r in records]

    async def caught_up(self) -> bool:
        return await self.followed() == self.expected()

    async def close(self) -> None:
        for host in (self.follower, self.producer):
            if host is not None:
                await host.stop()
        self.engines.close()


@pytest.fixture()
async def pair(tmp_path: Path) -> Any:
    made = Pair(tmp_path)
    yield made
    await made.close()


async def test_the_follower_maps_the_producers_records_in_order_each_once(pair: Pair) -> None:
    await pair.start_producer()
    follower = await pair.start_follower()
    for _ in range(5):
        await pair.send(40)
    await until(pair.caught_up, timeout=30, every=0.2, what="every mapped record once, in order")
    [first], _, _ = pair.engines.stored_after(follower.core.spec, 0, limit=1)
    assert first["data"]["temp_f"] == 68.0 and first["data"]["producer_seq"] == 1
    state = follower.health()["source_state"]
    assert state["from"] == "producer" and state["position"] == 200 and state["last_error"] is None


async def test_either_side_restarting_resumes_without_gaps_or_duplicates(pair: Pair) -> None:
    await pair.start_producer()
    await pair.start_follower()
    await pair.send(100)
    await until(pair.caught_up, timeout=30, every=0.2, what="the first hundred")
    assert pair.follower is not None and pair.producer is not None
    await pair.follower.stop()
    await pair.send(100)  # while the follower is away
    await pair.start_follower()
    await until(pair.caught_up, timeout=30, every=0.2, what="the follower caught up")
    await pair.producer.stop()
    await pair.start_producer()
    await pair.send(100)
    await until(pair.caught_up, timeout=30, every=0.2, what="after the producer's restart")


async def test_a_follower_far_behind_catches_up_from_the_producers_lake(pair: Pair) -> None:
    producer = await pair.start_producer()
    producer.core.live.max_records = 100  # a small ring: most of what follows leaves it
    for _ in range(20):
        await pair.send(100)
        await producer.core.flush()  # a stored range may leave the ring
    assert producer.core.live.first_seq > 1000
    await pair.start_follower()
    await until(pair.caught_up, timeout=60, every=0.2, what="all 2,000 from the lake and the ring")
    assert pair.upstream is not None and pair.upstream.stored_reads > 1  # paged, not one read


async def test_a_restart_between_the_append_and_saving_the_position_stores_nothing_twice(
        pair: Pair, tmp_path: Path) -> None:
    producer = await pair.start_producer()
    # The follower's process without its own feed, so the test can run the feed and stop it
    # right after an append, before the position is saved (what a SIGKILL there leaves).
    host = pair.follower = PipelineHost({**FOLLOWER, "source": {"kind": "push"}}, pair.settings, address="127.0.0.1")
    await host.start(no_dsn)
    upstream = HostUpstream(producer, pair.engines)
    source = parse_spec(FOLLOWER).source
    context = FeedContext("follower", tmp_path / "state", upstream=lambda _id: upstream)
    appended = asyncio.Event()

    async def stops_after_the_append(batches: list[RawBatch]) -> list[Any]:
        await host.core.ingest(batches)
        appended.set()
        await asyncio.Event().wait()  # cancelled here: the position is never saved
        return []

    await pair.send(30)
    feed = FollowFeed.from_spec(source, context)
    task = asyncio.get_running_loop().create_task(feed.run(stops_after_the_append))
    await asyncio.wait_for(appended.wait(), 30)
    task.cancel()
    stored_once = await pair.followed()
    assert stored_once and orjson.loads((tmp_path / "state" / "follow.json").read_bytes())["position"] == 0
    await pair.send(30)
    feed = FollowFeed.from_spec(source, context)
    task = asyncio.get_running_loop().create_task(feed.run(host.core.ingest))
    try:
        await until(pair.caught_up, timeout=30, every=0.2, what="sixty, once each")
        assert host.health()["counters"]["duplicates"] == 1  # the named batch, appended again
    finally:
        task.cancel()


def test_follow_cycle_names_the_pipelines_around_it() -> None:
    assert follow_cycle("a", {"a": "b", "b": "c", "c": "a"}) == ["a", "b", "c", "a"]
    assert follow_cycle("a", {"a": "a"}) == ["a", "a"]
    assert follow_cycle("a", {"a": "b", "b": None}) is None
    assert follow_cycle("a", {"a": "b", "b": "c", "c": "b"}) is None  # a cycle it only leads into
    assert follow_cycle("a", {"a": "missing"}) is None
