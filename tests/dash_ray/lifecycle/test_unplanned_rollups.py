"""The lake keeps the rollups of the current plan only (issue 21.20): after a spec changes its
rollups, the next upkeep pass deletes the pipeline's folders in the areas of older plans
(another pipeline's folders there stay), and aggregates still answer the same."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.pipeline.core import PipelineCore
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.silver.lake import rollup_area
from dash_ray.silver.rollup import spec_plan
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import parse_spec


def spec(pipeline_id: str, **storage: object) -> dict:
    return {"id": pipeline_id,
            "mapping": {"fields": {"time": {"path": "$.ts", "type": "timestamp", "unit": "s"},
                                   "d": {"path": "$.d", "type": "string"}, "v": {"path": "$.v", "type": "double"}}},
            "flush": {"records": 100_000, "seconds": 3600},
            "storage": {"compaction": {"interval_s": 3600}, **storage}}


async def stored(tmp_path: Path, data: dict) -> PipelineCore:
    core = PipelineCore(parse_spec(data), wal_dir=tmp_path / "wal" / data["id"],
                        lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    for c in range(3):
        batch = [{"ts": 1_777_600_000 + c * 100 + i, "d": f"d{i % 2}", "v": float(i)} for i in range(10)]
        await core.ingest([RawBatch(b"".join(orjson.dumps(r) + b"\n" for r in batch), 10, time.time_ns() // 1000)])
        await core.flush()
    return core


def folders(lake: Lake, pipeline_id: str) -> list[str]:
    return [area for area in lake.rollup_areas() if lake.files(area, pipeline_id, superseded=True)]


async def test_the_upkeep_deletes_rollups_of_plans_the_spec_no_longer_has(tmp_path: Path) -> None:
    core = await stored(tmp_path, spec("replanned"))
    await core.close()
    neighbour = await stored(tmp_path, spec("neighbour"))  # the same plan, so the same areas
    await neighbour.close()
    lake = core.lake
    old = sorted(rollup_area(spec_plan(core.spec), g) for g in ("10s", "1m", "1h"))
    assert folders(lake, "replanned") == old == folders(lake, "neighbour")

    hourly = parse_spec(spec("replanned", rollups={"granularities": ["1h"]}))
    core = PipelineCore(hourly, wal_dir=tmp_path / "wal" / "replanned", lake=lake)
    await core.start()
    await core.maintenance.run_once()
    assert folders(lake, "replanned") == []  # the new plan's partials come with new ranges
    assert folders(lake, "neighbour") == old
    engine = DuckDBEngine(lake, "replanned", plan=spec_plan(hourly))
    answer = engine.run(parse_query({"bucket": "1h", "agg": "count,sum:v"}, spec_schema(hourly)))["rows"]
    engine.close()
    assert sum(r["count"] for r in answer) == 30 and sum(r["sum_v"] for r in answer) == 3 * 45
    await core.close()

    off = PipelineCore(parse_spec(spec("neighbour", rollups={"enabled": False})),
                       wal_dir=tmp_path / "wal" / "neighbour", lake=lake)
    await off.start()
    await off.maintenance.run_once()
    assert folders(lake, "neighbour") == []
    await off.close()
