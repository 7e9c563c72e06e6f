"""A private PostgreSQL server per test module (tests stop, refuse and restart it), and helpers
to compare what PostgreSQL holds with the lake and with what was acknowledged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.lake import Lake
from tests.pgserver import PrivatePostgres

# 8 connections, 3 kept for superusers: the role `dash` can hold 5.
MAX_CONNECTIONS = 8
RESERVED = 3


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(max_connections=MAX_CONNECTIONS, superuser_reserved=RESERVED)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture()
def pg(private_pg: PrivatePostgres) -> Iterator[PrivatePostgres]:
    """The module's server, running at the start and again at the end of each test."""
    if not private_pg.running:
        private_pg.start()
    yield private_pg
    if not private_pg.running:
        private_pg.start()


def spec_data(pipeline_id: str, **changes: Any) -> dict[str, Any]:
    """A pipeline whose records all map (`n` odd ones carry `bad` and are dead-lettered when
    `dead` is asked): device (string, rolled up by), v (double), n (int)."""
    data: dict[str, Any] = {
        "id": pipeline_id,
        "mapping": {"fields": {
            "time": {"path": "$.ts", "type": "timestamp", "unit": "ms"},
            "device": {"path": "$.device", "type": "string"},
            "v": {"path": "$.v", "type": "double"},
            "n": {"path": "$.n", "type": "int", "required": True},
        }},
        "flush": {"records": 500, "seconds": 0.05},
    }
    data.update(changes)
    return data


def batch(first: int, count: int, *, pad: int = 0, dead: bool = False) -> RawBatch:
    """`count` records numbered from `first` (`n`); with `dead`, none has `n` (all dead)."""
    lines = []
    for i in range(first, first + count):
        record: dict[str, Any] = {"ts": 1_767_225_600_000 + i * 250, "device": f"d{i % 7}", "v": i / 4}
        if not dead:
            record["n"] = i
        if pad:
            record["pad"] = "x" * pad
        lines.append(orjson.dumps(record) + b"\n")
    return RawBatch(payload=b"".join(lines), count=count, received_at_us=time.time_ns() // 1000)


def acked_seqs(acks: list[Ack]) -> list[int]:
    return sorted(s for a in acks for s in range(a.first_seq, a.last_seq + 1))


def pg_rows(dsn: str, pipeline_id: str) -> list[tuple[int, float, int]]:
    """(seq, v, n) of every row in PostgreSQL's silver table, by seq (duplicates kept)."""
    with psycopg.connect(dsn) as conn:
        return [tuple(r) for r in conn.execute(
            f'SELECT seq, v, n FROM dash_silver."{pipeline_id}" ORDER BY seq').fetchall()]  # type: ignore[misc]


def lake_rows(lake_dir: Path | Lake, pipeline_id: str) -> list[tuple[int, float, int]]:
    lake = lake_dir if isinstance(lake_dir, Lake) else Lake.from_url(str(lake_dir))
    table = lake.read("silver", pipeline_id, columns=["seq", "v", "n"])
    if table is None:
        return []
    return list(zip(table.column("seq").to_pylist(), table.column("v").to_pylist(), table.column("n").to_pylist(),
                    strict=True))


def pg_progress(dsn: str, pipeline_id: str) -> int | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT stored_seq FROM dash_silver._progress WHERE pipeline = %s",
                           (pipeline_id,)).fetchone()
    return None if row is None else int(row[0])


def rollups_match_rows(dsn: str, pipeline_id: str, granularities: tuple[str, ...] = ("10s", "1m", "1h")) -> None:
    """Each rollup table counts every silver row once and sums `v` to the rows' sum."""
    with psycopg.connect(dsn) as conn:
        count, total = conn.execute(
            f'SELECT count(*), coalesce(sum(v), 0) FROM dash_silver."{pipeline_id}"').fetchone()  # type: ignore[misc]
        for g in granularities:
            rows, sums = conn.execute(f'SELECT coalesce(sum(rows), 0), coalesce(sum(v__sum), 0)'
                                      f' FROM dash_rollup_{g}."{pipeline_id}"').fetchone()  # type: ignore[misc]
            assert (rows, sums) == (count, pytest.approx(total)), f"rollup {g}: {rows} rows, sum {sums}"

