"""Fault injection on one pipeline, without Ray: an unexpected mapping error, a flush that
fails halfway and is retried with more records waiting, a crash between the steps of a flush.
After each, every acknowledged record is stored exactly once and no retried Idempotency-Key
is stored twice."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import orjson
import pytest

from dash_ray.errors import SpecError, StorageError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.ingest.idempotency import IdempotencyIndex
from dash_ray.lake import Lake
from dash_ray.mapping import CompiledMapping, compile_mapping
from dash_ray.pipeline.core import PipelineCore
from dash_ray.spec import parse_spec
from tests.waiting import until

SPEC = {
    "id": "faults",
    "mapping": {"fields": {
        "time": {"path": "$.ts", "type": "timestamp"},
        "n": {"path": "$.n", "type": "int", "required": True},
    }},
    "flush": {"records": 100_000, "seconds": 3600},
}


def batch(numbers: range | list[int], key: str | None = None) -> RawBatch:
    payload = b"".join(orjson.dumps({"ts": "2026-01-01T00:00:00Z", "n": n}) + b"\n" for n in numbers)
    return RawBatch(payload=payload, count=len(numbers), received_at_us=time.time_ns() // 1000,
                    idempotency_key=key)


def make(tmp_path: Path) -> PipelineCore:
    return PipelineCore(parse_spec(SPEC), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))


def area_seqs(tmp_path: Path, area: str) -> list[int]:
    dataset = Lake.from_url(str(tmp_path / "lake")).dataset(area, "faults")  # type: ignore[arg-type]
    if dataset is None:
        return []
    return [row[0] for row in duckdb.sql("SELECT seq FROM dataset ORDER BY seq").fetchall()]


async def test_an_unexpected_mapping_error_dead_letters_the_batch_instead_of_losing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_apply = CompiledMapping.apply
    broken = {"on": True}

    def apply(self: CompiledMapping, table):
        if broken["on"]:
            raise RuntimeError("a bug in the engine")
        return real_apply(self, table)

    monkeypatch.setattr(CompiledMapping, "apply", apply)
    core = make(tmp_path)
    await core.start()
    [ack] = await core.ingest([batch(range(5))])
    assert isinstance(ack, Ack) and ack.last_seq == 5
    assert core.records() == []
    broken["on"] = False
    [ack] = await core.ingest([batch(range(5, 8))])
    assert [r["seq"] for r in core.records()] == [6, 7, 8]
    await core.flush()
    assert area_seqs(tmp_path, "bronze") == list(range(1, 9))
    dead = Lake.from_url(str(tmp_path / "lake")).read("dead", "faults")
    assert dead is not None and dead.column("seq").to_pylist() == [1, 2, 3, 4, 5]
    assert set(dead.column("rule").to_pylist()) == {"internal"}
    assert "RuntimeError: a bug in the engine" in dead.column("reason")[0].as_py()
    assert core.counters.dead == 5 and core.counters.mapped == 3
    await core.close()


def test_a_timestamp_format_that_cannot_parse_is_refused_at_deploy() -> None:
    spec = {**SPEC, "mapping": {"fields": {"t": {"path": "$.t", "type": "timestamp", "format": "%H:%M %H"}}}}
    with pytest.raises(SpecError) as caught:
        compile_mapping(parse_spec(spec).mapping)
    [problem] = caught.value.problems
    assert problem.path == "mapping.fields.t.format" and "%H" in problem.message


async def test_a_retried_flush_with_more_records_waiting_does_not_double_silver(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Silver is written, bronze fails; more records arrive; the retry must not leave the
    first attempt's silver file beside a larger one."""
    real_write = Lake.write
    fail_bronze = {"times": 1}

    def write(self: Lake, area, pipeline, table, **kwargs):
        if area == "bronze" and fail_bronze["times"]:
            fail_bronze["times"] -= 1
            raise StorageError("lake refused the bronze file")
        return real_write(self, area, pipeline, table, **kwargs)

    monkeypatch.setattr(Lake, "write", write)
    core = make(tmp_path)
    await core.start()
    await core.ingest([batch(range(5))])
    with pytest.raises(StorageError):
        await core.flush()
    await core.ingest([batch(range(5, 10))])
    await core.flush()
    await core.flush()
    assert area_seqs(tmp_path, "silver") == list(range(1, 11))
    assert area_seqs(tmp_path, "bronze") == list(range(1, 11))
    await core.close()
    again = make(tmp_path)
    await again.start()
    await again.close()
    assert area_seqs(tmp_path, "silver") == list(range(1, 11))


