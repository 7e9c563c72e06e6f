"""A type widening accepted at deploy (int to double, any scalar to string) reaches PostgreSQL:
the column is altered, the follower goes on, and a query over rows stored before and after the
change answers the same from the lake (DuckDB) and from PostgreSQL, raw and from rollups."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import orjson
import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.pipeline.core import PipelineCore
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.query.postgres import PostgresEngine
from dash_ray.silver.choice import postgres_follower
from dash_ray.silver.evolution import evolution_problems
from dash_ray.silver.pgretype import SETUP, retype_columns
from dash_ray.silver.postgres import PostgresSilver
from dash_ray.silver.rollup import spec_plan
from dash_ray.silver.schema import Column, spec_schema
from dash_ray.spec import PipelineSpec, parse_spec
from tests.dash_ray.query.conftest import same

BASE_S = 1_777_593_600  # 2026-05-01T00:00:00Z
# Old values, each to be shown the same by both stores once widened (doubles at the edges of
# fixed and exponent notation, integral ones, negative zero; timestamps with fractions).
OLD = {
    "int": [0, -5, 2**62, 7],
    "double": [2.0, 1e20, 1e-5, 0.1, 123456789.0, 1e15, 9999999999999998.0, -0.0, 1.5e-7, 0.0001, 12345.678],
    "bool": [True, False],
    "timestamp": ["2026-05-01T12:00:00.5Z", "1969-12-31T23:59:59.1Z", "0001-01-01T00:00:00Z",
                  "2026-05-01T12:00:00.123456Z"],
}
NEW = {"double": [1.5, -2.25], "string": ["x", "12"]}


def spec(pipeline_id: str, code_type: str) -> PipelineSpec:
    return parse_spec({"id": pipeline_id, "mapping": {"fields": {
        "time": {"path": "$.ts", "type": "timestamp", "unit": "s"},
        "device": {"path": "$.d", "type": "string"},
        "code": {"path": "$.code", "type": code_type}}}, "flush": {"records": 500, "seconds": 0.05}})


async def _store(pipeline: PipelineSpec, tmp_path: Path, lake: Lake, dsn: str, values: list[Any],
                 first: int) -> None:
    follower = postgres_follower(pipeline, lake, dsn)
    follower.backoff_s, follower.max_backoff_s = 0.05, 0.2
    core = PipelineCore(pipeline, wal_dir=tmp_path / "wal", lake=lake, followers=[follower])
    await core.start()
    try:
        records = [{"ts": BASE_S + first + i, "d": f"d{i % 2}", "code": v} for i, v in enumerate(values)]
        await core.ingest([RawBatch(b"".join(orjson.dumps(r) + b"\n" for r in records), len(records),
                                    time.time_ns() // 1000)])
        await core.flush()
        await asyncio.wait_for(follower.wait_stored(core.counters.stored_seq), 20)
        assert core.health()["counters"]["silver_error"] is None
    finally:
        await core.close()


@pytest.mark.parametrize(("old", "new"), [("int", "double"), ("int", "string"), ("double", "string"),
                                          ("bool", "string"), ("timestamp", "string")])
async def test_a_widened_field_reads_the_same_from_both_stores(tmp_path: Path, pg_dsn: str, old: str,
                                                               new: str) -> None:
    await _widened(Lake.from_url(str(tmp_path / "lake")), tmp_path, pg_dsn, old, new)


@pytest.mark.parametrize(("old", "new"), [("int", "double"), ("double", "string"), ("timestamp", "string")])
async def test_a_widened_field_reads_the_same_from_both_stores_over_s3(tmp_path: Path, pg_dsn: str, s3_server: dict,
                                                                       s3_bucket: str, old: str, new: str) -> None:
    lake = Lake.from_url(f"s3://{s3_bucket}/lake", storage_options=s3_server["storage_options"])
    await _widened(lake, tmp_path, pg_dsn, old, new)


async def _widened(lake: Lake, tmp_path: Path, pg_dsn: str, old: str, new: str) -> None:
    pipeline_id = f"widen-{uuid.uuid4().hex[:8]}"
    v1, v2 = spec(pipeline_id, old), spec(pipeline_id, new)
    assert evolution_problems(v1, v2) == []
    await _store(v1, tmp_path, lake, pg_dsn, OLD[old], first=0)
    # The old rows reach PostgreSQL after the change too (a catch-up from the lake).
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM dash_silver._progress WHERE pipeline = %s", (pipeline_id,))
        conn.execute(f'DELETE FROM dash_silver."{pipeline_id}" WHERE seq > 2')
    await _store(v2, tmp_path, lake, pg_dsn, NEW[new], first=100)

    plan = spec_plan(v2)
    engines = {"duckdb": DuckDBEngine(lake, pipeline_id), "duckdb+rollups": DuckDBEngine(lake, pipeline_id, plan=plan),
               "postgres": PostgresEngine(pg_dsn, pipeline_id),
               "postgres+rollups": PostgresEngine(pg_dsn, pipeline_id, plan=plan)}
    queries = [{"fields": "code", "limit": "100"}]
    queries += ([{"bucket": "1h", "agg": "avg:code,min:code,max:code,first:code,sum:code,count:code", "by": "device"}]
                if new == "double" else [{"agg": "count,min:code,max:code,first:code", "by": "code"}])
    schema = spec_schema(v2)
    try:
        answers = {name: [engine.run(parse_query(q, schema)) for q in queries] for name, engine in engines.items()}
    finally:
        for engine in engines.values():
            engine.close()
    raw = [r["code"] for r in answers["duckdb"][0]["rows"]]
    assert len(raw) == len(OLD[old]) + len(NEW[new])
    assert all(isinstance(v, float if new == "double" else str) for v in raw)
    if old == "int":
        assert raw[:len(OLD[old])] == [float(v) if new == "double" else str(v) for v in OLD[old]]
    for name, got in answers.items():
        same(got, answers["duckdb"], name)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.floats(allow_nan=False) | st.just(math.nan) | st.integers(-(2**70), 2**70).map(float),
                       min_size=1, max_size=30))
def test_postgresql_shows_a_double_widened_to_text_as_duckdb_does(pg_dsn: str, values: list[float]) -> None:
    pipeline_id = f"text-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS dash_silver")
        conn.execute(f'CREATE TABLE dash_silver."{pipeline_id}" (i int, code double precision)')
        with conn.cursor() as cursor:
            cursor.executemany(f'INSERT INTO dash_silver."{pipeline_id}" VALUES (%s, %s)', list(enumerate(values)))
        for statement in (*SETUP, *retype_columns(pipeline_id, [Column("code", "string")],
                                                            {"code": "double precision"})):
            conn.execute(statement)
        shown = [r[0] for r in conn.execute(f'SELECT code FROM dash_silver."{pipeline_id}" ORDER BY i')]
        conn.execute(f'DROP TABLE dash_silver."{pipeline_id}"')
    con = duckdb.connect()
    try:
        expected = [con.execute("SELECT CAST(CAST(? AS DOUBLE) AS VARCHAR)", [v]).fetchone()[0] for v in values]
    finally:
        con.close()
    assert shown == expected


def test_old_rows_caught_up_after_the_change_are_stored_as_duckdb_shows_them(pg_dsn: str) -> None:
    # A catch-up after the widening copies rows from lake files of the old type.
    pipeline_id = f"late-{uuid.uuid4().hex[:8]}"
    names = ["i", "d", "b", "t"]
    store = PostgresSilver(pg_dsn, pipeline_id, [Column(n, "string") for n in names])
    old = pa.table({"seq": pa.array([1, 2], pa.int64()),
                    "time": pa.array([0, 1], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                    "i": pa.array([5, None], pa.int64()), "d": [2.0, 1e-5], "b": [True, None],
                    "t": pa.array([1_777_636_800_500_000, None]).cast(pa.timestamp("us", tz="UTC"))})
    try:
        store.write(old, first_seq=1, last_seq=2)
    finally:
        store.close()
    with psycopg.connect(pg_dsn) as conn:
        stored = conn.execute(f'SELECT i, d, b, t FROM dash_silver."{pipeline_id}" ORDER BY seq').fetchall()
    assert stored == [("5", "2.0", "true", "2026-05-01 12:00:00.5+00"), (None, "1e-05", None, None)]
