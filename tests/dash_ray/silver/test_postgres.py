"""PostgresSilver's progress: kept in the write's transaction, so ranges without rows count,
a rewrite never moves it back, a failed write moves nothing, and a discard lowers it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pyarrow as pa
import pytest

from dash_ray.errors import StorageError
from dash_ray.silver.postgres import PostgresSilver
from dash_ray.silver.rollup import spec_plan
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import parse_spec
from tests.dash_ray.silver.conftest import pg_rows, rollups_match_rows, spec_data

_TIME = pa.timestamp("us", tz="UTC")


def rows(first: int, last: int, *, seqs: list[int] | None = None) -> pa.Table:
    seqs = seqs if seqs is not None else list(range(first, last + 1))
    return pa.table({
        "seq": pa.array(seqs, pa.int64()),
        "time": pa.array([1_767_225_600_000_000 + s * 250_000 for s in seqs], pa.int64()).cast(_TIME),
        "device": pa.array([f"d{s % 7}" for s in seqs]),
        "v": pa.array([s / 4 for s in seqs], pa.float64()),
        "n": pa.array(seqs, pa.int64()),
    })


EMPTY = rows(1, 0, seqs=[])


@pytest.fixture()
def store(pg_dsn: str) -> Iterator[PostgresSilver]:
    spec = parse_spec(spec_data(f"pg-{uuid.uuid4().hex[:8]}"))
    made = PostgresSilver(pg_dsn, spec.id, list(spec_schema(spec).columns), plan=spec_plan(spec))
    try:
        yield made
    finally:
        made.close()


def test_a_range_without_rows_counts_in_the_stored_seq(store: PostgresSilver) -> None:
    assert store.stored_seq() == 0
    store.write(EMPTY, first_seq=1, last_seq=10)  # every record of 1..10 was dead or filtered
    assert store.stored_seq() == 10
    store.write(rows(11, 20), first_seq=11, last_seq=20)
    store.write(EMPTY, first_seq=21, last_seq=30)
    assert store.stored_seq() == 30


def test_a_rewrite_replaces_its_range_and_never_moves_the_progress_back(store: PostgresSilver, pg_dsn: str) -> None:
    store.write(rows(1, 10), first_seq=1, last_seq=10)
    store.write(rows(11, 20), first_seq=11, last_seq=20)
    store.write(rows(1, 10), first_seq=1, last_seq=10)  # a retried write of an earlier range
    store.write(rows(11, 20), first_seq=11, last_seq=20)
    assert store.stored_seq() == 20
    assert [r[0] for r in pg_rows(pg_dsn, store.pipeline_id)] == list(range(1, 21))
    rollups_match_rows(pg_dsn, store.pipeline_id)

    assert store.discard_after(15) == 5
    assert store.stored_seq() == 15
    assert [r[0] for r in pg_rows(pg_dsn, store.pipeline_id)] == list(range(1, 16))
    rollups_match_rows(pg_dsn, store.pipeline_id)


def test_a_failed_write_moves_neither_rows_nor_progress(store: PostgresSilver, pg_dsn: str) -> None:
    store.write(rows(1, 10), first_seq=1, last_seq=10)
    with pytest.raises(StorageError, match="writing seq 11..20"):
        store.write(rows(11, 20, seqs=[11, 12, 12]), first_seq=11, last_seq=20)  # seq 12 twice
    assert store.stored_seq() == 10
    assert [r[0] for r in pg_rows(pg_dsn, store.pipeline_id)] == list(range(1, 11))
    rollups_match_rows(pg_dsn, store.pipeline_id)


def test_a_table_written_before_progress_was_kept_resumes_from_its_rows(store: PostgresSilver, pg_dsn: str) -> None:
    store.write(rows(1, 10), first_seq=1, last_seq=10)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM dash_silver._progress WHERE pipeline = %s", (store.pipeline_id,))
    assert store.stored_seq() == 10


def test_rows_go_as_binary_copy_and_as_csv_into_a_column_of_another_type(store: PostgresSilver, pg_dsn: str) -> None:
    store.write(rows(1, 10), first_seq=1, last_seq=10)
    assert store._copy_body(rows(11, 12))[1] == "binary"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # e.g. changed by hand
        conn.execute(f'ALTER TABLE dash_silver."{store.pipeline_id}" ALTER COLUMN n TYPE numeric')
    again = PostgresSilver(pg_dsn, store.pipeline_id, store.columns, plan=store.plan)
    try:
        again.write(rows(11, 20), first_seq=11, last_seq=20)
        assert again._copy_body(rows(21, 22))[1] == "csv"
    finally:
        again.close()
    assert [r[2] for r in pg_rows(pg_dsn, store.pipeline_id)] == list(range(1, 21))


def _two_days(seqs: list[int]) -> pa.Table:
    """Odd seqs on 2026-01-01, even ones on 2026-01-03."""
    table = rows(1, 0, seqs=seqs)
    day_us = 86_400_000_000
    times = [1_767_225_600_000_000 + s * 1_000_000 + (2 * day_us if s % 2 == 0 else 0) for s in seqs]
    return table.set_column(1, "time", pa.array(times, pa.int64()).cast(_TIME))


def test_retention_deletes_rows_and_rollup_buckets_before_the_cutoff(store: PostgresSilver, pg_dsn: str) -> None:
    import datetime as dt

    store.write(_two_days(list(range(1, 21))), first_seq=1, last_seq=20)
    assert store.expire(dt.date(2026, 1, 2)) == 10
    assert [r[0] for r in pg_rows(pg_dsn, store.pipeline_id)] == list(range(2, 21, 2))
    rollups_match_rows(pg_dsn, store.pipeline_id)
    assert store.expire(dt.date(2026, 1, 2)) == 0  # idempotent
    assert store.stored_seq() == 20  # progress is not retention's business


def test_maintenance_applies_silver_retention_to_the_secondary_store(store: PostgresSilver, pg_dsn: str,
                                                                     tmp_path) -> None:
    import asyncio
    import datetime as dt

    from dash_ray.lake import Lake
    from dash_ray.lifecycle.maintenance import Maintenance
    from dash_ray.spec import StorageSpec

    store.write(_two_days(list(range(1, 11))), first_seq=1, last_seq=10)
    storage = StorageSpec.model_validate({"retention": {"silver_days": 2}})
    upkeep = Maintenance(Lake.from_url(str(tmp_path / "lake")), store.pipeline_id, storage, None,
                         stored_seq=lambda: 10, today=lambda: dt.date(2026, 1, 3), secondaries=lambda: [store])
    asyncio.run(upkeep.run_once())
    assert upkeep.stats.expired_rows == 5
    assert [r[0] for r in pg_rows(pg_dsn, store.pipeline_id)] == [2, 4, 6, 8, 10]
