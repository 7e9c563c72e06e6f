"""The `SilverStore` Protocol's guarantees (dash_ray/silver/base.py), checked against every
store: the lake's silver Parquet in a folder and on S3 (the moto server on loopback), and
PostgreSQL (the session's database). A missing server fails these tests, it never skips them.

A store joins by adding a builder to BUILDERS: given the test's request, a `Backend` with the
store, a reader of the rows it holds, and the query engines over it (with and without its
rollups), so the suite can check that the rollups follow every rewrite and discard."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pytest

from dash_ray.lake import Lake
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.query.postgres import PostgresEngine
from dash_ray.silver.base import SilverStore
from dash_ray.silver.lake import LakeSilver
from dash_ray.silver.postgres import PostgresSilver
from dash_ray.silver.rollup import spec_plan
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import PipelineSpec, parse_spec
from tests.dash_ray.query.conftest import same
from tests.dash_ray.silver.conftest import lake_rows, pg_rows, spec_data

_TIME = pa.timestamp("us", tz="UTC")
# 2026-01-01T00:00:00Z less 5 s: seqs 1..4 fall on 2025-12-31, so a range spans two days.
_START_US = 1_767_225_600_000_000 - 5_000_000
QUERIES = [{"bucket": "1m", "agg": "count,sum:v,min:n,max:n,first:v,last:n", "by": "device"},
           {"agg": "count,count:v,sum:n,avg:v"}]


@dataclass
class Backend:
    name: str
    store: SilverStore
    rows: Callable[[], list[tuple[int, float, int]]]  # (seq, v, n) of every row held, by seq, duplicates kept
    raw: Any  # the store's query engine reading rows only
    rolled: Any  # and the one answering from rollups where it can
    # Whether a range without rows (every record dead or filtered) counts in `stored_seq()`:
    # a store following the lake must count it (its follower would read it again); the lake's
    # silver has no file for it (the bronze file marks it stored).
    counts_empty_ranges: bool
    closers: list[Callable[[], None]] = field(default_factory=list)


def _spec() -> PipelineSpec:
    return parse_spec(spec_data(f"sc-{uuid.uuid4().hex[:8]}"))


def _lake_backend(name: str, lake: Lake) -> Backend:
    spec = _spec()
    plan = spec_plan(spec)
    raw, rolled = DuckDBEngine(lake, spec.id), DuckDBEngine(lake, spec.id, plan=plan)
    return Backend(name, LakeSilver(lake, spec.id, plan), lambda: sorted(lake_rows(lake, spec.id)), raw, rolled,
                   counts_empty_ranges=False, closers=[raw.close, rolled.close])


def _folder(request: pytest.FixtureRequest) -> Backend:
    tmp_path = request.getfixturevalue("tmp_path")
    return _lake_backend("lake-folder", Lake.from_url(str(tmp_path / "lake")))


def _s3(request: pytest.FixtureRequest) -> Backend:
    server, bucket = request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
    return _lake_backend("lake-s3", Lake.from_url(f"s3://{bucket}/lake", storage_options=server["storage_options"]))


def _postgres(request: pytest.FixtureRequest) -> Backend:
    dsn = request.getfixturevalue("pg_dsn")
    spec = _spec()
    plan = spec_plan(spec)
    store = PostgresSilver(dsn, spec.id, list(spec_schema(spec).columns), plan=plan)
    raw, rolled = PostgresEngine(dsn, spec.id), PostgresEngine(dsn, spec.id, plan=plan)
    return Backend("postgres", store, lambda: pg_rows(dsn, spec.id), raw, rolled, counts_empty_ranges=True,
                   closers=[store.close, raw.close, rolled.close])


BUILDERS = {"lake-folder": _folder, "lake-s3": _s3, "postgres": _postgres}


@pytest.fixture(params=sorted(BUILDERS))
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    made = BUILDERS[request.param](request)
    try:
        yield made
    finally:
        for close in made.closers:
            close()


def rows(first: int, last: int, *, scale: int = 1, leave_out: frozenset[int] = frozenset()) -> pa.Table:
    """Mapped rows of seqs `first..last` (but `leave_out`), one a second from `_START_US`:
    v = seq / 4 * scale, n = seq * scale, on devices d0..d2."""
    seqs = [s for s in range(first, last + 1) if s not in leave_out]
    return pa.table({
        "seq": pa.array(seqs, pa.int64()),
        "time": pa.array([_START_US + s * 1_000_000 for s in seqs], pa.int64()).cast(_TIME),
        "device": pa.array([f"d{s % 3}" for s in seqs]),
        "v": pa.array([s / 4 * scale for s in seqs], pa.float64()),
        "n": pa.array([s * scale for s in seqs], pa.int64()),
    })


def held(first: int, last: int, *, scale: int = 1,
         leave_out: frozenset[int] = frozenset()) -> list[tuple[int, float, int]]:
    """What a store holds after `rows(first, last, ...)` was written."""
    return [(s, s / 4 * scale, s * scale) for s in range(first, last + 1) if s not in leave_out]


def check_rollups(backend: Backend) -> None:
    """The rollups count every row the store holds once: answers from them equal raw ones."""
    schema = spec_schema(parse_spec(spec_data("any")))
    for params in QUERIES:
        query = parse_query(params, schema)
        same(backend.rolled.run(query), backend.raw.run(query), f"{backend.name} {params}")


def test_an_empty_store_holds_nothing(backend: Backend) -> None:
    assert backend.store.stored_seq() == 0
    assert backend.store.discard_after(0) == 0
    assert backend.rows() == []


def test_ranges_written_are_held_and_the_highest_counts_as_stored(backend: Backend) -> None:
    backend.store.write(rows(1, 10), first_seq=1, last_seq=10)  # over two event days
    assert backend.store.stored_seq() == 10
    backend.store.write(rows(11, 20), first_seq=11, last_seq=20)
    assert backend.store.stored_seq() == 20
    assert backend.rows() == held(1, 20)
    check_rollups(backend)


def test_a_retried_write_leaves_one_copy_of_its_range(backend: Backend) -> None:
    for _ in range(3):
        backend.store.write(rows(1, 10), first_seq=1, last_seq=10)
    backend.store.write(rows(11, 20), first_seq=11, last_seq=20)
    backend.store.write(rows(11, 20), first_seq=11, last_seq=20)
    assert backend.rows() == held(1, 20)
    assert backend.store.stored_seq() == 20
    check_rollups(backend)


def test_writing_a_range_again_replaces_its_rows(backend: Backend) -> None:
    """A replay's rewrite: other values, and a record that maps to no row any more."""
    backend.store.write(rows(1, 10), first_seq=1, last_seq=10)
    backend.store.write(rows(11, 20), first_seq=11, last_seq=20)
    backend.store.write(rows(1, 10, scale=10, leave_out=frozenset({2, 7})), first_seq=1, last_seq=10)
    assert backend.rows() == held(1, 10, scale=10, leave_out=frozenset({2, 7})) + held(11, 20)
    assert backend.store.stored_seq() == 20  # a rewrite of an earlier range never moves it back
    check_rollups(backend)


