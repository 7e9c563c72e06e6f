"""A mapping's new version may add fields and widen types; rows stored under the old version
keep their values and queries span both versions; a type change that cannot be read is refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.pipeline.core import PipelineCore
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.silver.evolution import evolution_problems
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import parse_spec

V1 = {"id": "evolve", "mapping": {"fields": {
    "time": {"path": "$.ts", "type": "timestamp", "unit": "s"},
    "n": {"path": "$.n", "type": "int"}, "code": {"path": "$.code", "type": "int"}}}}


def version(**fields) -> dict:
    return {**V1, "mapping": {"fields": {**V1["mapping"]["fields"], **fields}}}


def test_widening_and_new_fields_are_allowed_narrowing_is_refused() -> None:
    old = parse_spec(V1)
    assert evolution_problems(old, parse_spec(version(n={"path": "$.n", "type": "double"},
                                                        extra_field={"path": "$.x", "type": "string"}))) == []
    assert evolution_problems(old, parse_spec(version(code={"path": "$.code", "type": "string"}))) == []
    [problem] = evolution_problems(old, parse_spec(version(code={"path": "$.code", "type": "bool"})))
    assert problem.path == "mapping.fields.code.type" and "int" in problem.message and "bool" in problem.message
    wider = parse_spec(version(code={"path": "$.code", "type": "string"}))
    [back] = evolution_problems(wider, old)
    assert "string values" in back.message


async def _store(spec: dict, tmp_path: Path, records: list[dict]) -> None:
    core = PipelineCore(parse_spec(spec), wal_dir=tmp_path / "wal", lake=Lake.from_url(str(tmp_path / "lake")))
    await core.start()
    payload = b"".join(orjson.dumps(r) + b"\n" for r in records)
    await core.ingest([RawBatch(payload, len(records), time.time_ns() // 1000)])
    await core.close()


@pytest.mark.parametrize("new_type", ["double", "string"])
async def test_queries_span_both_versions_of_the_mapping(tmp_path: Path, new_type: str) -> None:
    await _store(V1, tmp_path, [{"ts": 1_777_600_000 + i, "n": i, "code": i * 10} for i in range(3)])
    v2 = version(code={"path": "$.code", "type": new_type}, label={"path": "$.label", "type": "string"})
    await _store(v2, tmp_path,
                 [{"ts": 1_777_600_010 + i, "n": i, "code": i * 10 + 5, "label": "new"} for i in range(2)])
    spec = parse_spec(v2)
    engine = DuckDBEngine(Lake.from_url(str(tmp_path / "lake")), "evolve")
    answer = await asyncio.to_thread(engine.run, parse_query({"fields": "code,label"}, spec_schema(spec)))
    engine.close()
    cast = float if new_type == "double" else str
    assert [(r["code"], r["label"]) for r in answer["rows"]] == [
        (cast(0), None), (cast(10), None), (cast(20), None), (cast(5), "new"), (cast(15), "new")]
