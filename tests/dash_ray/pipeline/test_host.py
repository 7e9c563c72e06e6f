"""One pipeline's process in plain Python (`dash_ray.pipeline.host`), without Ray: its spec
admitted again at start on the platform as it is (the database asked for only when the spec
may use it), the PostgreSQL follower its spec asks for, ingest over its channel reaching the
core, the reads, the replay jobs, and a stop that keeps what it could not store."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from dash_ray.errors import SpecError, UnavailableError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.ingest.channel import ChannelClient
from dash_ray.pipeline.host import PipelineHost
from dash_ray.settings import PipelineSettings

FIELDS = {"time": {"path": "$.ts", "type": "timestamp"}, "temp_c": {"path": "$.temp", "type": "double"}}


def spec_data(pipeline_id: str = "host", **storage: Any) -> dict[str, Any]:
    return {"id": pipeline_id, "mapping": {"fields": FIELDS}, "storage": storage,
            "flush": {"records": 100_000, "seconds": 3600}}


def settings(tmp_path: Path) -> PipelineSettings:
    return PipelineSettings(wal_root=str(tmp_path / "wal"), lake_url=str(tmp_path / "lake"))


def dsn_of(value: str | None) -> tuple[Callable[[], Awaitable[str | None]], list[str | None]]:
    asked: list[str | None] = []

    async def silver_dsn() -> str | None:
        asked.append(value)
        return value
    return silver_dsn, asked


def batch(count: int) -> RawBatch:
    payload = b"".join(orjson.dumps({"ts": "2026-01-01T00:00:00Z", "temp": 20 + i}) + b"\n" for i in range(count))
    return RawBatch(payload=payload, count=count, received_at_us=time.time_ns() // 1000)


async def test_a_lake_pipeline_starts_without_asking_for_the_database_and_serves_its_calls(tmp_path: Path) -> None:
    host = PipelineHost(spec_data(silver="lake"), settings(tmp_path), address="127.0.0.1")
    with pytest.raises(UnavailableError):
        host.endpoint()  # not running yet
    with pytest.raises(UnavailableError, match="not running yet"):
        host.replay({})
    silver_dsn, asked = dsn_of("postgresql://unused")
    health = await host.start(silver_dsn)
    assert asked == [] and health["state"] == "running" and host.core.followers == []
    client = ChannelClient(host.endpoint())
    try:
        [ack] = await client.call([batch(3)])
    finally:
        await client.close()
    assert isinstance(ack, Ack) and (ack.first_seq, ack.last_seq) == (1, 3)
    assert [r["seq"] for r in await host.records(None, 10)] == [1, 2, 3]
    where = await host.live_read(None, 0.0, 10)
    assert (where.last_seq, where.records) == (3, [])
    assert [r["seq"] for r in (await host.live_read(1, 0.0, 10)).records] == [2, 3]
    assert await host.core.flush() == 3
    job = host.replay({"first_seq": 1, "last_seq": 2})
    assert host.job(job["id"])["id"] == job["id"] and host.replay_dead()["kind"] == "dead-replay"
    with pytest.raises(RuntimeError):
        await host.start(silver_dsn)  # once only
    await host.stop()
    with pytest.raises(UnavailableError):
        host.endpoint()
    await host.stop()  # idempotent


async def test_a_spec_asking_for_postgresql_on_a_platform_without_one_is_refused_at_start(tmp_path: Path) -> None:
    host = PipelineHost(spec_data(silver="postgres"), settings(tmp_path), address="127.0.0.1")
    silver_dsn, asked = dsn_of(None)
    with pytest.raises(SpecError) as refused:
        await host.start(silver_dsn)
    assert asked == [None] and [p.path for p in refused.value.problems] == ["storage.silver"]
    assert host.core.state == "new"
    await host.stop()
    # Leaving the choice to the platform, the same spec runs on the lake alone.
    unset = PipelineHost(spec_data(), settings(tmp_path), address="127.0.0.1")
    assert (await unset.start(silver_dsn))["state"] == "running" and unset.core.followers == []
    assert asked == [None, None]
    await unset.stop()


@pytest.mark.parametrize("silver", [None, "postgres"])
async def test_a_pipeline_on_a_platform_with_a_database_follows_it_there(
        tmp_path: Path, pg_dsn: str, silver: str | None) -> None:
    data = spec_data(f"host-{silver or 'unset'}", **({"silver": silver} if silver else {}))
    host = PipelineHost(data, settings(tmp_path), address="127.0.0.1")
    silver_dsn, asked = dsn_of(pg_dsn)
    health = await host.start(silver_dsn)
    try:
        assert asked == [pg_dsn] and len(host.core.followers) == 1
        assert set(host.core.followers[0].counters()) <= set(health["counters"])
    finally:
        await host.stop()
