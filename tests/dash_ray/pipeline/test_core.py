"""PipelineCore without Ray: durable ingest, mapping into the hot cache, flushes to the lake,
recovery from a crash (no close) with every acknowledged record in the lake exactly once,
idempotency across restarts, and the bounded queue."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import duckdb
import orjson
import pytest

from dash_ray.errors import BackpressureError, UnavailableError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.lake import Lake
from dash_ray.pipeline.core import PipelineCore
from dash_ray.sources.demo import DEMO_SPEC, feed
from dash_ray.spec import parse_spec
from tests.waiting import until

SPEC = {
    "id": "weather",
    "mapping": {
        "fields": {
            "time": {"path": "$.ts", "type": "timestamp"},
            "device": {"path": "$.device_id", "type": "string", "required": True},
            "temp_c": {"path": "$.metrics.temp", "type": "double"},
        },
        "validate": [{"field": "temp_c", "min": -90, "max": 60}],
    },
    "flush": {"records": 1000, "seconds": 3600},
}


def batch(records: list[dict], key: str | None = None) -> RawBatch:
    payload = b"".join(orjson.dumps(r) + b"\n" for r in records)
    return RawBatch(payload=payload, count=len(records), received_at_us=time.time_ns() // 1000,
                    idempotency_key=key)


def reading(i: int, temp: float = 20.0) -> dict:
    return {"ts": "2026-01-01T00:00:00Z", "device_id": f"dev-{i}", "metrics": {"temp": temp}}


def make(tmp_path: Path, **changes) -> PipelineCore:
    spec = parse_spec({**SPEC, **changes})
    return PipelineCore(spec, wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))


def silver_seqs(tmp_path: Path, pipeline: str = "weather") -> list[int]:
    dataset = Lake.from_url(str(tmp_path / "lake")).dataset("silver", pipeline)
    if dataset is None:
        return []
    return [row[0] for row in duckdb.sql("SELECT seq FROM dataset ORDER BY seq").fetchall()]


async def test_ingest_acks_maps_and_caches(tmp_path: Path) -> None:
    core = make(tmp_path)
    await core.start()
    [ack] = await core.ingest([batch([reading(1), reading(2, temp=99.0), reading(3)])])
    assert isinstance(ack, Ack) and (ack.first_seq, ack.last_seq, ack.accepted) == (1, 3, 3)
    records = core.records()
    assert [r["seq"] for r in records] == [1, 3]  # seq 2 failed its range rule
    assert records[0]["data"] == {"device": "dev-1", "temp_c": 20.0}
    assert records[0]["time"] == "2026-01-01T00:00:00Z"
    assert core.counters.dead == 1 and core.counters.mapped == 2
    await core.close()


async def test_flush_writes_bronze_silver_dead_and_trims_the_log(tmp_path: Path) -> None:
    core = make(tmp_path)
    await core.start()
    await core.ingest([batch([reading(1), reading(2, temp=99.0)]), batch([reading(3)])])
    assert await core.flush() == 3
    lake = Lake.from_url(str(tmp_path / "lake"))
    assert lake.last_seq("bronze", "weather") == 3
    assert silver_seqs(tmp_path) == [1, 3]
    dead = lake.read("dead", "weather")
    assert dead is not None and dead.column("rule").to_pylist() == ["max"]
    assert core.health()["wal_bytes"] == 0
    await core.close()


async def test_flush_by_size(tmp_path: Path) -> None:
    core = make(tmp_path, flush={"records": 10, "seconds": 3600})
    await core.start()
    await core.ingest([batch([reading(i) for i in range(12)])])
    await until(lambda: core.counters.stored_seq == 12, what="a flush of the first 10 (and then the rest)")
    await core.close()


async def test_crash_then_restart_keeps_every_acked_record_once(tmp_path: Path) -> None:
    core = make(tmp_path)
    await core.start()
    await core.ingest([batch([reading(i) for i in range(5)])])
    await core.flush()
    acks = await asyncio.gather(*(core.ingest([batch([reading(i)])]) for i in range(20)))
    assert all(isinstance(a[0], Ack) for a in acks)
    # A crash: no close, no flush. The log's file handles just stop being used.
    again = make(tmp_path)
    await again.start()
    assert again.counters.replayed == 20
    assert [r["seq"] for r in again.records(limit=100)] == list(range(1, 26))
    [ack] = await again.ingest([batch([reading(99)])])
    assert isinstance(ack, Ack) and ack.first_seq == 26
    await again.close()
    assert silver_seqs(tmp_path) == list(range(1, 27))


async def test_a_partial_flush_is_redone_not_duplicated(tmp_path: Path) -> None:
    core = make(tmp_path)
    await core.start()
    await core.ingest([batch([reading(i) for i in range(4)])])
    # The silver file of a flush is written, then the process dies before the bronze file.
    lake = Lake.from_url(str(tmp_path / "lake"))
    core.records()  # maps what is durable
    pending = core._mapper.mapped
    import datetime as dt
    lake.write("silver", "weather", pending[0].result.rows, first_seq=1, last_seq=4, day=dt.date(2026, 1, 1))
    again = make(tmp_path)
    await again.start()
    await again.close()
    assert silver_seqs(tmp_path) == [1, 2, 3, 4]


async def test_idempotency_key_is_kept_across_flush_and_restart(tmp_path: Path) -> None:
    core = make(tmp_path)
    await core.start()
    [first] = await core.ingest([batch([reading(1)], key="k1")])
    [again] = await core.ingest([batch([reading(1)], key="k1")])
    assert again.duplicate and again.last_seq == first.last_seq
    both = await asyncio.gather(core.ingest([batch([reading(2)], key="k2")]),
                                core.ingest([batch([reading(2)], key="k2")]))
    assert sorted(r[0].duplicate for r in both) == [False, True]
    await core.flush()
    await core.ingest([batch([reading(3)], key="k3")])  # only in the log
    await core.close(flush=False)
    restarted = make(tmp_path)
    await restarted.start()
    for key in ("k1", "k2", "k3"):
        [ack] = await restarted.ingest([batch([reading(0)], key=key)])
        assert ack.duplicate, key
    assert restarted.counters.last_seq == 3
    await restarted.close()
    assert silver_seqs(tmp_path) == [1, 2, 3]


async def test_a_replayed_request_is_a_duplicate_whatever_its_idempotency_key(tmp_path: Path) -> None:
    """The replay key (from the signature) is checked as well as the client's own key, which
    is not signed and so can be changed by whoever replays a captured request."""
    import dataclasses

    core = make(tmp_path)
    await core.start()
    original = dataclasses.replace(batch([reading(1)], key="client-1"), replay_key="sig:abc")
    [first] = await core.ingest([original])
    [replayed] = await core.ingest([dataclasses.replace(original, idempotency_key="client-2")])
    [unkeyed] = await core.ingest([dataclasses.replace(original, idempotency_key=None)])
    assert not first.duplicate and replayed.duplicate and unkeyed.duplicate
    assert replayed.last_seq == unkeyed.last_seq == first.last_seq == 1
    await core.close(flush=False)
    restarted = make(tmp_path)
    await restarted.start()  # the replay key comes back from the log
    [after] = await restarted.ingest([dataclasses.replace(original, idempotency_key="client-3")])
    assert after.duplicate and restarted.counters.last_seq == 1
    await restarted.close()


async def test_a_full_queue_refuses_with_backpressure_and_stores_nothing(tmp_path: Path) -> None:
    core = make(tmp_path, limits={"queue_records": 100})
    await core.start()
    [ok] = await core.ingest([batch([reading(i) for i in range(90)])])
    [refused] = await core.ingest([batch([reading(i) for i in range(20)])])
    assert isinstance(ok, Ack)
    assert isinstance(refused, BackpressureError) and refused.status == 429 and refused.retry_after >= 1
    assert core.counters.last_seq == 90
    await core.flush()
    [accepted] = await core.ingest([batch([reading(i) for i in range(20)])])
    assert isinstance(accepted, Ack) and accepted.first_seq == 91
    await core.close()


async def test_closed_pipeline_is_unavailable(tmp_path: Path) -> None:
    core = make(tmp_path)
    await core.start()
    await core.close()
    [result] = await core.ingest([batch([reading(1)])])
    assert isinstance(result, UnavailableError) and result.status == 503


async def test_unflushable_lake_keeps_records_in_the_log(tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    core = PipelineCore(spec, wal_dir=tmp_path / "wal", lake=Lake.from_url("/dev/null/lake"))
    await core.start()
    [ack] = await core.ingest([batch([reading(1)])])
    assert isinstance(ack, Ack)
    with pytest.raises(Exception, match="cannot write"):
        await core.flush()
    await core.close()
    recovered = make(tmp_path)
    await recovered.start()
    assert recovered.counters.replayed == 1
    await recovered.close()
    assert silver_seqs(tmp_path) == [1]


async def test_demo_feed_sends_generated_readings(tmp_path: Path) -> None:
    spec = parse_spec(DEMO_SPEC)
    core = PipelineCore(spec, wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    task = asyncio.create_task(feed(core.ingest, rate=50, devices=3))
    await until(lambda: core.counters.last_seq >= 10, what="ten demo readings")
    task.cancel()
    assert {r["data"]["device"] for r in core.records()} <= {"sensor-1", "sensor-2", "sensor-3"}
    await core.close()


async def test_replaying_bronze_gives_the_live_silver_rows(tmp_path: Path) -> None:
    """One code path: mapping the raw lake again reproduces what live ingest stored."""
    from dash_ray.mapping import compile_mapping

    core = make(tmp_path)
    await core.start()
    await core.ingest([batch([reading(1), reading(2, temp=99.0)]), batch([{"odd": True}, reading(3)])])
    await core.ingest([batch([reading(4)])])
    await core.close()
    lake = Lake.from_url(str(tmp_path / "lake"))
    bronze = lake.read("bronze", "weather")
    replayed = compile_mapping(parse_spec(SPEC).mapping).apply(
        bronze.drop_columns(["date"]) if "date" in bronze.column_names else bronze)
    live = lake.read("silver", "weather")
    assert replayed.rows.to_pylist() == live.select(replayed.rows.column_names).to_pylist()
    assert replayed.dead.column("seq").to_pylist() == lake.read("dead", "weather").column("seq").to_pylist()


async def test_concurrent_calls_cannot_together_pass_the_queue_bound(tmp_path: Path) -> None:
    core = make(tmp_path, limits={"queue_records": 100})
    await core.start()
    results = await asyncio.gather(*(core.ingest([batch([reading(i) for i in range(30)])]) for _ in range(5)))
    outcomes = [type(r[0]).__name__ for r in results]
    assert outcomes.count("Ack") == 3 and outcomes.count("BackpressureError") == 2
    assert core.counters.last_seq == 90
    await core.close()