def test_discard_after_removes_the_ranges_after_it_and_they_can_be_written_again(backend: Backend) -> None:
    """What recovery does with the ranges of an unfinished commit, and the commit's retry."""
    for first in (1, 11, 21):
        backend.store.write(rows(first, first + 9), first_seq=first, last_seq=first + 9)
    assert backend.store.discard_after(10) > 0
    assert backend.rows() == held(1, 10)
    assert backend.store.stored_seq() == 10
    check_rollups(backend)
    assert backend.store.discard_after(10) == 0  # nothing left after it
    assert backend.store.discard_after(30) == 0
    assert backend.rows() == held(1, 10)
    backend.store.write(rows(11, 20, scale=3), first_seq=11, last_seq=20)
    assert backend.rows() == held(1, 10) + held(11, 20, scale=3)
    assert backend.store.stored_seq() == 20
    check_rollups(backend)


def test_a_range_without_rows_leaves_the_rows_and_never_lowers_the_stored_seq(backend: Backend) -> None:
    backend.store.write(rows(1, 10), first_seq=1, last_seq=10)
    backend.store.write(rows(11, 10), first_seq=11, last_seq=20)  # every record of 11..20 dead or filtered
    assert backend.rows() == held(1, 10)
    assert backend.store.stored_seq() == (20 if backend.counts_empty_ranges else 10)
    backend.store.write(rows(21, 30), first_seq=21, last_seq=30)
    assert backend.rows() == held(1, 10) + held(21, 30)
    assert backend.store.stored_seq() == 30
    check_rollups(backend)
