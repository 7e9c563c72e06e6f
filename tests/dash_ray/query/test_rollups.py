"""Rollup answers equal raw answers: with the range's edges inside rollup buckets, with some
ranges not rolled up yet (their partials missing), and for every granularity a query can use."""

from __future__ import annotations

import pytest

from dash_ray.query.model import parse_query
from dash_ray.query.rollup_sql import granularity_for, middle_of
from dash_ray.silver.lake import rollup_area
from dash_ray.silver.rollup import GRANULARITIES
from tests.dash_ray.query.conftest import SCHEMA, Stores, same
from tests.dash_ray.query.reference import answer
from tests.dash_ray.query.test_contract import sample_rows

QUERIES = [
    {"bucket": "1m", "agg": "count,avg:temp,sum:n,first:temp,last:n,min:n,max:temp", "by": "device",
     "from": "2026-05-01T12:03:17.25Z", "to": "2026-05-02T09:59:59Z"},
    {"bucket": "10s", "agg": "count,count:temp,sum:temp", "from": "2026-05-01T13:00:05Z",
     "to": "2026-05-01T14:00:00Z"},
    {"bucket": "2h", "agg": "avg:n,first:n", "by": "ok,device"},
    {"agg": "count,last:temp,first:temp", "by": "ok", "from": "2026-05-02T00:00:00.000001Z"},
    {"bucket": "1d", "agg": "sum:n,count", "to": "2026-05-03T01:00:00Z"},
    # [ext] a filter on a field the partials group by is answered from them.
    {"bucket": "1h", "agg": "count,avg:temp", "filter": "device:a,B", "from": "2026-05-01T12:30:00Z"},
]


def test_queries_here_take_the_rollup_path(module_stores: Stores) -> None:
    for params in QUERIES:
        query = parse_query(params, SCHEMA)
        granularity = granularity_for(module_stores.plan, query)
        assert granularity is not None and middle_of(query, granularity) is not None, params


@pytest.mark.parametrize("params", QUERIES, ids=[str(sorted(q.items())) for q in QUERIES])
def test_rollup_answers_equal_raw_answers(module_stores: Stores, params: dict[str, str]) -> None:
    rows = _filled(module_stores)
    query = parse_query(params, SCHEMA)
    expected = answer(query, rows)
    for name, engine in module_stores.engines.items():
        same(engine.run(query), expected, name)


def test_ranges_not_rolled_up_yet_are_read_raw(stores: Stores) -> None:
    rows = sample_rows(300, seed=11)
    stores.write(rows, chunk=40)
    # Partials of some ranges are missing, as when their rollup write has not happened yet.
    for granularity in stores.plan.granularities:
        area = rollup_area(stores.plan, granularity)
        for f in stores.lake.files(area, stores.pipeline_id):
            if f.first_seq in (41, 201):
                stores.lake.fs.rm_file(f.path)
    for params in QUERIES:
        query = parse_query(params, SCHEMA)
        same(stores.engines["duckdb+rollups"].run(query), answer(query, rows), str(params))


def test_postgres_rollups_follow_rewritten_and_discarded_ranges(stores: Stores) -> None:
    rows = sample_rows(240, seed=5)
    stores.write(rows, chunk=60)
    # Replay rewrites range 61..120 with other values; then the ranges after 180 are
    # discarded (the lake discards whole ranges, as recovery does).
    from tests.dash_ray.query.conftest import to_table

    changed = [{**r, "temp": (r["temp"] or 0) + 1000, "n": None} for r in rows[60:120]]
    stores.pg_silver.write(to_table(changed), first_seq=61, last_seq=120)
    stores.lake_silver.write(to_table(changed), first_seq=61, last_seq=120)
    rows[60:120] = changed
    stores.pg_silver.discard_after(180)
    stores.lake_silver.discard_after(180)
    rows = rows[:180]
    for params in QUERIES:
        query = parse_query(params, SCHEMA)
        for name, engine in stores.engines.items():
            same(engine.run(query), answer(query, rows), f"{name} {params}")


def test_each_granularity_is_chosen_for_the_buckets_it_divides(module_stores: Stores) -> None:
    plan = module_stores.plan
    for bucket, expected in [("10s", "10s"), ("30s", "10s"), ("1m", "1m"), ("90s", "10s"), ("5m", "1m"),
                             ("1h", "1h"), ("6h", "1h"), ("1d", "1d"), ("7s", None)]:
        query = parse_query({"bucket": bucket, "agg": "count"}, SCHEMA)
        assert granularity_for(plan, query) == expected, bucket
    # Functions or groups the partials do not hold go raw.
    assert granularity_for(plan, parse_query({"bucket": "1m", "agg": "max:device"}, SCHEMA)) is None
    assert granularity_for(plan, parse_query({"bucket": "1m", "agg": "count", "by": "seen"}, SCHEMA)) is None
    assert granularity_for(plan, parse_query({"bucket": "1m", "agg": "count", "filter": "n:1"}, SCHEMA)) is None
    assert GRANULARITIES["1d"] == 86_400_000_000


_ROWS: dict[int, list] = {}


def _filled(stores: Stores) -> list:
    if id(stores) not in _ROWS:
        rows = sample_rows(500, seed=3)
        stores.write(rows, chunk=60)
        _ROWS[id(stores)] = rows
    return _ROWS[id(stores)]
