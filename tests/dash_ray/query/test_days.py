"""Rows over several event days, random queries: the lake's engine reads only some days' files
(a rollup answer's raw edges read the files of their own days; a page of raw rows reads the
newest or oldest days first, then more) and still answers exactly what the reference does, the
rollup answers equal to the raw scan's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_ray.lake import Lake
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.query.rollup_sql import granularity_for, middle_of
from dash_ray.silver.lake import LakeSilver
from dash_ray.silver.rollup import RollupPlan, plan_for
from tests.dash_ray.query.conftest import SCHEMA, same, to_table
from tests.dash_ray.query.reference import answer

BASE = 1_777_593_600_000_000  # 2026-05-01T00:00:00Z
DAY = 86_400_000_000
MINUTE = 60_000_000
SPAN = 4 * DAY

# Rows over four days, some days empty or sparse, a few at the very edges of a day.
moments = st.one_of(st.integers(0, SPAN // MINUTE).map(lambda m: BASE + m * MINUTE),
                    st.integers(1, 4).flatmap(lambda d: st.sampled_from([BASE + d * DAY - 1, BASE + d * DAY])))
rows_strategy = st.lists(st.fixed_dictionaries({
    "time": moments,
    "device": st.none() | st.sampled_from(["a", "b", "c"]),
    "temp": st.none() | st.floats(-1e3, 1e3, allow_nan=False, width=32),
    "n": st.none() | st.integers(-(2**40), 2**40),
}), min_size=1, max_size=80).map(lambda rows: sorted(rows, key=lambda r: r["time"]))


def _iso(micros: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=micros)).isoformat()


@st.composite
def ranges(draw: st.DrawFn) -> dict[str, str]:
    # From anywhere in (or around) the span, seconds off the hour, to a later instant.
    start = draw(st.integers(BASE - DAY // 2, BASE + SPAN))
    end = draw(st.integers(start, BASE + SPAN + DAY))
    params = {}
    if draw(st.integers(0, 5)):
        params["from"] = _iso(start)
    if draw(st.integers(0, 5)):
        params["to"] = _iso(end)
    return params


@st.composite
def aggregates(draw: st.DrawFn) -> dict[str, str]:
    params = draw(ranges())
    params["agg"] = ",".join(draw(st.lists(st.sampled_from(
        ["count", "count:temp", "avg:temp", "sum:n", "min:temp", "max:n", "first:temp", "last:n"]),
        min_size=1, max_size=4, unique=True)))
    bucket = draw(st.sampled_from([None, "1h", "3h", "1d", "2d"]))
    if bucket:
        params["bucket"] = bucket
    if draw(st.booleans()):
        params["by"] = "device"
    return params


@st.composite
def pages(draw: st.DrawFn) -> dict[str, str]:
    params = draw(ranges())
    params["order"] = draw(st.sampled_from(["asc", "desc"]))
    params["limit"] = str(draw(st.integers(1, 30)))
    return params


@dataclass
class LakeStores:
    """The lake's silver (with the rollups of every granularity) and its engine, raw and with
    rollups."""

    path: Path
    plan: RollupPlan = field(init=False)
    silver: LakeSilver = field(init=False)
    engines: dict[str, DuckDBEngine] = field(init=False)

    def __post_init__(self) -> None:
        lake = Lake.from_url(str(self.path / "lake"))
        plan = plan_for(SCHEMA, by=["device"], granularities=["10s", "1m", "1h", "1d"])
        assert plan is not None
        self.plan = plan
        self.silver = LakeSilver(lake, "days", plan)
        self.engines = {"duckdb": DuckDBEngine(lake, "days"), "duckdb+rollups": DuckDBEngine(lake, "days", plan=plan)}


@pytest.fixture()
def lake_stores(tmp_path: Path) -> Iterator[LakeStores]:
    made = LakeStores(tmp_path)
    yield made
    for engine in made.engines.values():
        engine.close()


def _written(stores: LakeStores, data: list[dict], chunk: int) -> list[dict]:
    """`data` as rows with seqs, written in ranges of `chunk` (each range split by day)."""
    rows = [{"seq": i + 1, **row} for i, row in enumerate(data)]
    stores.silver.discard_after(0)
    for at in range(0, len(rows), chunk):
        part = rows[at:at + chunk]
        stores.silver.write(to_table(part), first_seq=part[0]["seq"], last_seq=part[-1]["seq"])
    return rows


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=rows_strategy, chunk=st.integers(3, 40), params=aggregates())
def test_rollup_answers_over_days_equal_the_raw_scan(lake_stores: LakeStores, data: list[dict], chunk: int,
                                                      params: dict[str, str]) -> None:
    rows = _written(lake_stores, data, chunk)
    query = parse_query(params, SCHEMA)
    granularity = granularity_for(lake_stores.plan, query)
    assert granularity is not None  # every query here may use a rollup
    raw = lake_stores.engines["duckdb"].run(query)
    same(raw, answer(query, rows), f"raw {params}")
    same(lake_stores.engines["duckdb+rollups"].run(query), raw,
         f"rollups ({granularity}, middle {middle_of(query, granularity)}) {params}")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=rows_strategy, chunk=st.integers(3, 40), params=pages(), follow=st.booleans())
def test_pages_of_raw_rows_over_days_are_exact(lake_stores: LakeStores, data: list[dict], chunk: int,
                                               params: dict[str, str], follow: bool) -> None:
    rows = _written(lake_stores, data, chunk)
    engine = lake_stores.engines["duckdb"]
    query = parse_query(params, SCHEMA)
    got = engine.run(query)
    same(got, answer(query, rows), str(params))
    if follow and got["next"] is not None:  # the next page, after the last row of this one
        following = parse_query({**params, "after": str(got["rows"][-1]["seq"])}, SCHEMA)
        same(engine.run(following), answer(following, rows), f"after {params}")
