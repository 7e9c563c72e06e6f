"""Random rows, random queries: DuckDB over the lake and PostgreSQL answer the same, and as
the reference does: time zones in the range, empty buckets, nulls, ties on first/last."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_ray.query.model import parse_query
from tests.dash_ray.query.conftest import SCHEMA, Stores, same
from tests.dash_ray.query.reference import answer

BASE = 1_777_636_800_000_000  # 2026-05-01T12:00:00Z
HOUR = 3_600_000_000

# Few distinct times, so ties on (time) are common and seq must break them.
times = st.integers(0, 40).map(lambda k: BASE + k * 450_000_000)
rows_strategy = st.lists(st.fixed_dictionaries({
    "time": times,
    "device": st.none() | st.sampled_from(["a", "A", "b"]),
    "temp": st.none() | st.floats(-1e6, 1e6, allow_nan=False, width=64),
    "n": st.none() | st.integers(-(2**62), 2**62),
    "ok": st.none() | st.booleans(),
}), min_size=0, max_size=60)


@st.composite
def instants(draw: st.DrawFn) -> str:
    micros = draw(st.integers(BASE - HOUR, BASE + 6 * HOUR))
    offset = draw(st.sampled_from([0, 60, -300, 330, 14 * 60]))
    zone = dt.timezone(dt.timedelta(minutes=offset))
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=micros)
    return moment.astimezone(zone).isoformat()


@st.composite
def queries(draw: st.DrawFn) -> dict[str, str]:
    params: dict[str, str] = {}
    if draw(st.booleans()):
        params["from"] = draw(instants())
    if draw(st.booleans()):
        params["to"] = draw(instants())
        if "from" in params and params["to"] < params["from"]:
            params["from"], params["to"] = params["to"], params["from"]
    if draw(st.booleans()):
        params["limit"] = str(draw(st.integers(1, 70)))
        params["order"] = draw(st.sampled_from(["asc", "desc"]))
        return params
    fns = draw(st.lists(st.sampled_from([
        "count", "count:temp", "avg:temp", "sum:temp", "min:temp", "max:temp", "first:temp", "last:temp",
        "sum:n", "avg:n", "first:n", "last:n", "min:device", "last:device", "first:ok", "max:ok",
    ]), min_size=1, max_size=5, unique=True))
    params["agg"] = ",".join(fns)
    if draw(st.booleans()):
        params["bucket"] = draw(st.sampled_from(["1s", "7s", "1m", "5m", "1h", "3h", "1d"]))
    by = draw(st.lists(st.sampled_from(["device", "ok"]), unique=True, max_size=2))
    if by:
        params["by"] = ",".join(by)
    return params


def _chronological(a: str, b: str) -> bool:
    return dt.datetime.fromisoformat(a) <= dt.datetime.fromisoformat(b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=rows_strategy, params=queries())
def test_both_stores_answer_random_queries_alike(stores: Stores, data: list[dict], params: dict[str, str]) -> None:
    if "from" in params and "to" in params and not _chronological(params["from"], params["to"]):
        params["from"], params["to"] = params["to"], params["from"]
    rows = [{"seq": i + 1, **row} for i, row in enumerate(data)]
    stores.lake_silver.discard_after(0)
    stores.pg_silver.discard_after(0)
    if rows:
        stores.write(rows, chunk=17)
    query = parse_query(params, SCHEMA)
    expected = answer(query, rows)
    for name, engine in stores.engines.items():
        same(engine.run(query), expected, f"{name} {params}")
