"""Silver rows written through the real stores (the lake's Parquet and PostgreSQL) and the
engines that query them, for the query contract suite."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pyarrow as pa
import pytest

from dash_ray.lake import Lake
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.postgres import PostgresEngine
from dash_ray.silver.lake import LakeSilver
from dash_ray.silver.postgres import PostgresSilver
from dash_ray.silver.rollup import plan_for
from dash_ray.silver.schema import Column, Schema

FIELDS = {"device": "string", "temp": "double", "n": "int", "ok": "bool", "seen": "timestamp", "tags": "json"}
SCHEMA = Schema(tuple(Column(name, type_) for name, type_ in FIELDS.items()))  # type: ignore[arg-type]
_ARROW = {"string": pa.string(), "double": pa.float64(), "int": pa.int64(), "bool": pa.bool_(),
          "timestamp": pa.timestamp("us", tz="UTC"), "json": pa.string()}


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Reference rows (times in us, json parsed) as the mapping's Arrow rows."""
    columns: dict[str, pa.Array] = {
        "seq": pa.array([r["seq"] for r in rows], pa.int64()),
        "time": pa.array([r["time"] for r in rows], pa.int64()).cast(_ARROW["timestamp"]),
    }
    for name, type_ in FIELDS.items():
        values = [r.get(name) for r in rows]
        if type_ == "json":
            values = [None if v is None else orjson.dumps(v).decode() for v in values]
        if type_ == "timestamp":
            columns[name] = pa.array(values, pa.int64()).cast(_ARROW["timestamp"])
        else:
            columns[name] = pa.array(values, _ARROW[type_])
    return pa.table(columns)


class Stores:
    """Both stores and both engines over them, for one pipeline id."""

    def __init__(self, tmp_path: Path, dsn: str) -> None:
        self.pipeline_id = f"q-{uuid.uuid4().hex[:8]}"
        self.lake = Lake.from_url(str(tmp_path / "lake"))
        self.plan = plan_for(SCHEMA, by=["device", "ok"], granularities=["10s", "1m", "1h", "1d"])
        self.lake_silver = LakeSilver(self.lake, self.pipeline_id, self.plan)
        self.pg_silver = PostgresSilver(dsn, self.pipeline_id, list(SCHEMA.columns), plan=self.plan)
        # Each store answers raw and, where a query allows, from its rollups.
        self.engines = {"duckdb": DuckDBEngine(self.lake, self.pipeline_id),
                        "duckdb+rollups": DuckDBEngine(self.lake, self.pipeline_id, plan=self.plan),
                        "postgres": PostgresEngine(dsn, self.pipeline_id),
                        "postgres+rollups": PostgresEngine(dsn, self.pipeline_id, plan=self.plan)}

    def write(self, rows: list[dict[str, Any]], *, chunk: int = 50) -> None:
        """Write `rows` (seq order) in ranges of `chunk`, as successive commits would."""
        for at in range(0, len(rows), chunk):
            part = rows[at:at + chunk]
            table = to_table(part)
            first, last = part[0]["seq"], part[-1]["seq"]
            self.lake_silver.write(table, first_seq=first, last_seq=last)
            self.pg_silver.write(table, first_seq=first, last_seq=last)

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
        self.pg_silver.close()


def _stores(path: Path, dsn: str) -> Iterator[Stores]:
    made = Stores(path, dsn)
    try:
        yield made
    finally:
        made.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS dash_silver."{made.pipeline_id}"')
            for granularity in made.plan.granularities:
                conn.execute(f'DROP TABLE IF EXISTS dash_rollup_{granularity}."{made.pipeline_id}"')


@pytest.fixture()
def stores(tmp_path: Path, pg_dsn: str) -> Iterator[Stores]:
    yield from _stores(tmp_path, pg_dsn)


@pytest.fixture(scope="module")
def module_stores(tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> Iterator[Stores]:
    """Stores shared by a module's read-only tests (writing is the slow part)."""
    yield from _stores(tmp_path_factory.mktemp("stores"), pg_dsn)


def same(a: Any, b: Any, path: str = "", depth: int = 0) -> None:
    """Deep equality, floats within a relative 1e-9 (engines sum in different orders). The
    answer's and each row's keys must come in the same order; inside a json value they need
    not (PostgreSQL's jsonb keeps its own key order)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{path}: {a!r} != {b!r}"
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict) and isinstance(b, dict):
        if depth < 3:
            assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        assert set(a) == set(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            same(a[key], b[key], f"{path}.{key}", depth + 1)
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{path}: {len(a)} rows != {len(b)} rows"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]", depth + 1)
    else:
        assert a == b and type(a) is type(b), f"{path}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
