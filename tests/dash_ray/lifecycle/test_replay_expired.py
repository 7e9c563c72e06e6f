"""Replay where bronze has expired (issue 21.1): a replay replaces only the rows it can rebuild
from raw records. Rows whose raw records retention removed are kept as they were; dead letters
carry their own raw text, so they are always rebuilt; the job says what it kept and why."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import orjson

from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.lifecycle.compaction import compact
from dash_ray.lifecycle.retention import apply_retention
from dash_ray.pipeline.core import PipelineCore
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.silver.rollup import spec_plan
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import RetentionSpec, parse_spec
from tests.dash_ray.lifecycle.test_replay import V1, V2, area, finish

BASE = 1_777_600_000  # 2026-05-01T01:46:40Z
# 3 commits of 8; v over 50 is dead under V1: seqs 7, 8 | 9, 16 | 17, 18.
VALUES = [float((i * 9) % 80) for i in range(24)]
DEAD = [i + 1 for i, v in enumerate(VALUES) if v > 50]


async def stored_then_expired(tmp_path: Path, *, compacted: bool = False) -> Lake:
    """24 records in three commits of one day; then bronze retention of one day, applied five
    days later, removes every bronze file but the newest (17..24), as the upkeep would."""
    core = PipelineCore(parse_spec(V1), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    for c in range(3):
        batch = [{"ts": BASE + i, "d": f"d{i % 2}", "v": VALUES[i]} for i in range(c * 8, c * 8 + 8)]
        await core.ingest([RawBatch(b"".join(orjson.dumps(r) + b"\n" for r in batch), 8, time.time_ns() // 1000)])
        await core.flush()
    await core.close()
    lake = core.lake
    assert area(tmp_path, "dead") == DEAD and len(area(tmp_path, "silver")) == 24 - len(DEAD)
    later = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=5)
    apply_retention(lake, "replayed", RetentionSpec(bronze_days=1), today=later)
    assert [(f.first_seq, f.last_seq) for f in lake.files("bronze", "replayed")] == [(17, 24)]
    if compacted:  # the upkeep's next step: silver, rollups and dead merge into 1..24
        compact(lake, "replayed", stored_seq=24, plan=spec_plan(parse_spec(V1)), target_bytes=1 << 20, min_files=2)
        assert [(f.first_seq, f.last_seq) for f in lake.files("silver", "replayed")] == [(1, 24)]
    return lake


def v10_by_seq(tmp_path: Path) -> dict[int, float | None]:
    return dict(zip(area(tmp_path, "silver"), area(tmp_path, "silver", "v10"), strict=True))


def assert_kept_and_rebuilt(tmp_path: Path, job: dict | None = None) -> None:
    """Every record is in silver once: those of 17..24 and every dead letter re-mapped by V2
    (v10 set), the mapped rows of 1..16 as V1 stored them (no v10)."""
    assert area(tmp_path, "silver") == list(range(1, 25)) and area(tmp_path, "dead") == []
    v10 = v10_by_seq(tmp_path)
    rebuilt = [s for s in range(1, 25) if s > 16 or s in DEAD]
    assert [s for s, value in v10.items() if value is not None] == rebuilt
    assert all(v10[s] == VALUES[s - 1] * 10 for s in rebuilt)
    if job is None:
        return
    assert job["state"] == "done" and job["error"] is None
    assert job["kept"] == 24 - len(rebuilt) == 12 and job["replayed"] == len(rebuilt)
    assert "bronze" in job["note"] and "1..15" in job["note"]


async def with_v2(tmp_path: Path) -> PipelineCore:
    core = PipelineCore(parse_spec(V2), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    return core


async def test_a_full_replay_keeps_rows_whose_bronze_expired(tmp_path: Path) -> None:
    await stored_then_expired(tmp_path)
    core = await with_v2(tmp_path)
    job = await finish(core, core.replays.replay().id)
    assert_kept_and_rebuilt(tmp_path, job)
    # The rollups agree with the rows kept and rebuilt, and a second replay changes nothing
    # (the dead letters' raw copies went with them: their rows are now kept too).
    again = await finish(core, core.replays.replay().id)
    assert_kept_and_rebuilt(tmp_path)
    assert again["kept"] == 16 and again["replayed"] == 8 and again["matched"] == again["total"] == 24
    engine = DuckDBEngine(core.lake, "replayed", plan=spec_plan(core.spec))
    totals = engine.run(parse_query({"bucket": "1h", "agg": "count,sum:v"}, spec_schema(core.spec)))["rows"]
    engine.close()
    assert sum(r["count"] for r in totals) == 24 and sum(r["sum_v"] for r in totals) == sum(VALUES)
    await core.close()


async def test_dead_letters_of_expired_ranges_replay_from_their_own_raw_copy(tmp_path: Path) -> None:
    await stored_then_expired(tmp_path)
    core = await with_v2(tmp_path)
    job = await finish(core, core.replays.replay_dead().id)
    assert_kept_and_rebuilt(tmp_path, job)
    await core.close()


async def test_a_span_widened_over_a_compacted_file_keeps_what_it_cannot_rebuild(tmp_path: Path) -> None:
    await stored_then_expired(tmp_path, compacted=True)
    core = await with_v2(tmp_path)
    job = await finish(core, core.replays.replay(first_seq=20, last_seq=21).id)
    assert_kept_and_rebuilt(tmp_path, job)
    assert job["total"] == 24
    await core.close()


async def test_a_span_without_any_raw_record_is_left_untouched(tmp_path: Path) -> None:
    lake = await stored_then_expired(tmp_path)
    lake.delete(lake.files("dead", "replayed"))  # dead-letter retention took them too
    before = sorted(f.path for f in lake.files("silver", "replayed"))
    core = await with_v2(tmp_path)
    job = await finish(core, core.replays.replay(first_seq=1, last_seq=16).id)
    assert job["state"] == "done" and job["replayed"] == 0 and job["kept"] == 16 - 4
    assert sorted(f.path for f in lake.files("silver", "replayed")) == before
    assert area(tmp_path, "silver") == [s for s in range(1, 25) if s not in DEAD]
    await core.close()


async def test_kept_rows_take_a_field_widened_since(tmp_path: Path) -> None:
    """A field widened since (double to string, which a deploy accepts): the kept rows' values
    are cast, so they share the span's new files with the rebuilt rows."""
    await stored_then_expired(tmp_path)
    text_v = {**V1, "mapping": {"fields": {**V1["mapping"]["fields"], "v": {"path": "$.v", "type": "string"}}}}
    core = PipelineCore(parse_spec(text_v), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    job = await finish(core, core.replays.replay().id)
    assert job["state"] == "done" and job["kept"] == 12 and job["replayed"] == 12
    assert area(tmp_path, "silver") == list(range(1, 25))
    values = dict(zip(area(tmp_path, "silver"), area(tmp_path, "silver", "v"), strict=True))
    assert all(isinstance(v, str) and float(v) == VALUES[s - 1] for s, v in values.items())
    await core.close()
