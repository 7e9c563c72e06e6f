"""A pipeline's recovery at start (`dash_ray.pipeline.recovery`), without Ray: where the lake's
storage ends, the log's entries past it with their keys, and a log that does not follow the
lake refused without trimming anything."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from dash_ray.errors import InternalError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.lake import Lake
from dash_ray.log.file import WriteAheadLog
from dash_ray.pipeline.core import PipelineCore
from dash_ray.pipeline.entry import encode_entry
from dash_ray.pipeline.recovery import recover
from dash_ray.silver.lake import LakeSilver
from dash_ray.silver.rollup import spec_plan
from dash_ray.spec import parse_spec

SPEC = parse_spec({
    "id": "rec",
    "mapping": {"fields": {"time": {"path": "$.ts", "type": "timestamp"}, "n": {"path": "$.n", "type": "int"}}},
    "flush": {"records": 100_000, "seconds": 3600},
})


def batch(numbers: range, key: str | None = None) -> RawBatch:
    payload = b"".join(orjson.dumps({"ts": "2026-01-01T00:00:00Z", "n": n}) + b"\n" for n in numbers)
    return RawBatch(payload=payload, count=len(numbers), received_at_us=time.time_ns() // 1000, idempotency_key=key)


async def _recover(tmp_path: Path, log: WriteAheadLog):
    lake = Lake.from_url(str(tmp_path / "lake"))
    return await recover("rec", log=log, folder=tmp_path / "wal", lake=lake,
                         silver=LakeSilver(lake, "rec", spec_plan(SPEC)), followers=[], hot_records=100,
                         window_s=3600.0, max_keys=1000, clock=time.time)


async def test_what_lies_past_the_lake_waits_with_its_keys_and_stored_keys_are_kept(tmp_path: Path) -> None:
    core = PipelineCore(SPEC, wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    first = batch(range(3), key="stored")
    [stored_ack] = await core.ingest([first])
    assert await core.flush() == 3
    later = batch(range(2), key="waiting")
    [waiting_ack] = await core.ingest([later])
    # A crash: the core is left as it is (its log not closed), and a new start recovers.
    log = WriteAheadLog(tmp_path / "wal")
    found = await _recover(tmp_path, log)
    try:
        assert (found.stored_seq, found.next_seq, found.records) == (3, 6, 2)
        assert found.nbytes == len(later.payload)
        assert found.silver_tail is not None and found.silver_tail.column("seq").to_pylist() == [1, 2, 3]
        [(entry, keys)] = found.waiting
        assert (entry.first_seq, entry.last_seq, keys) == (4, 5, list(later.dedupe_keys))
        for sent, ack in ((first, stored_ack), (later, waiting_ack)):
            again = found.keys.get(sent.dedupe_keys[0])
            assert isinstance(ack, Ack) and again is not None
            assert (again.first_seq, again.last_seq, again.duplicate) == (ack.first_seq, ack.last_seq, True)
    finally:
        found.keys.close()
        await log.close()


async def test_a_log_that_does_not_follow_the_lake_is_refused_and_kept(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path / "wal")
    log.open()
    entry, data = encode_entry(10, [batch(range(2))])
    await log.append(entry.last_seq, data)
    await log.close()
    log = WriteAheadLog(tmp_path / "wal")
    with pytest.raises(InternalError, match="starts at seq 10, expected 1"):
        await _recover(tmp_path, log)
    await log.close()
    again = WriteAheadLog(tmp_path / "wal")
    assert [e.key for e in again.open()] == [11]  # nothing trimmed
    await again.close()
