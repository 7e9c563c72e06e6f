"""A pipeline's process keeps its write-ahead log where the settings say (DASH_LOG): on
`postgres`, in the database the platform gives at start (asked even when the spec keeps its
silver rows in the lake), so a new process elsewhere, sharing no folder with the first (which
died without closing anything), replays every acknowledged record once."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import orjson
import pytest

from dash_ray.errors import DashError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.lake import Lake
from dash_ray.log.choice import drop_log, log_name
from dash_ray.log.postgres import PostgresLog
from dash_ray.pipeline.host import PipelineHost
from dash_ray.settings import PipelineSettings


def _batch(first: int, count: int) -> RawBatch:
    payload = b"".join(orjson.dumps({"n": n}) + b"\n" for n in range(first, first + count))
    return RawBatch(payload=payload, count=count, received_at_us=time.time_ns() // 1000)


def _spec(pipeline_id: str) -> dict[str, object]:
    return {"id": pipeline_id, "storage": {"silver": "lake"},
            "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}}},
            "flush": {"records": 100_000, "seconds": 3600}}


async def test_a_pipeline_on_the_postgres_log_replays_on_another_node(pg_dsn: str, tmp_path: Path) -> None:
    pipeline_id = f"pglog-{uuid.uuid4().hex[:6]}"
    lake = str(tmp_path / "lake")
    asked: list[str] = []

    async def platform_dsn() -> str | None:
        asked.append(pg_dsn)
        return pg_dsn

    first = PipelineHost(_spec(pipeline_id), PipelineSettings(wal_root=str(tmp_path / "a"), lake_url=lake,
                                                              log="postgres"), address="127.0.0.1")
    await first.start(platform_dsn)
    assert asked == [pg_dsn] and isinstance(first.core._wal, PostgresLog)
    acks = [(await first.core.ingest([_batch(10 * i, 10)]))[0] for i in range(3)]
    assert [a.last_seq for a in acks if isinstance(a, Ack)] == [10, 20, 30]
    await first.channel.close()  # and nothing else: the process is lost with the 30 records unstored

    second = PipelineHost(_spec(pipeline_id), PipelineSettings(wal_root=str(tmp_path / "b"), lake_url=lake,
                                                               log="postgres"), address="127.0.0.1")
    await second.start(platform_dsn)
    try:
        [ack] = await second.core.ingest([_batch(30, 5)])
        assert isinstance(ack, Ack) and (ack.first_seq, ack.last_seq) == (31, 35)
        assert await second.core.flush() == 35
        [late] = await first.core.ingest([_batch(99, 1)])  # the first owner is fenced
        assert isinstance(late, DashError)
    finally:
        await second.stop()
        await first.core.close()
        drop_log("postgres", folder=tmp_path / "none", name=log_name("dash", pipeline_id), dsn=pg_dsn)
    silver = Lake.from_url(lake).read("silver", pipeline_id)
    assert silver is not None and silver.column("n").to_pylist() == list(range(35))


async def test_the_postgres_log_without_a_database_refuses_to_start(tmp_path: Path) -> None:
    async def no_dsn() -> str | None:
        return None

    host = PipelineHost(_spec("pglog-none"), PipelineSettings(wal_root=str(tmp_path), lake_url=str(tmp_path / "lake"),
                                                              log="postgres"), address="127.0.0.1")
    with pytest.raises(ValueError, match="DASH_LOG=postgres .* set DASH_PG_DSN"):
        await host.start(no_dsn)
