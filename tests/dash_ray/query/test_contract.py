"""One contract for every silver store: the same queries, on the same rows written through
each store, give the same answers from DuckDB over the lake and from PostgreSQL, and both
equal the plain-Python reference of the semantics (tests/dash_ray/query/reference.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from dash_ray.errors import QueryError
from dash_ray.query.model import parse_query
from tests.dash_ray.query.conftest import SCHEMA, Stores, same
from tests.dash_ray.query.reference import answer

MINUTE = 60_000_000
DAY = 86_400_000_000
BASE = 1_777_636_800_000_000  # 2026-05-01T12:00:00Z


def sample_rows(n: int = 400, seed: int = 7) -> list[dict[str, Any]]:
    """Rows over three days (one before 1970 too), with ties in time, nulls in every field,
    mixed-case strings and out-of-order times against seq."""
    rng = random.Random(seed)
    rows = []
    for seq in range(1, n + 1):
        if seq <= 5:
            time = -DAY - seq * 1_000_000  # 1969
        else:
            time = BASE + rng.randrange(0, 3 * DAY, 7 * 1_000_000) + rng.choice([0, 0, 500_000])
        rows.append({
            "seq": seq, "time": time,
            "device": rng.choice(["a", "B", "b", "äb", None]),
            "temp": None if rng.random() < 0.1 else round(rng.uniform(-20, 40), 3),
            "n": None if rng.random() < 0.1 else rng.randrange(-10**12, 10**12),
            "ok": rng.choice([True, False, None]),
            "seen": None if rng.random() < 0.2 else BASE + rng.randrange(-DAY, DAY),
            "tags": None if rng.random() < 0.3 else {"z": seq, "a": [rng.random() < 0.5, None]},
        })
    return rows


QUERIES: list[dict[str, str]] = [
    {},
    {"limit": "7"},
    {"limit": "10", "order": "desc"},
    {"fields": "temp,device", "limit": "25", "after": "100"},
    {"fields": "n", "order": "desc", "limit": "5", "after": "200"},
    {"fields": "seq", "limit": "5"},  # every row has seq and time: no other field (issue 22)
    {"fields": "time,seq,temp", "limit": "5", "order": "desc"},
    {"from": "2026-05-02T00:00:00Z", "to": "2026-05-03T00:00:00Z", "limit": "100000"},
    {"from": "1777636800", "to": "1777723200.5"},
    {"to": "1970-01-01T00:00:00Z"},
    {"agg": "count"},
    {"agg": "count,count:temp,avg:temp,min:temp,max:temp,sum:temp,first:temp,last:temp"},
    {"bucket": "1h", "agg": "avg:temp,count,sum:n,first:n,last:n"},
    {"bucket": "1m", "agg": "min:device,max:device,first:device,last:ok", "by": "device"},
    {"bucket": "10s", "agg": "count", "by": "device,ok", "from": "2026-05-01T12:00:00Z", "to": "2026-05-01T18:00:00Z"},
    {"bucket": "1d", "agg": "max:seen,min:seen,first:seen,count:tags", "by": "ok"},
    {"bucket": "7m", "agg": "sum:n,avg:n", "limit": "3"},
    {"agg": "last:temp,first:temp", "by": "device"},
    {"bucket": "1h", "agg": "count", "from": "2027-01-01T00:00:00Z"},
    # [ext] filter: equality on string and int fields, values bound as parameters.
    {"filter": "device:a,äb", "limit": "50"},
    {"filter": "device:B", "agg": "count,avg:temp", "bucket": "1h", "by": "device"},
    {"filter": "device:b,B", "agg": "count,max:n", "by": "ok"},
    {"filter": "device:a;n:1,2,3", "agg": "count"},
    {"filter": "device:a') OR TRUE OR (device IN ('x", "agg": "count"},
]


@pytest.fixture(scope="module")
def filled(module_stores: Stores) -> tuple[Stores, list[dict[str, Any]]]:
    rows = sample_rows()
    module_stores.write(rows)
    return module_stores, rows


@pytest.mark.parametrize("params", QUERIES, ids=[str(sorted(q.items())) for q in QUERIES])
def test_every_store_gives_the_reference_answer(filled, params: dict[str, str]) -> None:
    stores, rows = filled
    query = parse_query(params, SCHEMA)
    expected = answer(query, rows)
    for name, engine in stores.engines.items():
        same(engine.run(query), expected, name)


def test_paging_through_every_row_visits_each_once(filled) -> None:
    stores, rows = filled
    for name, engine in stores.engines.items():
        seen: list[int] = []
        params: dict[str, str] = {"limit": "37", "order": "desc"}
        while True:
            page = engine.run(parse_query(params, SCHEMA))
            seen += [r["seq"] for r in page["rows"]]
            if page["next"] is None:
                break
            params["after"] = str(page["next"])
        assert sorted(seen) == [r["seq"] for r in rows] and len(seen) == len(set(seen)), name


def test_a_repeated_range_write_replaces_rather_than_doubles(stores: Stores) -> None:
    rows = sample_rows(60)
    stores.write(rows, chunk=30)
    stores.write(rows, chunk=30)
    for name, engine in stores.engines.items():
        assert engine.run(parse_query({"agg": "count"}, SCHEMA))["rows"] == [{"count": 60}], name


def test_empty_stores_answer_empty(stores: Stores) -> None:
    for name, engine in stores.engines.items():
        assert engine.run(parse_query({}, SCHEMA)) == {"rows": [], "next": None}, name
        assert engine.run(parse_query({"bucket": "1m", "agg": "count"}, SCHEMA)) == {"rows": []}, name


def test_after_a_seq_that_is_not_stored_is_a_400(filled) -> None:
    stores, _ = filled
    for engine in stores.engines.values():
        with pytest.raises(QueryError) as caught:
            engine.run(parse_query({"after": "99999"}, SCHEMA))
        assert caught.value.where == "after"


@pytest.mark.parametrize(("params", "where"), [
    ({"fields": "nope"}, "fields"),
    ({"agg": "median:temp"}, "agg"),
    ({"agg": "avg:device"}, "agg"),
    ({"agg": "sum:ok"}, "agg"),
    ({"agg": "avg"}, "agg"),
    ({"agg": "max:tags"}, "agg"),
    ({"bucket": "5x", "agg": "count"}, "bucket"),
    ({"bucket": "0s", "agg": "count"}, "bucket"),
    ({"bucket": "1m"}, "bucket"),
    ({"by": "device"}, "by"),
    ({"by": "tags", "agg": "count"}, "by"),
    ({"from": "yesterday"}, "from"),
    ({"from": "2026-05-02T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "from"),
    ({"to": "1e30"}, "to"),
    ({"limit": "0"}, "limit"),
    ({"limit": "100001"}, "limit"),
    ({"order": "sideways"}, "order"),
    ({"after": "-1"}, "after"),
    ({"agg": "count", "fields": "temp"}, "fields"),
    ({"select": "1; DROP TABLE x"}, "select"),
    ({"filter": "nope:a"}, "filter"),
    ({"filter": "temp:1"}, "filter"),
    ({"filter": "device"}, "filter"),
    ({"filter": "n:x"}, "filter"),
    ({"filter": "device:" + ",".join("v" * 5 for _ in range(101))}, "filter"),
    ({"filter": "device:" + "v" * 201}, "filter"),
    ({"filter": "device:a;device:b"}, "filter"),
    ({"filter": "device:a;n:1;device:c;n:2;device:d"}, "filter"),
    ({"agg": 'count:"temp"; DROP'}, "agg"),
])
def test_bad_parameters_are_400s_naming_the_parameter(params: dict[str, str], where: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(params, SCHEMA)
    assert caught.value.status == 400 and caught.value.where == where
