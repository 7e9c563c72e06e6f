"""Values the lake keeps and PostgreSQL refuses never stop PostgreSQL silver: the character
U+0000 (text and jsonb cannot hold it) is stored as U+FFFD; a row PostgreSQL refuses for any
other reason (a constraint someone added) is left out with its reason, counted, and the range
is written without it."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.mapping.timestamps import MAX_US, MIN_US
from dash_ray.pipeline.core import PipelineCore
from dash_ray.silver.choice import postgres_follower
from dash_ray.silver.postgres import PostgresSilver
from dash_ray.silver.rollup import plan_for, spec_plan
from dash_ray.silver.schema import Column, spec_schema
from dash_ray.spec import parse_spec
from tests.dash_ray.silver.conftest import rollups_match_rows

_TIME = pa.timestamp("us", tz="UTC")
BASE_US = 1_767_225_600_000_000


async def test_a_nul_character_in_a_string_json_or_extra_value_does_not_stop_postgresql(
        tmp_path: Path, pg_dsn: str) -> None:
    spec = parse_spec({"id": f"nul-{uuid.uuid4().hex[:8]}", "mapping": {"keep_extra": True, "fields": {
        "time": {"path": "$.ts", "type": "timestamp", "unit": "ms"},
        "device": {"path": "$.device", "type": "string"},
        "tags": {"path": "$.tags", "type": "json"},
        "v": {"path": "$.v", "type": "double"}}}, "flush": {"records": 500, "seconds": 0.05}})
    lake = Lake.from_url(str(tmp_path / "lake"))
    follower = postgres_follower(spec, lake, pg_dsn)
    follower.backoff_s, follower.max_backoff_s = 0.05, 0.2
    core = PipelineCore(spec, wal_dir=tmp_path / "wal", lake=lake, followers=[follower])
    await core.start()
    records = [
        {"ts": 1_767_225_600_000, "device": "a\u0000b", "tags": {"k": "x\u0000"}, "v": 1.0},
        {"ts": 1_767_225_601_000, "device": "c", "tags": {"\u0000key": [1, "\u0000"], "esc": "\\u0000"},
         "note": "extra\u0000", "v": 2.0},
        {"ts": 1_767_225_602_000, "device": "\u0000", "tags": "\u0000\u0000", "v": 3.0},
    ]
    later = [{"ts": 1_767_225_603_000 + i, "device": "d", "tags": None, "v": float(i)} for i in range(5)]
    try:
        for batch in (records, later):
            payload = b"".join(orjson.dumps(r) + b"\n" for r in batch)
            await core.ingest([RawBatch(payload, len(batch), time.time_ns() // 1000)])
            await core.flush()
        await asyncio.wait_for(follower.wait_stored(8), 20)
        counters = core.health()["counters"]
        assert counters["silver_error"] is None and counters["silver_lag"] == 0
        assert counters["silver_refused"] == 0
    finally:
        await core.close()
    with psycopg.connect(pg_dsn) as conn:
        stored = conn.execute(f'SELECT seq, device, tags, extra FROM dash_silver."{spec.id}" ORDER BY seq').fetchall()
    assert [r[0] for r in stored] == list(range(1, 9))
    assert stored[0][1:3] == ("a\ufffdb", {"k": "x\ufffd"})
    assert stored[1][2] == {"\ufffdkey": [1, "\ufffd"], "esc": "\\u0000"} and stored[1][3] == {"note": "extra\ufffd"}
    assert stored[2][1:3] == ("\ufffd", "\ufffd\ufffd")
    rollups_match_rows(pg_dsn, spec.id)
    # The lake keeps what was sent.
    assert lake.read("silver", spec.id, columns=["seq", "device"]).column("device").to_pylist()[:3] == [
        "a\u0000b", "c", "\u0000"]


def _rows(values: list[float], first: int = 1) -> pa.Table:
    seqs = list(range(first, first + len(values)))
    return pa.table({"seq": pa.array(seqs, pa.int64()),
                     "time": pa.array([BASE_US + s * 1_000_000 for s in seqs], pa.int64()).cast(_TIME),
                     "device": [f"d{s % 2}" for s in seqs], "v": pa.array(values, pa.float64()),
                     "n": pa.array(seqs, pa.int64())})


def test_a_row_postgresql_refuses_is_left_out_with_its_reason_and_the_range_goes_on(pg_dsn: str) -> None:
    spec = parse_spec({"id": f"refuse-{uuid.uuid4().hex[:8]}", "mapping": {"fields": {
        "time": {"path": "$.ts", "type": "timestamp"}, "device": {"path": "$.d", "type": "string"},
        "v": {"path": "$.v", "type": "double"}, "n": {"path": "$.n", "type": "int"}}}})
    store = PostgresSilver(pg_dsn, spec.id, list(spec_schema(spec).columns), plan=spec_plan(spec))
    try:
        store.write(_rows([1.0]), first_seq=1, last_seq=1)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'ALTER TABLE dash_silver."{spec.id}" ADD CONSTRAINT small_v CHECK (v < 100)')
        store.write(_rows([1.0, 500.0, 2.0, 3.0, 700.0, 4.0], first=2), first_seq=2, last_seq=9)
        assert store.stored_seq() == 9 and store.refused == 2
        with psycopg.connect(pg_dsn) as conn:
            kept = [r[0] for r in conn.execute(f'SELECT seq FROM dash_silver."{spec.id}" ORDER BY seq')]
            refused = conn.execute("SELECT seq, reason FROM dash_silver._refused WHERE pipeline = %s ORDER BY seq",
                                   (spec.id,)).fetchall()
        assert kept == [1, 2, 4, 5, 7]
        assert [r[0] for r in refused] == [3, 6] and all("small_v" in r[1] for r in refused)
        rollups_match_rows(pg_dsn, spec.id)
        # The range written again with values the table takes: nothing refused any more.
        store.write(_rows([1.0, 5.0, 2.0, 3.0, 7.0, 4.0], first=2), first_seq=2, last_seq=9)
        assert store.refused == 0
        rollups_match_rows(pg_dsn, spec.id)
    finally:
        store.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8)
row_values = st.lists(st.tuples(st.none() | st.text(), st.none() | json_values, st.none() | st.floats()),
                      min_size=1, max_size=20)


def _fitted(value: Any) -> Any:
    """A value as PostgreSQL gives it back: U+0000 replaced; numbers compared as doubles
    (jsonb writes 1e+16 as 10000000000000000)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list):
        return [_fitted(v) for v in value]
    if isinstance(value, dict):
        return {_fitted(k): _fitted(v) for k, v in value.items()}
    return value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=row_values)
