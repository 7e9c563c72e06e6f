"""Engines differ only through their `Dialect` and their role's Protocol (issue 23): the SQL
builders hold no switch on an engine's name, and each engine brings its own dialect. That both
engines answer every query alike is the contract suite's business (test_contract.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from dash_ray.lake import Lake
from dash_ray.query.base import FollowerEngine, LakeEngine, QueryEngine
from dash_ray.query.dialect import DUCKDB, POSTGRES
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query
from dash_ray.query.postgres import PostgresEngine
from dash_ray.query.sql import aggregate_sql, raw_sql
from dash_ray.silver.schema import Column, Schema

QUERY_PACKAGE = Path(__file__).resolve().parents[3] / "dash_ray" / "query"
SCHEMA = Schema((Column("device", "string"), Column("ok", "bool"), Column("v", "double")))


def _names_compared(path: Path) -> list[str]:
    """Engine names (`"duckdb"`, `"postgres"`) that `path` compares anything with."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in ("duckdb", "postgres"):
                    found.append(f"{path.name}:{node.lineno} compares with {side.value!r}")
    return found


def test_no_module_of_the_query_package_switches_on_an_engine_name() -> None:
    assert [hit for path in sorted(QUERY_PACKAGE.glob("*.py")) for hit in _names_compared(path)] == []


def test_each_engine_brings_its_dialect_and_plays_its_role(tmp_path: Path, pg_dsn: str) -> None:
    lake_engine = DuckDBEngine(Lake.from_url(str(tmp_path / "lake")), "p")
    pg_engine = PostgresEngine(pg_dsn, "p")
    try:
        assert lake_engine.dialect is DUCKDB and pg_engine.dialect is POSTGRES
        assert isinstance(lake_engine, QueryEngine) and isinstance(lake_engine, LakeEngine)
        assert isinstance(pg_engine, QueryEngine) and isinstance(pg_engine, FollowerEngine)
        assert (lake_engine.store, pg_engine.store) == ("lake", "postgres")  # as answers name them
    finally:
        lake_engine.close()
        pg_engine.close()


def test_the_dialects_differ_where_the_engines_do() -> None:
    query = parse_query({"agg": "avg:v,max:ok,first:device", "by": "device"}, SCHEMA)
    duck, pg = aggregate_sql(DUCKDB, query).text, aggregate_sql(POSTGRES, query).text
    assert 'avg("v") AS' in duck and 'avg("v")::double precision AS' in pg
    assert 'max("ok") AS' in duck and 'bool_or("ok") AS' in pg  # PostgreSQL has no max(boolean)
    assert 'arg_min("device", (epoch_us(time), seq))' in duck
    assert 'array_agg("device" ORDER BY time, seq)' in pg
    assert 'ORDER BY "device" NULLS LAST' in duck and 'ORDER BY "device" COLLATE "C" NULLS LAST' in pg
    raw = parse_query({"after": "3", "fields": "v"}, SCHEMA)
    assert raw_sql(DUCKDB, raw, after_time_us=5).text.count("?") == 4
    assert raw_sql(POSTGRES, raw, after_time_us=5).text.count("%s") == 4
    assert POSTGRES.text("SELECT '%' LIKE ?") == "SELECT '%%' LIKE %s" and DUCKDB.text("?") == "?"
    assert (DUCKDB.type_of(Column("t", "timestamp")), POSTGRES.type_of(Column("t", "timestamp"))) == \
        ("TIMESTAMPTZ", "timestamptz")
