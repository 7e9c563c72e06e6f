"""Replay without Ray: the current mapping run again over stored raw records rewrites silver,
rollups and dead letters idempotently; dead letters replay once the mapping is fixed; spans
widen over compacted files; jobs report progress and survive a restart as `failed`."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import orjson

from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.lifecycle.compaction import compact
from dash_ray.lifecycle.replay import spans_for
from dash_ray.pipeline.core import PipelineCore
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.silver.rollup import spec_plan
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import parse_spec
from tests.waiting import until

V1 = {
    "id": "replayed",
    "mapping": {"fields": {"time": {"path": "$.ts", "type": "timestamp", "unit": "s"},
                           "device": {"path": "$.d", "type": "string"},
                           "v": {"path": "$.v", "type": "double"}},
                "validate": [{"field": "v", "max": 50}]},
    "flush": {"records": 100_000, "seconds": 3600},
}
# The fixed version: readings over 50 were real after all, and v is now scaled.
V2 = {**V1, "mapping": {**V1["mapping"], "fields": {**V1["mapping"]["fields"],
                                                      "v": {"path": "$.v", "type": "double"},
                                                      "v10": {"expr": "v * 10", "type": "double"}},
                        "validate": [{"field": "v", "max": 100}]}}
BASE = 1_777_600_000


def core_of(tmp_path: Path, spec: dict) -> PipelineCore:
    return PipelineCore(parse_spec(spec), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))


async def stored(tmp_path: Path, commits: int = 6, per: int = 20) -> list[dict]:
    core = core_of(tmp_path, V1)
    await core.start()
    records = []
    for _ in range(commits):
        batch = [{"ts": BASE + len(records) + i, "d": f"d{i % 2}", "v": float((len(records) + i) % 80)}
                 for i in range(per)]
        records += batch
        payload = b"".join(orjson.dumps(r) + b"\n" for r in batch)
        await core.ingest([RawBatch(payload, len(batch), time.time_ns() // 1000)])
        await core.flush()
    await core.close()
    return records


def area(tmp_path: Path, name: str, column: str = "seq") -> list:
    dataset = Lake.from_url(str(tmp_path / "lake")).dataset(name, "replayed")
    if dataset is None:
        return []
    return [r[0] for r in duckdb.sql(f'SELECT "{column}" FROM dataset ORDER BY seq').fetchall()]


async def finish(core: PipelineCore, job_id: str) -> dict:
    job = await until(lambda: (job := core.replays.get(job_id)).state != "running" and job, timeout=30,
                      what=f"replay job {job_id} to finish")
    return job.as_dict()


async def test_dead_letters_replay_once_the_mapping_is_fixed(tmp_path: Path) -> None:
    records = await stored(tmp_path)
    over = [i + 1 for i, r in enumerate(records) if r["v"] > 50]
    assert area(tmp_path, "dead") == over and len(area(tmp_path, "silver")) == len(records) - len(over)
    fixed = core_of(tmp_path, V2)
    await fixed.start()
    job = await finish(fixed, fixed.replays.replay_dead().id)
    # Only the ranges holding dead letters are replayed: two commits of 20.
    assert job["state"] == "done" and job["done"] == job["total"] == 40
    assert area(tmp_path, "dead") == [] and area(tmp_path, "silver") == list(range(1, len(records) + 1))
    # A full replay gives every row the new field; twice leaves one copy.
    for _ in range(2):
        await finish(fixed, fixed.replays.replay(first_seq=1, last_seq=len(records)).id)
    assert area(tmp_path, "silver") == list(range(1, len(records) + 1))
    assert area(tmp_path, "silver", "v10") == [r["v"] * 10 for r in records]
    engine = DuckDBEngine(fixed.lake, "replayed", plan=spec_plan(fixed.spec))
    schema = spec_schema(fixed.spec)
    totals = engine.run(parse_query({"bucket": "1h", "agg": "count,sum:v", "by": "device"}, schema))["rows"]
    engine.close()
    assert sum(r["count"] for r in totals) == len(records)
    assert sum(r["sum_v"] for r in totals) == sum(r["v"] for r in records)
    await fixed.close()


async def test_a_replay_of_part_widens_to_whole_files_after_compaction(tmp_path: Path) -> None:
    records = await stored(tmp_path, commits=8, per=10)
    lake = Lake.from_url(str(tmp_path / "lake"))
    compact(lake, "replayed", stored_seq=80, plan=spec_plan(parse_spec(V1)), target_bytes=1024 * 1024, min_files=2)
    assert spans_for(lake, "replayed", [(15, 16)], stored_seq=80) == [(1, 80)]
    fixed = core_of(tmp_path, V2)
    await fixed.start()
    job = await finish(fixed, fixed.replays.replay(first_seq=15, last_seq=16).id)
    assert job["state"] == "done" and job["total"] == 80
    assert area(tmp_path, "silver") == list(range(1, 81)) and area(tmp_path, "dead") == []
    assert len(records) == 80
    await fixed.close()


async def test_spans_do_not_cross_a_file_and_stay_within_what_is_stored(tmp_path: Path) -> None:
    await stored(tmp_path, commits=4, per=10)
    lake = Lake.from_url(str(tmp_path / "lake"))
    assert spans_for(lake, "replayed", [(5, 5)], stored_seq=40) == [(1, 10)]
    assert spans_for(lake, "replayed", [(5, 12), (31, 99)], stored_seq=40) == [(1, 20), (31, 40)]
    assert spans_for(lake, "replayed", [(41, 50)], stored_seq=40) == []


async def test_a_job_cut_short_by_a_restart_reads_failed(tmp_path: Path) -> None:
    await stored(tmp_path, commits=2)
    core = core_of(tmp_path, V2)
    await core.start()
    await core.maintenance.lock.acquire()  # a pass in progress: the job waits, running
    job = core.replays.replay()
    assert core.replays.get(job.id).state == "running"
    core.maintenance.lock.release()
    await core.close(flush=False)
    again = core_of(tmp_path, V2)
    await again.start()
    cut = again.replays.get(job.id)
    assert cut.state in ("failed", "done")
    if cut.state == "failed":
        assert "interrupted" in (cut.error or "")
    await again.close()
