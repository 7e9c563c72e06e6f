"""Schema evolution: what a new version of a pipeline's mapping may change about the columns
its silver rows already have.

Added fields become new columns (old rows read null there); removed fields stay in the rows
already stored but are no longer queried; a field whose type changes must be readable in its
new type for every old row, so only widenings are allowed (`int` to `double`, and any scalar
to `string`): stores keep old values and read them as the new type (DuckDB unifies the files'
types; PostgreSQL alters the column, `dash_ray.silver.pgretype`, and converts rows read back
from old files as DuckDB would, `union_by_name` and `as_text` here), and both show an old value
alike (an int as a double rounded to the nearest; a scalar as DuckDB's text:
`2.0`, `1e-05`, `true`, `2026-05-01 12:00:00.5+00`). Values mapped after the change are the
mapping's (`dash_ray.mapping.casts`: `0.00001`, `2026-05-01T12:00:00.5Z`). Any other change is
refused at deploy with the field's path, naming both types and what to do instead.
"""

from __future__ import annotations

import contextlib

import pyarrow as pa

from dash_ray.errors import Problem
from dash_ray.silver.schema import quote
from dash_ray.spec import PipelineSpec

__all__ = ["WIDENINGS", "as_text", "evolution_problems", "union_by_name"]

WIDENINGS = frozenset({("int", "double"), ("int", "string"), ("double", "string"), ("bool", "string"),
                       ("timestamp", "string")})


def evolution_problems(old: PipelineSpec, new: PipelineSpec) -> list[Problem]:
    """Problems with replacing `old` by `new`, for a 422 at deploy."""
    problems = []
    old_fields, new_fields = old.mapping.fields, new.mapping.fields
    for name, field in new_fields.items():
        before = old_fields.get(name)
        if before is None or before.type == field.type or (before.type, field.type) in WIDENINGS:
            continue
        problems.append(Problem(
            f"mapping.fields.{name}.type",
            f"field {name!r} holds {before.type} values in the rows already stored, which cannot all be "
            f"read as {field.type}; keep {before.type} (or widen it: int to double, any scalar to string), "
            f"or add a new field under another name"))
    if old.mapping.keep_extra and not new.mapping.keep_extra and "extra" in new_fields:
        problems.append(Problem("mapping.fields.extra", "'extra' holds the kept extra keys of stored rows"))
    return problems


def union_by_name(tables: list[pa.Table]) -> pa.Table:
    """Tables whose columns may differ in type (a field a spec update widened) as one, each
    column in the type DuckDB gives it when it reads the lake's files together, with the same
    text for a value read as a string (so a store fed from these rows answers as DuckDB does)."""
    if len(tables) == 1:
        return tables[0]
    return _query_tables(tables, " UNION ALL BY NAME ".join(f"SELECT * FROM t{i}" for i in range(len(tables))))


def as_text(table: pa.Table, names: list[str]) -> pa.Table:
    """`table` with the columns `names` cast to strings as DuckDB casts them (`2.0`, `1e-05`,
    `true`, `2026-05-01 12:00:00.5+00`): the rows of a field widened to string, as a query
    over the lake shows them."""
    casts = ", ".join(f"CAST({quote(name)} AS VARCHAR) AS {quote(name)}" for name in names)
    return _query_tables([table], f"SELECT * REPLACE ({casts}) FROM t0")


def _query_tables(tables: list[pa.Table], text: str) -> pa.Table:
    """`text` run on `tables` (named t0, t1, ...) in a connection of its own, times in UTC."""
    import duckdb  # only where rows of two spec versions meet: not for the deploy check

    con = duckdb.connect()
    try:
        with contextlib.suppress(duckdb.Error):
            con.execute("SET TimeZone = 'UTC'")
        for i, table in enumerate(tables):
            con.register(f"t{i}", table)
        return con.sql(text).to_arrow_table()
    finally:
        con.close()
