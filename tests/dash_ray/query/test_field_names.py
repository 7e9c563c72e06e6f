"""Any field name a spec accepts is stored and queried back as written, through the whole
path: mapping, flush to the lake and PostgreSQL, rollups, compaction, a restart's warm hot
cache, and both query engines raw and from rollups. Names chosen to clash with what the
stores and the SQL use inside (hive's `date`, the rollups' `bucket_us` and `rows`, partial
names, CTE and alias names, SQL keywords, mixed case, the longest name)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_ray.errors import QueryError
from dash_ray.ingest.batch import RawBatch
from dash_ray.lake import Lake
from dash_ray.lifecycle.compaction import compact
from dash_ray.pipeline.core import PipelineCore
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.query.postgres import PostgresEngine
from dash_ray.silver.choice import postgres_follower
from dash_ray.silver.lake import LakeSilver
from dash_ray.silver.postgres import PostgresSilver
from dash_ray.silver.rollup import plan_for, spec_plan
from dash_ray.silver.schema import Column, Schema, schema_problems, spec_schema
from dash_ray.spec import FIELD_NAME_PATTERN, parse_spec
from tests.dash_ray.query.conftest import same
from tests.dash_ray.query.reference import answer

# Through the whole pipeline (each failed before names were kept apart, or is a keyword);
# the hypothesis test below samples these and more through both stores.
NAMES = ["date", "Date", "rows", "bucket_us", "bucket_key", "bucket", "_one", "_one_sum", "silver", "user",
         "select", "count", "MixedCase", "zz_value__n", "x" * 58, "y" * 63]
BASE = 1_777_593_600  # 2026-05-01T00:00:00Z
RECORDS = 90


def spec_for(name: str, kind: str) -> dict[str, Any]:
    return {
        "id": f"names-{uuid.uuid4().hex[:8]}",
        "mapping": {"fields": {
            "time": {"path": "$.ts", "type": "timestamp", "unit": "s"},
            name: {"path": "$.v", "type": kind},
            "zz_device": {"path": "$.d", "type": "string"},
            "zz_value": {"path": "$.x", "type": "double"},
        }},
        "flush": {"records": 100_000, "seconds": 3600},
        "storage": {"compaction": {"min_files": 2, "target_bytes": 1024 * 1024, "interval_s": 3600}},
    }


def record(i: int, kind: str) -> dict[str, Any]:
    # Spread over three days, several ranges per day.
    return {"ts": BASE + (i * 2711) % (3 * 86_400), "v": f"s{i % 4}" if kind == "string" else i * 0.5,
            "d": f"d{i % 3}", "x": float(i % 7)}


def reference_rows(name: str, kind: str) -> list[dict[str, Any]]:
    return [{"seq": i + 1, "time": record(i, kind)["ts"] * 1_000_000, name: record(i, kind)["v"],
             "zz_device": record(i, kind)["d"], "zz_value": record(i, kind)["x"]} for i in range(RECORDS)]


def queries(name: str, kind: str) -> list[dict[str, str]]:
    found = [{"fields": name, "limit": "1000"}, {"limit": "1000", "order": "desc"}]
    if kind == "string":
        found += [{"agg": "count:zz_value,sum:zz_value", "by": name},
                  {"agg": "count:zz_value,max:zz_value", "by": f"{name},zz_device", "from": "2026-05-01T06:00:00Z"},
                  {"agg": f"min:{name},max:{name},first:{name},last:{name},count:{name}"}]
        if name != "bucket":
            found.append({"bucket": "1h", "agg": "sum:zz_value,count:zz_value", "by": name})
    else:
        found += [{"bucket": "1h", "agg": f"avg:{name},first:{name},last:{name},min:{name},max:{name},count",
                   "by": "zz_device"},
                  {"agg": f"sum:{name},count:{name}"},
                  {"bucket": "1m", "agg": f"sum:{name}", "from": "2026-05-01T12:00:30Z", "to": "2026-05-02T12:00:00Z"}]
    return found


async def _ingest(core: PipelineCore, kind: str) -> None:
    for start in range(0, RECORDS, 15):
        payload = b"".join(orjson.dumps(record(i, kind)) + b"\n" for i in range(start, min(RECORDS, start + 15)))
        await core.ingest([RawBatch(payload, payload.count(b"\n"), time.time_ns() // 1000)])
        await core.flush()


def _answers(engines: dict[str, Any], spec: Any, name: str, kind: str) -> dict[str, list[dict[str, Any]]]:
    schema = spec_schema(spec)
    return {label: [engine.run(parse_query(q, schema)) for q in queries(name, kind)]
            for label, engine in engines.items()}


@pytest.mark.parametrize("kind", ["string", "double"])
@pytest.mark.parametrize("name", NAMES)
async def test_a_field_name_is_stored_and_queried_back_as_written(tmp_path: Path, pg_dsn: str, name: str,
                                                                  kind: str) -> None:
    spec = parse_spec(spec_for(name, kind))
    assert schema_problems(spec) == []
    lake = Lake.from_url(str(tmp_path / "lake"))
    follower = postgres_follower(spec, lake, pg_dsn)
    follower.backoff_s, follower.max_backoff_s = 0.05, 0.2
    core = PipelineCore(spec, wal_dir=tmp_path / "wal", lake=lake, followers=[follower])
    await core.start()
    await _ingest(core, kind)
    await asyncio.wait_for(follower.wait_stored(RECORDS), 30)
    assert core.health()["counters"]["silver_error"] is None

    plan = spec_plan(spec)
    engines = {"duckdb": DuckDBEngine(lake, spec.id), "duckdb+rollups": DuckDBEngine(lake, spec.id, plan=plan),
               "postgres": PostgresEngine(pg_dsn, spec.id),
               "postgres+rollups": PostgresEngine(pg_dsn, spec.id, plan=plan)}
    try:
        rows = reference_rows(name, kind)
        schema = spec_schema(spec)
        expected = [answer(parse_query(q, schema), rows) for q in queries(name, kind)]
        for label, got in _answers(engines, spec, name, kind).items():
            same(got, expected, label)

        # Compaction merges every area (rollups included) and changes no answer.
        report = compact(lake, spec.id, stored_seq=core.counters.stored_seq, plan=plan,
                         target_bytes=1024 * 1024, min_files=2)
        assert report.groups >= 1 and report.removed == report.files_in
        for label in ("duckdb", "duckdb+rollups"):
            same([engines[label].run(parse_query(q, schema)) for q in queries(name, kind)], expected, label)
    finally:
        for engine in engines.values():
            engine.close()

    # A restart warms the hot cache from the lake's silver: the field is there as written.
    await core.close()
    again = PipelineCore(spec, wal_dir=tmp_path / "wal", lake=lake)
    await again.start()
    try:
        newest = again.records(limit=RECORDS)
        assert newest and all(r["data"][name] == rows[r["seq"] - 1][name] for r in newest)
    finally:
        await again.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS dash_silver."{spec.id}"')


@pytest.mark.parametrize("length", [57, 58, 63])
def test_an_aggregate_over_a_long_name_is_not_a_500(tmp_path: Path, pg_dsn: str, length: int) -> None:
    # `first_<name>` is longer than PostgreSQL's 63-character identifiers from 58 on.
    name, pipeline_id = "v" * length, f"long-{uuid.uuid4().hex[:8]}"
    schema = Schema((Column(name, "double"), Column("k", "string")))
    plan = plan_for(schema, granularities=["1m"])
    lake = Lake.from_url(str(tmp_path / "lake"))
    table = pa.table({"seq": pa.array([1, 2, 3], pa.int64()),
                      "time": pa.array([BASE * 10**6, BASE * 10**6 + 1, (BASE + 90) * 10**6]).cast(
                          pa.timestamp("us", tz="UTC")),
                      name: [1.5, None, 4.0], "k": ["a", "b", "a"]})
    pg = PostgresSilver(pg_dsn, pipeline_id, list(schema.columns), plan=plan)
    for store in (LakeSilver(lake, pipeline_id, plan), pg):
        store.write(table, first_seq=1, last_seq=3)
    pg.close()
    query = parse_query({"bucket": "1m", "agg": f"first:{name},last:{name},avg:{name}", "by": "k"}, schema)
    expected = {"rows": [{"bucket": "2026-05-01T00:00:00Z", "k": "a", f"first_{name}": 1.5, f"last_{name}": 1.5,
                          f"avg_{name}": 1.5},
                         {"bucket": "2026-05-01T00:00:00Z", "k": "b", f"first_{name}": None, f"last_{name}": None,
                          f"avg_{name}": None},
                         {"bucket": "2026-05-01T00:01:00Z", "k": "a", f"first_{name}": 4.0, f"last_{name}": 4.0,
                          f"avg_{name}": 4.0}]}
    for engine in (DuckDBEngine(lake, pipeline_id), DuckDBEngine(lake, pipeline_id, plan=plan),
                   PostgresEngine(pg_dsn, pipeline_id), PostgresEngine(pg_dsn, pipeline_id, plan=plan)):
        try:
            same(engine.run(query), expected, type(engine).__name__)
        finally:
            engine.close()


@pytest.mark.parametrize(("params", "where"), [
    ({"bucket": "1h", "agg": "count", "by": "bucket"}, "by"),
    ({"agg": "count", "by": "count"}, "by"),
    ({"agg": "avg:zz_value", "by": "avg_zz_value"}, "by"),
])
def test_an_answer_whose_columns_would_share_a_name_is_a_400_saying_so(params: dict[str, str], where: str) -> None:
    spec = parse_spec({**spec_for("bucket", "string"), "mapping": {"fields": {
        **spec_for("bucket", "string")["mapping"]["fields"],
        "count": {"path": "$.c", "type": "string"}, "avg_zz_value": {"path": "$.a", "type": "string"}}}})
    with pytest.raises(QueryError) as raised:
        parse_query(params, spec_schema(spec))
    assert raised.value.where == where and "same name" in str(raised.value)


def test_field_names_differing_only_in_case_are_refused_at_deploy() -> None:
    spec = parse_spec({**spec_for("Temp", "double"), "mapping": {"fields": {
        **spec_for("Temp", "double")["mapping"]["fields"], "temp": {"path": "$.t", "type": "double"}}}})
    [problem] = schema_problems(spec)
    assert problem.path == "mapping.fields.temp" and "Temp" in problem.message and "case" in problem.message


INTERNAL = ["date", "rows", "bucket_us", "bucket", "bucket_key", "time_us", "_one", "_one_sum", "parts", "rolled",
            "unrolled", "silver", "select", "order", "group", "from", "user", "count", "ROWS", "Date", "a__n",
            "a__sum", "avg_a", "h", "n", "first_t", "x" * 63]
names = st.one_of(st.sampled_from(INTERNAL), st.from_regex(FIELD_NAME_PATTERN, fullmatch=True))


@st.composite
def schemas(draw: st.DrawFn) -> Schema:
    chosen = draw(st.lists(names, min_size=1, max_size=4, unique_by=str.lower))
    columns = [Column(n, draw(st.sampled_from(["string", "int", "double"]))) for n in chosen
               if n.lower() not in ("seq", "time", "extra", "received_at")]
    return Schema((*columns, Column("a", "double")) if all(c.name.lower() != "a" for c in columns) else tuple(columns))


def _value(column: Column, i: int) -> Any:
    return {"string": f"v{i % 3}", "int": i - 5, "double": i / 4}[column.type] if i % 5 else None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=schemas())
def test_both_stores_keep_any_accepted_names_apart(tmp_path: Path, pg_dsn: str, schema: Schema) -> None:
    pipeline_id = f"h-{uuid.uuid4().hex[:8]}"
    plan = plan_for(schema, granularities=["1m", "1h"])
    assert plan is not None
    lake = Lake.from_url(str(tmp_path / pipeline_id))
    stores = [LakeSilver(lake, pipeline_id, plan), PostgresSilver(pg_dsn, pipeline_id, list(schema.columns), plan=plan)]
    rows = [{"seq": i + 1, "time": (BASE + i * 97) * 1_000_000, **{c.name: _value(c, i) for c in schema.columns}}
            for i in range(40)]
    arrow = {"string": pa.string(), "int": pa.int64(), "double": pa.float64()}
    for first in range(0, 40, 13):
        part = rows[first:first + 13]
        table = pa.table({"seq": pa.array([r["seq"] for r in part], pa.int64()),
                          "time": pa.array([r["time"] for r in part], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                          **{c.name: pa.array([r[c.name] for r in part], arrow[c.type]) for c in schema.columns}})
        for store in stores:
            store.write(table, first_seq=part[0]["seq"], last_seq=part[-1]["seq"])
    stores[1].close()
    engines = [DuckDBEngine(lake, pipeline_id, plan=plan), PostgresEngine(pg_dsn, pipeline_id, plan=plan)]
    numeric = [c.name for c in schema.columns if c.type != "string"]
    by = [c.name for c in plan.by][:2]
    params = [{"limit": "100"},
              {"bucket": "1h",
               "agg": ",".join(["count", *(f"{fn}:{n}" for n in numeric for fn in ("avg", "first", "max"))]),
               "by": ",".join(by)},
              {"agg": ",".join(["count", *(f"{fn}:{n}" for n in numeric for fn in ("sum", "last", "count"))])}]
    try:
        for p in params:
            if not p.get("by"):
                p.pop("by", None)
            try:
                query = parse_query(p, schema)
            except QueryError as exc:
                assert exc.where == "by" and "same name" in str(exc)
                continue
            expected = answer(query, rows)
            for engine in engines:
                same(engine.run(query), expected, f"{type(engine).__name__} {p}")
    finally:
        for engine in engines:
            engine.close()
