"""Compaction and retention on a real pipeline's lake, without Ray: many small files become a
few, every record stays exactly once in every area, query answers do not change, a pass
killed at any step leaves readers a whole view and the next pass finishes the job; retention
drops old days but never the newest bronze file."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import duckdb
import orjson
import pytest

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

SPEC = {
    "id": "small",
    "mapping": {"fields": {
        "time": {"path": "$.ts", "type": "timestamp", "unit": "s"},
        "device": {"path": "$.d", "type": "string"},
        "v": {"path": "$.v", "type": "double"},
    }, "validate": [{"field": "v", "max": 90}]},
    "flush": {"records": 100_000, "seconds": 3600},
    "storage": {"compaction": {"min_files": 2, "target_bytes": 1024 * 1024, "interval_s": 3600}},
}
DAY = 86_400
BASE = 1_777_593_600  # 2026-05-01T00:00:00Z
QUERIES = [{"limit": "100000"}, {"bucket": "1h", "agg": "count,avg:v,first:v,last:v", "by": "device"},
           {"bucket": "10s", "agg": "sum:v,count", "from": "2026-05-02T00:00:00Z", "to": "2026-05-02T06:00:00Z"}]


async def small_lake(tmp_path: Path, commits: int = 12) -> tuple[PipelineCore, list[int]]:
    """A pipeline that stored `commits` small ranges over three days (some records dead)."""
    core = PipelineCore(parse_spec(SPEC), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    n = 0
    for _commit in range(commits):
        records = []
        for _ in range(25):
            n += 1
            records.append({"ts": BASE + (n * 997) % (3 * DAY), "d": f"d{n % 3}", "v": 99.0 if n % 10 == 0 else n % 50})
        payload = b"".join(orjson.dumps(r) + b"\n" for r in records)
        await core.ingest([RawBatch(payload, len(records), time.time_ns() // 1000)])
        await core.flush()
    return core, list(range(1, n + 1))


def seqs(lake: Lake, area: str) -> list[int]:
    dataset = lake.dataset(area, "small")
    return [] if dataset is None else [r[0] for r in duckdb.sql("SELECT seq FROM dataset ORDER BY seq").fetchall()]


def answers(core: PipelineCore) -> list:
    engine = DuckDBEngine(core.lake, "small", plan=spec_plan(core.spec))
    schema = spec_schema(core.spec)
    try:
        return [engine.run(parse_query(q, schema)) for q in QUERIES]
    finally:
        engine.close()


async def test_small_files_are_merged_and_nothing_changes_for_readers(tmp_path: Path) -> None:
    core, everything = await small_lake(tmp_path)
    lake = core.lake
    before = {area: len(lake.files(area, "small")) for area in ("bronze", "silver", "dead", *lake.rollup_areas())}
    expected = answers(core)
    dead = [s for s in everything if s % 10 == 0]
    report = compact(lake, "small", stored_seq=core.counters.stored_seq, plan=spec_plan(core.spec),
                     target_bytes=1024 * 1024, min_files=2)
    after = {area: len(lake.files(area, "small", superseded=True)) for area in before}
    assert report.groups == 3 and report.removed == report.files_in
    for area, count in after.items():
        assert count < before[area], (area, count, before[area])
    assert after["bronze"] == 1 and after["dead"] == 1
    assert seqs(lake, "bronze") == everything
    assert seqs(lake, "silver") == [s for s in everything if s not in dead]
    assert seqs(lake, "dead") == dead
    assert answers(core) == expected
    # A second pass finds nothing more to do.
    again = compact(lake, "small", stored_seq=core.counters.stored_seq, plan=spec_plan(core.spec),
                    target_bytes=1024 * 1024, min_files=2)
    assert (again.groups, again.removed) == (0, 0)
    await core.close()


@pytest.mark.parametrize("kill_at", [1, 2, 5, 9, 14, 20])
async def test_a_pass_killed_at_any_step_leaves_a_whole_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              kill_at: int) -> None:
    core, everything = await small_lake(tmp_path, commits=6)
    lake = core.lake
    expected = answers(core)
    steps = {"n": 0}
    real_write, real_delete = Lake.write, Lake.delete

    def check() -> None:
        # After every file operation, readers see every record exactly once.
        assert seqs(lake, "bronze") == everything
        assert answers(core) == expected
        steps["n"] += 1
        if steps["n"] == kill_at:
            raise SystemExit("killed halfway")

    def write(self, *args, **kwargs):
        path = real_write(self, *args, **kwargs)
        check()
        return path

    def delete(self, files):
        for f in files:
            real_delete(self, [f])
            check()

    monkeypatch.setattr(Lake, "write", write)
    monkeypatch.setattr(Lake, "delete", delete)
    plan = spec_plan(core.spec)
    with pytest.raises(SystemExit):
        compact(lake, "small", stored_seq=core.counters.stored_seq, plan=plan, target_bytes=1024 * 1024, min_files=2)
    monkeypatch.undo()
    compact(lake, "small", stored_seq=core.counters.stored_seq, plan=plan, target_bytes=1024 * 1024, min_files=2)
    assert seqs(lake, "bronze") == everything and answers(core) == expected
    assert all(len(lake.files(a, "small", superseded=True)) == 1 for a in ("bronze", "dead"))
    await core.close()


async def test_compaction_leaves_what_is_not_yet_stored_alone(tmp_path: Path) -> None:
    core, _ = await small_lake(tmp_path, commits=4)
    lake = core.lake
    files = {f.path for f in lake.files("bronze", "small")}
    compact(lake, "small", stored_seq=0, plan=spec_plan(core.spec), target_bytes=1024 * 1024, min_files=2)
    assert {f.path for f in lake.files("bronze", "small", superseded=True)} == files
    await core.close()


async def test_retention_drops_old_days_but_never_the_newest_bronze_file(tmp_path: Path) -> None:
    core, everything = await small_lake(tmp_path, commits=3)
    await core.close()
    lake = core.lake
    today = dt.datetime.now(dt.timezone.utc).date()
    report = apply_retention(lake, "small", RetentionSpec(silver_days=1, bronze_days=1, dead_days=1),
                             today=today + dt.timedelta(days=30))
    assert report.removed > 0
    assert lake.files("silver", "small") == [] and lake.files("dead", "small") == []
    [kept] = lake.files("bronze", "small")
    assert kept.last_seq == everything[-1]
    # A restart goes on numbering after what was stored.
    again = PipelineCore(parse_spec(SPEC), wal_dir=tmp_path / "wal", lake=lake)
    await again.start()
    [ack] = await again.ingest([RawBatch(b'{"ts": 1, "d": "x", "v": 1}\n', 1, time.time_ns() // 1000)])
    assert ack.first_seq == everything[-1] + 1
    await again.close()


async def test_the_pipeline_runs_upkeep_in_the_background(tmp_path: Path) -> None:
    core, _ = await small_lake(tmp_path, commits=5)
    before = len(core.lake.files("bronze", "small", superseded=True))
    await core.maintenance.run_once()
    assert core.maintenance.stats.passes == 1 and core.maintenance.stats.compacted_files >= before
    assert len(core.lake.files("bronze", "small", superseded=True)) == 1
    await core.close()