async def test_a_crash_after_trimming_before_the_keys_are_persisted_keeps_the_keys(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The keys of a flushed range must be durable before the log entries holding them go."""
    core = make(tmp_path)
    await core.start()
    await core.ingest([batch(range(3), key="k1")])

    def crash(self: IdempotencyIndex, keys) -> None:
        raise SystemExit("the process died here")

    monkeypatch.setattr(IdempotencyIndex, "persist", crash)
    with pytest.raises(SystemExit):
        await core.flush()
    monkeypatch.undo()
    # The process is gone: nothing more of `core` runs. A new one starts on the same files.
    await core._wal.close()
    core._admission.keys.close()
    again = make(tmp_path)
    await again.start()
    [retry] = await again.ingest([batch(range(3), key="k1")])
    assert retry.duplicate and retry.last_seq == 3
    await again.close()
    assert area_seqs(tmp_path, "bronze") == [1, 2, 3]


async def test_keys_of_entries_already_in_the_lake_are_remembered_on_replay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the lake write and before the trim: on restart the log still holds
    entries the lake has; their keys must be remembered (and kept) although they are not
    replayed."""
    core = make(tmp_path)
    await core.start()
    await core.ingest([batch(range(3), key="k1")])

    def crash(*args, **kwargs) -> None:  # raises before any await
        raise SystemExit("the process died here")

    monkeypatch.setattr(type(core._wal), "trim", crash)
    monkeypatch.setattr(IdempotencyIndex, "persist", lambda self, keys: None)
    with pytest.raises(SystemExit):
        await core.flush()
    monkeypatch.undo()
    await core._wal.close()
    core._admission.keys.close()
    again = make(tmp_path)
    await again.start()
    assert again.counters.replayed == 0 and again.counters.stored_seq == 3
    [retry] = await again.ingest([batch(range(3), key="k1")])
    assert retry.duplicate and retry.last_seq == 3
    await again.flush()
    await again.close()
    # And they stay remembered once those entries are trimmed.
    third = make(tmp_path)
    await third.start()
    [retry] = await third.ingest([batch(range(3), key="k1")])
    assert retry.duplicate
    await third.close()
    assert area_seqs(tmp_path, "bronze") == [1, 2, 3]


async def test_a_flush_refuses_to_trim_a_range_that_is_not_contiguous(tmp_path: Path) -> None:
    core = make(tmp_path)
    await core.start()
    for first in (0, 3, 6):
        await core.ingest([batch(range(first, first + 3))])
    core.records()
    # A bug elsewhere loses one queued entry: the flush must notice, not trim past it.
    [mapped] = core._mapper.mapped
    assert [e.first_seq for e in mapped.entries] == [1, 4, 7]
    mapped.entries.pop(1)
    with pytest.raises(Exception, match="not contiguous"):
        await core.flush()
    await core.close(flush=False)
    again = make(tmp_path)
    await again.start()
    await again.close()
    assert area_seqs(tmp_path, "bronze") == list(range(1, 10))


async def test_any_error_in_the_flush_loop_is_retried_and_shown_in_health(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = Lake.write
    failures = {"left": 2}

    def write(self: Lake, *args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise ValueError("not a StorageError: a bug in an adapter")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Lake, "write", write)
    spec = parse_spec({**SPEC, "flush": {"records": 1, "seconds": 0.05}})
    core = PipelineCore(spec, wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    await core.ingest([batch(range(3))])
    seen_error = None

    def stored() -> bool:
        nonlocal seen_error
        seen_error = seen_error or core.health()["counters"]["last_error"]
        return core.counters.stored_seq == 3

    await until(stored, timeout=10, every=0.05, what="the three records stored after two failed writes")
    assert seen_error and "ValueError: not a StorageError" in seen_error
    await core.close()
