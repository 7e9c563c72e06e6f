"""The limits a heavy query meets (issue 21, item 12): a time limit on both engines that ends
the statement and says why (422), no second run of a timed-out PostgreSQL query on the lake,
a bound on the buckets a bucketed aggregate may produce, and a PostgreSQL pool that does not
wait forever."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from dash_ray.errors import QueryError, UnavailableError
from dash_ray.lake import Lake
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.query.postgres import PostgresEngine
from dash_ray.silver.lake import LakeSilver
from dash_ray.silver.postgres import PostgresSilver
from tests.dash_ray.query.conftest import SCHEMA, to_table

BASE = 1_777_636_800_000_000  # 2026-05-01T12:00:00Z
ROWS = 400_000
# An aggregate that makes a group of every row: seconds of work for either engine here.
HEAVY = {"bucket": "1s", "agg": "avg:temp,first:temp,last:temp,min:device,max:device,count", "by": "device,n"}


def _table(first: int, count: int) -> pa.Table:
    seq = pa.array(range(first, first + count), pa.int64())
    return pa.table({
        "seq": seq,
        "time": pc.add(pc.multiply(seq, 1_000_000), BASE).cast(pa.timestamp("us", tz="UTC")),
        "device": pc.cast(pc.bit_wise_and(seq, 1023), pa.string()),
        "temp": pc.cast(pc.bit_wise_and(seq, 1023), pa.float64()),
        "n": seq,
        "ok": pc.equal(pc.bit_wise_and(seq, 1), 0),
        "seen": pa.nulls(count, pa.timestamp("us", tz="UTC")),
        "tags": pa.nulls(count, pa.string()),
    })


class Heavy:
    """Many rows, the same in the lake and in PostgreSQL (no rollups), for one pipeline."""

    def __init__(self, root: Path, dsn: str) -> None:
        self.pipeline_id = f"limits-{uuid.uuid4().hex[:8]}"
        self.dsn = dsn
        self.lake = Lake.from_url(str(root / "lake"))
        lake_silver = LakeSilver(self.lake, self.pipeline_id)
        pg_silver = PostgresSilver(dsn, self.pipeline_id, list(SCHEMA.columns))
        try:
            for first in range(1, ROWS + 1, 200_000):
                table = _table(first, 200_000)
                lake_silver.write(table, first_seq=first, last_seq=first + 199_999)
                pg_silver.write(table, first_seq=first, last_seq=first + 199_999)
        finally:
            pg_silver.close()


@pytest.fixture(scope="module")
def heavy(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Heavy]:
    made = Heavy(tmp_path_factory.mktemp("heavy"), pg_dsn)
    yield made
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS dash_silver."{made.pipeline_id}"')


def test_a_duckdb_query_past_its_time_limit_is_stopped_with_a_422_saying_why(heavy: Heavy) -> None:
    engine = DuckDBEngine(heavy.lake, heavy.pipeline_id, timeout_s=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(QueryError) as caught:
            engine.run(parse_query(HEAVY, SCHEMA))
        took = time.monotonic() - started
        assert caught.value.status == 422 and caught.value.where == "timeout"
        assert "0.2 s" in caught.value.message
        assert took < 3.0, f"the statement ran {took:.1f} s past its 0.2 s limit"
        # The engine answers the next query as before.
        assert engine.run(parse_query({"agg": "count"}, SCHEMA))["rows"] == [{"count": ROWS}]
    finally:
        engine.close()


def test_a_postgresql_query_past_its_time_limit_is_a_422_and_is_not_run_again_on_the_lake(
        heavy: Heavy, tmp_path: Path, pg_dsn: str) -> None:
    """PostgreSQL's statement timeout ends it; the web tier must not then run the same heavy
    query on DuckDB (it fell back to the lake on any PostgreSQL error)."""
    from dash_ray.query.engines import QueryEngines
    from dash_ray.spec import parse_spec

    engines = QueryEngines(lake_url=str(tmp_path / "elsewhere"), pg_dsn=pg_dsn, timeout_s=0.2)
    spec = parse_spec({"id": heavy.pipeline_id, "mapping": {"fields": {n: {"path": f"$.{n}", "type": t}
                                                                       for n, t in _SPEC_FIELDS.items()}},
                       "storage": {"silver": "postgres"}})
    duck = engines.for_spec(spec).lake
    lake_runs = []
    original = duck.run
    duck.run = lambda query: lake_runs.append(query) or original(query)  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        with pytest.raises(QueryError) as caught:
            engines.run(spec, dict(HEAVY))
        assert caught.value.status == 422 and caught.value.where == "timeout"
        assert time.monotonic() - started < 5.0
        assert lake_runs == []
    finally:
        engines.close()


_SPEC_FIELDS = {"device": "string", "temp": "double", "n": "int", "ok": "bool", "seen": "timestamp", "tags": "json"}


def test_the_postgresql_pool_does_not_wait_forever(heavy: Heavy, pg_dsn: str) -> None:
    engine = PostgresEngine(pg_dsn, heavy.pipeline_id, pool_size=1, timeout_s=0.3)
    held = engine._pool.take(1.0)  # every connection in use
    try:
        started = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            engine.run(parse_query({"agg": "count"}, SCHEMA))
        assert time.monotonic() - started < 3.0
        assert "busy" in caught.value.message
    finally:
        engine._pool.give(held)
        engine.close()


@pytest.mark.parametrize("params", [
    {"bucket": "1s", "agg": "count", "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"},
    {"bucket": "1m", "agg": "count", "from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
])
def test_a_bucketed_aggregate_over_more_buckets_than_the_bound_is_a_422(params: dict[str, str]) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(params, SCHEMA)
    assert caught.value.status == 422 and caught.value.where == "bucket"
    assert "100,000" in caught.value.message


def test_a_bucketed_aggregate_within_the_bound_is_accepted() -> None:
    query = parse_query({"bucket": "1m", "agg": "count", "from": "2026-01-01T00:00:00Z",
                         "to": "2026-02-01T00:00:00Z"}, SCHEMA)  # 44,640 buckets
    assert query.bucket_us == 60_000_000


def test_a_time_limit_that_fires_between_statements_still_stops_the_next_one(tmp_path: Path) -> None:
    """DuckDB forgets an interrupt that comes while no statement runs: the deadline keeps
    interrupting until the query ends."""
    lake = Lake.from_url(str(tmp_path / "lake"))
    silver = LakeSilver(lake, "p")
    silver.write(to_table([{"seq": 1, "time": BASE}]), first_seq=1, last_seq=1)
    engine = DuckDBEngine(lake, "p", timeout_s=0.0)
    try:
        with pytest.raises(QueryError) as caught:
            engine.run(parse_query({"agg": "count"}, SCHEMA))
        assert caught.value.where == "timeout"
        assert threading.active_count() < 50
    finally:
        engine.close()
