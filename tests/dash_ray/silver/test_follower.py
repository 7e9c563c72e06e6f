"""The silver follower against a real PostgreSQL and a real lake folder: offered ranges are
written in order (consecutive ones together); an overflowing queue is dropped and caught up
from the lake; a new follower resumes from the store's own progress; a store ahead of the lake
is cut back; catch-up chunks keep each range whole and reach the lake's stored seq even when
its last ranges had no rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from dash_ray.lake import Lake, LakeFile
from dash_ray.silver.follower import Chunk, SilverFollower, catch_up_chunks
from dash_ray.silver.lake import LakeSilver
from dash_ray.silver.postgres import PostgresSilver
from dash_ray.silver.rollup import spec_plan
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import parse_spec
from tests.dash_ray.silver.conftest import lake_rows, pg_progress, pg_rows, rollups_match_rows, spec_data
from tests.dash_ray.silver.test_postgres import EMPTY, rows

DAY = dt.date(2026, 1, 1)


def lf(first: int, last: int, day: int = 0) -> LakeFile:
    return LakeFile(first, last, DAY + dt.timedelta(days=day), f"f{first}-{last}-{day}")


def test_catch_up_chunks_keep_ranges_whole_and_reach_the_end() -> None:
    files = [lf(1, 10), lf(1, 10, day=1), lf(11, 20), lf(31, 40), lf(41, 50)]  # 21..30 had no rows
    chunks = catch_up_chunks(files, after=0, through=60, max_files=1)
    assert [(c.first_seq, c.last_seq) for c in chunks] == [(1, 10), (11, 20), (21, 40), (41, 60)]
    assert [len(c.files) for c in chunks] == [2, 1, 1, 1]  # both days of 1..10 in one write
    # Resuming inside the lake: only what follows, and nothing past `through`.
    chunks = catch_up_chunks(files, after=20, through=40, max_files=8)
    assert chunks == [Chunk(21, 40, (files[3],))]
    assert catch_up_chunks([], after=5, through=9, max_files=8) == [Chunk(6, 9, ())]
    assert catch_up_chunks(files, after=60, through=60, max_files=8) == []


@pytest.fixture()
def setup(tmp_path: Path, pg_dsn: str) -> Iterator[tuple[LakeSilver, PostgresSilver]]:
    spec = parse_spec(spec_data(f"fo-{uuid.uuid4().hex[:8]}"))
    lake = Lake.from_url(str(tmp_path / "lake"))
    store = PostgresSilver(pg_dsn, spec.id, list(spec_schema(spec).columns), plan=spec_plan(spec))
    try:
        yield LakeSilver(lake, spec.id, spec_plan(spec)), store
    finally:
        store.close()


def follower(lake_silver: LakeSilver, store: PostgresSilver, **options: float) -> SilverFollower:
    return SilverFollower(store, lake_silver.lake, lake_silver.pipeline_id, backoff_s=0.01, max_backoff_s=0.05,
                          **options)  # type: ignore[arg-type]


def commit(lake_silver: LakeSilver, first: int, last: int, table: pa.Table | None = None) -> pa.Table:
    """What the commit step does before it offers a range: the lake's silver (and the bronze
    mark, which the follower does not read)."""
    table = rows(first, last) if table is None else table
    lake_silver.write(table, first_seq=first, last_seq=last)
    return table


class CountingStore(PostgresSilver):
    writes: list[tuple[int, int]]

    def write(self, rows: pa.Table, *, first_seq: int, last_seq: int) -> None:
        super().write(rows, first_seq=first_seq, last_seq=last_seq)
        self.writes.append((first_seq, last_seq))


async def test_offered_ranges_are_written_in_order_consecutive_ones_together(
        setup: tuple[LakeSilver, PostgresSilver], pg_dsn: str) -> None:
    lake_silver, plain = setup
    store = CountingStore(pg_dsn, plain.pipeline_id, plain.columns, plan=plain.plan)
    store.writes = []
    f = follower(lake_silver, store)
    f.start(0)
    for first in range(1, 201, 20):
        f.offer(commit(lake_silver, first, first + 19), first_seq=first, last_seq=first + 19)
    f.offer(None, first_seq=201, last_seq=230)  # a range whose records were all dead
    await asyncio.wait_for(f.wait_stored(230), 10)
    assert f.counters() == {"silver_seq": 230, "silver_lag": 0, "silver_error": None, "silver_refused": 0}
    assert f.catch_ups == 0 and f.dropped_ranges == 0
    assert len(store.writes) < 11 and store.writes[-1][1] == 230  # coalesced, in order
    assert [w[0] for w in store.writes] == [1] + [w[1] + 1 for w in store.writes[:-1]]
    assert pg_rows(pg_dsn, plain.pipeline_id) == lake_rows(lake_silver.lake, plain.pipeline_id)
    assert pg_progress(pg_dsn, plain.pipeline_id) == 230
    rollups_match_rows(pg_dsn, plain.pipeline_id)
    await f.close()
    assert f.state == "closed"
    await f.close()  # idempotent


async def test_an_overflowing_queue_is_dropped_and_caught_up_from_the_lake(
        setup: tuple[LakeSilver, PostgresSilver], pg_dsn: str) -> None:
    lake_silver, store = setup
    f = follower(lake_silver, store, max_queue_bytes=1, catch_up_files=3)  # no range fits
    f.offer(commit(lake_silver, 1, 50), first_seq=1, last_seq=50)  # before start: kept as the lake's
    f.start(50)
    for first in range(51, 1001, 50):
        f.offer(commit(lake_silver, first, first + 49), first_seq=first, last_seq=first + 49)
        await asyncio.sleep(0)
    await asyncio.wait_for(f.wait_stored(1000), 20)
    assert f.dropped_ranges == 20 and f.catch_ups >= 1
    got = pg_rows(pg_dsn, store.pipeline_id)
    assert got == lake_rows(lake_silver.lake, store.pipeline_id) and len(got) == 1000
    rollups_match_rows(pg_dsn, store.pipeline_id)
    await f.close()


async def test_a_new_follower_resumes_from_the_store_s_progress(
        setup: tuple[LakeSilver, PostgresSilver], pg_dsn: str) -> None:
    lake_silver, store = setup
    first_follower = follower(lake_silver, store)
    first_follower.start(0)
    for first in range(1, 301, 100):
        first_follower.offer(commit(lake_silver, first, first + 99), first_seq=first, last_seq=first + 99)
    await asyncio.wait_for(first_follower.wait_stored(300), 10)
    await first_follower.close(drain_s=0)
    # The pipeline goes on without a follower (it was restarting): the lake gets more, and a
    # range whose records were all dead.
    commit(lake_silver, 301, 400)
    commit(lake_silver, 401, 450, EMPTY)
    commit(lake_silver, 451, 500)
    again = PostgresSilver(pg_dsn, store.pipeline_id, store.columns, plan=store.plan)
    second = follower(lake_silver, again)
    second.start(500)
    await asyncio.wait_for(second.wait_stored(500), 10)
    assert second.catch_ups == 1
    got = pg_rows(pg_dsn, store.pipeline_id)
    assert got == lake_rows(lake_silver.lake, store.pipeline_id) and len(got) == 450
    rollups_match_rows(pg_dsn, store.pipeline_id)
    await second.close()


async def test_a_store_ahead_of_the_lake_is_cut_back_to_it(
        setup: tuple[LakeSilver, PostgresSilver], pg_dsn: str) -> None:
    lake_silver, store = setup
    commit(lake_silver, 1, 20)
    store.write(rows(1, 30), first_seq=1, last_seq=30)  # e.g. the lake was restored from a backup
    f = follower(lake_silver, store)
    f.start(20)
    await asyncio.wait_for(f.wait_stored(20), 10)
    await asyncio.sleep(0.05)  # not a synchronisation (the cut comes first): a window to write past the lake
    assert store.stored_seq() == 20
    assert pg_rows(pg_dsn, store.pipeline_id) == lake_rows(lake_silver.lake, store.pipeline_id)
    rollups_match_rows(pg_dsn, store.pipeline_id)
    await f.close()


async def test_a_range_spread_over_two_days_is_caught_up_whole(
        setup: tuple[LakeSilver, PostgresSilver], pg_dsn: str) -> None:
    lake_silver, store = setup
    two_days = rows(1, 40)
    next_day = [1_767_225_600_000_000 + (86_400_000_000 if s > 20 else 0) + s for s in range(1, 41)]
    two_days = two_days.set_column(1, "time", pa.array(next_day, pa.int64()).cast(pa.timestamp("us", tz="UTC")))
    commit(lake_silver, 1, 40, two_days)
    commit(lake_silver, 41, 60)
    assert len(lake_silver.lake.files("silver", store.pipeline_id)) == 3
    f = follower(lake_silver, store, catch_up_files=1)
    f.start(60)
    await asyncio.wait_for(f.wait_stored(60), 10)
    assert pg_rows(pg_dsn, store.pipeline_id) == lake_rows(lake_silver.lake, store.pipeline_id)
    rollups_match_rows(pg_dsn, store.pipeline_id)
    await f.close()


def test_the_partials_of_a_table_are_computed_once_for_the_lake_and_postgresql() -> None:
    import gc

    from dash_ray.silver import partials as memo
    from dash_ray.silver.rollup import partials

    plan = spec_plan(parse_spec(spec_data("memo")))
    assert plan is not None
    before = memo.kept()
    table = rows(1, 100)
    first = memo.partials_of(table, plan, "10s")
    assert memo.partials_of(table, plan, "10s") is first  # the same table: kept
    assert first.equals(partials(table, plan, "10s"))
    copy = rows(1, 100)  # equal, but another table: computed again
    assert memo.partials_of(copy, plan, "10s") is not first and memo.partials_of(copy, plan, "10s").equals(first)
    assert memo.kept() == before + 2
    del table, copy
    gc.collect()
    assert memo.kept() == before  # dropped with their tables
