"""What PostgreSQL keeps of a pipeline after a purge and after a plan change (issue 21.7, 21.20),
against the real database: `DELETE ?purge=true` (`dash_ray.lifecycle.purge`) drops its silver table,
rollup tables, progress and plan rows, so the same id created again starts empty; a plan
without a granularity drops that granularity's table."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pyarrow as pa

from dash_ray.lifecycle.purge import purge
from dash_ray.registry.core import catalog_opener
from dash_ray.silver.postgres import PostgresSilver
from dash_ray.silver.rollup import spec_plan
from dash_ray.silver.schema import spec_schema
from dash_ray.spec import PipelineSpec, parse_spec
from tests.conftest import platform_settings
from tests.dash_ray.silver.conftest import pg_rows, spec_data

_TIME = pa.timestamp("us", tz="UTC")


def rows(first: int, last: int) -> pa.Table:
    seqs = list(range(first, last + 1))
    return pa.table({"seq": pa.array(seqs, pa.int64()),
                     "time": pa.array([1_777_600_000_000_000 + s * 1_000_000 for s in seqs], pa.int64()).cast(_TIME),
                     "device": [f"d{s % 3}" for s in seqs], "v": [s / 2 for s in seqs],
                     "n": pa.array(seqs, pa.int64())})


def store_of(dsn: str, spec: PipelineSpec) -> PostgresSilver:
    return PostgresSilver(dsn, spec.id, list(spec_schema(spec).columns), plan=spec_plan(spec))


def tables_of(dsn: str, pipeline_id: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return sorted(f"{schema}.{name}" for schema, name in conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name = %s",
            (pipeline_id,)).fetchall())


def plan_rows(dsn: str, pipeline_id: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return sorted(g for (g,) in conn.execute("SELECT granularity FROM dash_rollup.plans WHERE pipeline = %s",
                                                 (pipeline_id,)))


async def test_a_purge_drops_what_postgres_holds_and_the_same_id_starts_empty(pg_dsn: str, tmp_path: Path) -> None:
    spec = parse_spec(spec_data(f"purged-{uuid.uuid4().hex[:6]}"))
    other = parse_spec(spec_data(f"kept-{uuid.uuid4().hex[:6]}"))
    for s in (spec, other):
        store = store_of(pg_dsn, s)
        store.write(rows(1, 40), first_seq=1, last_seq=40)
        assert store.stored_seq() == 40
        store.close()
    assert tables_of(pg_dsn, spec.id) == [f"dash_rollup_{g}.{spec.id}" for g in ("10s", "1h", "1m")] + [
        f"dash_silver.{spec.id}"]

    settings = platform_settings(tmp_path / "home", pg_dsn=pg_dsn)
    await purge(spec, catalog_opener(settings)(), settings=settings)

    assert tables_of(pg_dsn, spec.id) == [] and plan_rows(pg_dsn, spec.id) == []
    again = store_of(pg_dsn, spec)  # the same id, created again
    assert again.stored_seq() == 0 and pg_rows(pg_dsn, spec.id) == []
    again.write(rows(1, 5), first_seq=1, last_seq=5)
    assert [r[0] for r in pg_rows(pg_dsn, spec.id)] == [1, 2, 3, 4, 5] and again.stored_seq() == 5
    with psycopg.connect(pg_dsn) as conn:
        counted = conn.execute(f'SELECT sum(rows) FROM dash_rollup_1h."{spec.id}"').fetchone()[0]
    assert counted == 5
    again.close()
    # Another pipeline keeps everything.
    assert len(pg_rows(pg_dsn, other.id)) == 40 and len(tables_of(pg_dsn, other.id)) == 4


def test_rollup_tables_of_granularities_a_plan_no_longer_has_are_dropped(pg_dsn: str) -> None:
    pipeline_id = f"replanned-{uuid.uuid4().hex[:6]}"
    first = store_of(pg_dsn, parse_spec(spec_data(pipeline_id)))
    first.write(rows(1, 40), first_seq=1, last_seq=40)
    first.close()
    assert plan_rows(pg_dsn, pipeline_id) == ["10s", "1h", "1m"]
    hourly = parse_spec(spec_data(pipeline_id, storage={"rollups": {"granularities": ["1h"]}}))
    second = store_of(pg_dsn, hourly)
    assert second.stored_seq() == 40
    assert tables_of(pg_dsn, pipeline_id) == [f"dash_rollup_1h.{pipeline_id}", f"dash_silver.{pipeline_id}"]
    assert plan_rows(pg_dsn, pipeline_id) == ["1h"]
    second.close()
    off = store_of(pg_dsn, parse_spec(spec_data(pipeline_id, storage={"rollups": {"enabled": False}})))
    assert off.stored_seq() == 40
    assert tables_of(pg_dsn, pipeline_id) == [f"dash_silver.{pipeline_id}"] and plan_rows(pg_dsn, pipeline_id) == []
    off.close()
