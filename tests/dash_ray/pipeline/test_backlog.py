"""A pipeline restarting with a large log takes ingest at once and maps the backlog in the
background; the queue is bounded in bytes as well as records; health refuses a pipeline that
cannot take ingest."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from dash_ray.errors import BackpressureError, PayloadTooLargeError, UnavailableError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.lake import Lake
from dash_ray.pipeline.core import PipelineCore
from dash_ray.spec import parse_spec
from tests.waiting import until

SPEC = {
    "id": "backlog",
    "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}, "pad": {"path": "$.pad", "type": "string"}}},
    "flush": {"records": 1_000_000, "seconds": 3600},
    "limits": {"queue_records": 1_000_000},
}


def batch(first: int, count: int, pad: int = 0) -> RawBatch:
    payload = b"".join(orjson.dumps({"n": n, "pad": "x" * pad}) + b"\n" for n in range(first, first + count))
    return RawBatch(payload=payload, count=count, received_at_us=time.time_ns() // 1000)


def make(tmp_path: Path, **changes) -> PipelineCore:
    return PipelineCore(parse_spec({**SPEC, **changes}), wal_dir=tmp_path / "wal",
                        lake=Lake.from_url(str(tmp_path / "lake")))


async def test_a_large_log_is_mapped_in_the_background_while_ingest_goes_on(tmp_path: Path) -> None:
    core = make(tmp_path)
    await core.start()
    total = 0
    for first in range(0, 200_000, 10_000):
        [ack] = await core.ingest([batch(first, 10_000)])
        assert isinstance(ack, Ack)
        total += 10_000
    await core.close(flush=False)  # the records stay in the log only

    restarted = make(tmp_path)
    await restarted.start()
    assert restarted.counters.replayed == total
    # Start returned with the backlog still unmapped, and ingest is acknowledged at once.
    assert sum(e.count for e, _ in restarted._mapper.durable.values()) > total // 2
    [ack] = await restarted.ingest([batch(total, 1)])
    assert isinstance(ack, Ack) and ack.first_seq == total + 1
    await until(lambda: not restarted._mapper.durable, timeout=30, what="the background mapping to finish")
    assert restarted.counters.mapped == total + 1
    assert await restarted.flush() == total + 1
    await restarted.close()


async def test_the_queue_is_bounded_in_bytes_and_a_request_larger_than_it_is_413(tmp_path: Path) -> None:
    core = make(tmp_path, limits={"queue_records": 1_000_000, "queue_bytes": 1024 * 1024})
    await core.start()
    [ok] = await core.ingest([batch(0, 600, pad=1000)])  # ~600 KB
    [full] = await core.ingest([batch(600, 600, pad=1000)])
    [huge] = await core.ingest([batch(1200, 1200, pad=1000)])  # ~1.2 MB: never fits
    assert isinstance(ok, Ack)
    assert isinstance(full, BackpressureError) and "bytes" in full.message
    assert isinstance(huge, PayloadTooLargeError) and huge.status == 413
    assert core.counters.last_seq == 600
    await core.flush()
    [later] = await core.ingest([batch(600, 600, pad=1000)])
    assert isinstance(later, Ack) and later.first_seq == 601
    await core.close()


async def test_health_refuses_a_pipeline_that_is_not_running(tmp_path: Path) -> None:
    core = make(tmp_path)
    with pytest.raises(UnavailableError, match="is new"):
        core.health()
    await core.start()
    assert core.health()["state"] == "running"
    await core.close()
    with pytest.raises(UnavailableError, match="is closed"):
        core.health()


async def test_health_counters_are_current(tmp_path: Path) -> None:
    spec = {**SPEC, "mapping": {"fields": {"n": {"path": "$.n", "type": "int"}},
                                "filter": "n <> 1", "validate": [{"field": "n", "max": 5}]}}
    core = PipelineCore(parse_spec(spec), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    await core.ingest([batch(0, 10)])
    counters = core.health()["counters"]  # no wait for the background mapping
    assert (counters["mapped"], counters["filtered"], counters["dead"]) == (5, 1, 4)
    await core.close()


async def test_a_full_backlog_while_storage_fails_is_503_not_429(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from dash_ray.errors import StorageError

    def down(*args, **kwargs):
        raise StorageError("lake s3://b/p unreachable: ConnectTimeout")

    core = make(tmp_path, limits={"queue_records": 100}, flush={"records": 10, "seconds": 0.05})
    monkeypatch.setattr(Lake, "write", down)
    await core.start()
    [ok] = await core.ingest([batch(0, 100)])
    assert isinstance(ok, Ack)
    await until(lambda: core.health()["flush_error"], what="a failed flush")
    [refused] = await core.ingest([batch(100, 1)])
    assert isinstance(refused, UnavailableError) and refused.status == 503 and refused.retry_after >= 1
    assert "unreachable" in refused.message
    monkeypatch.undo()
    await until(lambda: core.counters.stored_seq == 100, timeout=30, what="the 100 records stored")
    [accepted] = await core.ingest([batch(100, 1)])
    assert isinstance(accepted, Ack) and accepted.first_seq == 101
    await core.close()


def slow_lake_writes(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    write = Lake.write

    def slow(self, *args, **kwargs):
        time.sleep(seconds)  # in the commit's thread, as a slow disk or store would be
        return write(self, *args, **kwargs)

    monkeypatch.setattr(Lake, "write", slow)


async def test_a_full_queue_that_a_flush_is_draining_slows_a_request_instead_of_refusing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow_lake_writes(monkeypatch, 0.2)
    core = make(tmp_path, limits={"queue_records": 100}, flush={"records": 50, "seconds": 3600})
    await core.start()
    [ok] = await core.ingest([batch(0, 90)])  # past flush.records: a flush starts
    assert isinstance(ok, Ack)
    started = time.monotonic()
    [waited] = await core.ingest([batch(90, 20)])  # no room until that flush has stored
    assert isinstance(waited, Ack) and waited.first_seq == 91, waited
    assert time.monotonic() - started >= 0.1 and core.counters.stored_seq >= 90
    assert core.counters.rejected_requests == 0
    await core.close()


async def test_the_wait_for_room_is_bounded_by_queue_wait_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow_lake_writes(monkeypatch, 1.5)
    core = make(tmp_path, limits={"queue_records": 100, "queue_wait_s": 0.2}, flush={"records": 50, "seconds": 3600})
    await core.start()
    [ok] = await core.ingest([batch(0, 90)])
    assert isinstance(ok, Ack)
    started = time.monotonic()
    [refused] = await core.ingest([batch(90, 20)])
    waited = time.monotonic() - started
    assert isinstance(refused, BackpressureError) and refused.status == 429
    assert 0.15 <= waited < 1.0, waited
    assert core.counters.last_seq == 90
    await core.close()


async def test_a_full_queue_with_no_flush_under_way_is_refused_at_once(tmp_path: Path) -> None:
    core = make(tmp_path, limits={"queue_records": 100})  # flushes only in an hour
    await core.start()
    await core.ingest([batch(0, 90)])
    started = time.monotonic()
    [refused] = await core.ingest([batch(90, 20)])
    assert isinstance(refused, BackpressureError) and time.monotonic() - started < 0.1
    await core.close()


async def _backlog(tmp_path: Path, total: int) -> PipelineCore:
    """A pipeline restarted with `total` records in its log, none of them mapped yet."""
    core = make(tmp_path)
    await core.start()
    for first in range(0, total, 10_000):
        await core.ingest([batch(first, 10_000)])
    await core.close(flush=False)
    restarted = make(tmp_path)
    await restarted.start()
    return restarted


async def test_reading_records_maps_a_bounded_part_of_a_backlog_at_once(tmp_path: Path) -> None:
    """(issue 21, item 13) `GET /records` right after a restart maps at most a bounded part of
    the replayed backlog in one go on the actor's loop (all of it held the loop)."""
    core = await _backlog(tmp_path, 200_000)
    backlog = core._mapper.backlog
    assert backlog > 150_000
    core.records(limit=5)
    assert core._mapper.backlog >= backlog - 80_000  # about 50,000 (a chunk more at most)
    await core.close(flush=False)


async def test_catching_up_before_a_read_yields_to_the_loop_between_chunks(tmp_path: Path) -> None:
    """What the actor does before answering `GET /records`: map the backlog a chunk at a time,
    letting ingest and other calls run in between; then the newest records are there."""
    core = await _backlog(tmp_path, 200_000)
    turns = 0

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = turns
    await core.catch_up()
    during = turns - before
    ticking.cancel()
    assert core._mapper.backlog == 0
    assert during >= 5  # the loop turned between the ~10 chunks
    assert [r["seq"] for r in core.records(limit=3)] == [199_998, 199_999, 200_000]
    await core.close(flush=False)