def test_any_string_json_or_double_value_is_stored(pg_dsn: str, values: list[tuple[Any, Any, Any]]) -> None:
    columns = [Column("s", "string"), Column("j", "json"), Column("d", "double")]
    pipeline_id = f"any-{uuid.uuid4().hex[:8]}"
    store = PostgresSilver(pg_dsn, pipeline_id, columns, plan=plan_for_strings(columns))
    n = len(values)
    table = pa.table({"seq": pa.array(range(1, n + 1), pa.int64()),
                      "time": pa.array([BASE_US + i for i in range(n)], pa.int64()).cast(_TIME),
                      "s": pa.array([v[0] for v in values], pa.string()),
                      "j": pa.array([None if v[1] is None else orjson.dumps(v[1]).decode() for v in values],
                                    pa.string()),
                      "d": pa.array([v[2] for v in values], pa.float64())})
    try:
        store.write(table, first_seq=1, last_seq=n)
        assert store.stored_seq() == n and store.refused == 0
    finally:
        store.close()
    with psycopg.connect(pg_dsn) as conn:
        stored = conn.execute(f'SELECT s, j, d FROM dash_silver."{pipeline_id}" ORDER BY seq').fetchall()
        conn.execute(f'DROP TABLE dash_silver."{pipeline_id}"')
    for (s, j, d), (s0, j0, d0) in zip(stored, values, strict=True):
        assert s == _fitted(s0) and _fitted(j) == _fitted(j0)
        assert (d is None and d0 is None) or (math.isnan(d) and math.isnan(d0)) or d == d0


def plan_for_strings(columns: list[Column]) -> Any:
    """Rollups grouped by the string column, so its values reach the rollup tables too."""
    from dash_ray.silver.schema import Schema

    return plan_for(Schema(tuple(columns)), by=["s"], granularities=["1m"])


def test_the_extremes_the_mapping_can_produce_fit_postgresql(pg_dsn: str) -> None:
    # Timestamps in years 1 and 9999, the widest ints, doubles PostgreSQL shows as NaN and
    # Infinity: the lake keeps them, and PostgreSQL takes them as they are.
    columns = [Column("t", "timestamp"), Column("i", "int"), Column("d", "double")]
    pipeline_id = f"edge-{uuid.uuid4().hex[:8]}"
    store = PostgresSilver(pg_dsn, pipeline_id, columns, plan=None)
    times = [MIN_US, MAX_US, 0]
    table = pa.table({"seq": pa.array([1, 2, 3], pa.int64()), "time": pa.array(times, pa.int64()).cast(_TIME),
                      "t": pa.array(times, pa.int64()).cast(_TIME), "i": pa.array([-(2**63), 2**63 - 1, 0], pa.int64()),
                      "d": pa.array([math.inf, -math.inf, math.nan])})
    try:
        store.write(table, first_seq=1, last_seq=3)
        assert store.refused == 0
    finally:
        store.close()
    with psycopg.connect(pg_dsn) as conn:
        stored = conn.execute(f"SELECT (extract(epoch from t) * 1000000)::bigint, i, d::text"
                              f' FROM dash_silver."{pipeline_id}" ORDER BY seq').fetchall()
    assert stored == [(MIN_US, -(2**63), "Infinity"), (MAX_US, 2**63 - 1, "-Infinity"), (0, 0, "NaN")]
