"""Rollups: per-bucket partial aggregates of a pipeline's silver rows, kept by the store as
each range is written, so an aggregate over millions of rows reads thousands.

A `RollupPlan` says which rows are rolled up: grouped by the epoch-aligned bucket of each
granularity (10s, 1m, 1h by default) and by the `by` fields (default: the string and bool
fields, at most four), with partials for each numeric field. A partial row holds, per field,
the non-null count, the sum (exact decimal for int fields), min, max, and the first and last
non-null value with the (time, seq) that orders them: everything the query API's functions
need, and all of it mergeable, so partials of different ranges combine into the same answer
as the raw rows (the contract suite checks this on every store).

The stores write partials (`dash_ray.silver.lake`, `dash_ray.silver.pgrollup`); the query
engines read them (`dash_ray.query.rollup_sql`): a query uses a rollup when its bucket is a
multiple of the granularity, its `by` fields are a subset of the plan's and its functions are
on numeric fields (or `count`); the range's edges that do not fill a whole rollup bucket, and
ranges not rolled up yet, are read raw.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.errors import Problem
from dash_ray.silver.schema import NUMERIC, Column, Schema, spec_schema
from dash_ray.spec import PipelineSpec

__all__ = ["GRANULARITIES", "PARTS", "RollupPlan", "merge_partials", "partials", "plan_for", "rollup_problems",
           "spec_plan"]

GRANULARITIES: dict[str, int] = {"10s": 10_000_000, "1m": 60_000_000, "1h": 3_600_000_000, "1d": 86_400_000_000}
DEFAULT_GRANULARITIES = ("10s", "1m", "1h")
MAX_DEFAULT_BY = 4
_SUMS = {"int": pa.decimal128(38, 0), "double": pa.float64()}
_VALUES = {"int": pa.int64(), "double": pa.float64()}
PARTS = ("n", "sum", "min", "max", "first", "first_t", "first_s", "last", "last_t", "last_s")


def _plain_part(column: Column, what: str) -> str:
    base = column.name if len(column.name) <= 48 else "h" + _digest(column.name)
    return f"{base}__{what}"


def _digest(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RollupPlan:
    """Which rows are rolled up, and the names of a partial row's columns: `bucket_us`, the
    by fields, `rows`, then per field `<field>__<what>` (a digest for a name over 48
    characters: identifiers stop at 63 characters in PostgreSQL). Where one of those would
    clash with another (a field named `rows`, `bucket_us` or `temp__n`; DuckDB compares names
    without case), every internal name takes a `#`, which no field name can hold:
    `#bucket_us`, `#rows`, `<field>#<what>`. Plans that never clashed keep their names, their
    key and the partials stored under it."""

    by: tuple[Column, ...]
    fields: tuple[Column, ...]
    granularities: tuple[str, ...]

    @cached_property
    def _marked(self) -> bool:
        plain = ["bucket_us", "rows", *(c.name for c in self.by),
                 *(_plain_part(c, what) for c in self.fields for what in PARTS)]
        return len({name.lower() for name in plain}) != len(plain)

    @property
    def bucket(self) -> str:
        """The name of a partial row's bucket column (its start, epoch microseconds)."""
        return "#bucket_us" if self._marked else "bucket_us"

    @property
    def rows(self) -> str:
        """The name of a partial row's count of rows."""
        return "#rows" if self._marked else "rows"

    def part(self, column: Column, what: str) -> str:
        """The name of one of a field's partial columns (`what` in PARTS)."""
        if not self._marked:
            return _plain_part(column, what)
        base = column.name if len(column.name) <= 48 else "#h" + _digest(column.name)
        return f"{base}#{what}"

    @property
    def key(self) -> str:
        """Names the plan: partials of another plan are not used (they group differently)."""
        text = "|".join([",".join(f"{c.name}:{c.type}" for c in self.by),
                         ",".join(f"{c.name}:{c.type}" for c in self.fields), ",".join(self.granularities)])
        if self._marked:
            text += "|#"
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def schema(self) -> pa.Schema:
        """Columns of a partial row: the bucket, the by fields, rows, then each field's parts."""
        fields = [pa.field(self.bucket, pa.int64()), *(pa.field(c.name, _arrow(c)) for c in self.by),
                  pa.field(self.rows, pa.int64())]
        for c in self.fields:
            types = {"n": pa.int64(), "sum": _SUMS[c.type], "first_t": pa.int64(), "first_s": pa.int64(),
                     "last_t": pa.int64(), "last_s": pa.int64()}
            fields += [pa.field(self.part(c, p), types.get(p, _VALUES[c.type])) for p in PARTS]
        return pa.schema(fields)


def _arrow(column: Column) -> pa.DataType:
    return {"string": pa.string(), "bool": pa.bool_(), "int": pa.int64(), "double": pa.float64(),
            "timestamp": pa.timestamp("us", tz="UTC")}[column.type]


def plan_for(schema: Schema, *, by: Sequence[str] | None = None,
             granularities: Sequence[str] = DEFAULT_GRANULARITIES) -> RollupPlan | None:
    """The plan for a pipeline's schema; None when nothing is worth rolling up."""
    if by is None:
        dims = tuple(c for c in schema.columns if c.type in ("string", "bool"))[:MAX_DEFAULT_BY]
    else:
        dims = tuple(c for name in by if (c := schema.get(name)) is not None)
    fields = tuple(c for c in schema.columns if c.type in NUMERIC and c not in dims)
    if not granularities:
        return None
    return RollupPlan(dims, fields, tuple(sorted(set(granularities), key=GRANULARITIES.__getitem__)))


def partials(rows: pa.Table, plan: RollupPlan, granularity: str) -> pa.Table:
    """The partial rows of `rows` (mapped silver rows: seq, time, fields) for one granularity,
    one per bucket and `by` group; columns missing from `rows` count as null."""
    width = GRANULARITIES[granularity]
    if not rows.num_rows:
        return plan.schema().empty_table()
    ordered = rows.sort_by([("time", "ascending"), ("seq", "ascending")])
    micros = pc.cast(ordered.column("time"), pa.int64())
    values = micros.to_numpy(zero_copy_only=False)
    # Working columns carry a `#`, which no field name holds.
    columns: dict[str, pa.Array] = {"#bucket": pa.array(values - np.mod(values, width), pa.int64())}
    n = ordered.num_rows
    for c in plan.by:
        columns[c.name] = ordered.column(c.name) if c.name in ordered.column_names else pa.nulls(n, _arrow(c))
    columns["#one"] = pa.array(np.ones(n, dtype=np.int64))
    aggregations: list[tuple[str, str]] = [("#one", "sum")]
    for c in plan.fields:
        # An int column of rows stored before the field became a double: rounded, as SQL does.
        value = pc.cast(ordered.column(c.name), _VALUES[c.type], safe=False) if c.name in ordered.column_names \
            else pa.nulls(n, _VALUES[c.type])
        valid = pc.is_valid(value)
        columns[f"{c.name}#v"] = value
        columns[f"{c.name}#s"] = value.cast(_SUMS[c.type])
        columns[f"{c.name}#t"] = pc.if_else(valid, micros, pa.nulls(n, pa.int64()))
        columns[f"{c.name}#q"] = pc.if_else(valid, ordered.column("seq"), pa.nulls(n, pa.int64()))
        aggregations += [(f"{c.name}#v", "count"), (f"{c.name}#s", "sum"), (f"{c.name}#v", "min"),
                         (f"{c.name}#v", "max"), (f"{c.name}#v", "first"), (f"{c.name}#t", "first"),
                         (f"{c.name}#q", "first"), (f"{c.name}#v", "last"), (f"{c.name}#t", "last"),
                         (f"{c.name}#q", "last")]
    keys = ["#bucket", *(c.name for c in plan.by)]
    grouped = pa.table(columns).group_by(keys, use_threads=False).aggregate(aggregations)
    out = {plan.bucket: grouped.column("#bucket"), **{c.name: grouped.column(c.name) for c in plan.by},
           plan.rows: grouped.column("#one_sum")}
    for c in plan.fields:
        sources = {"n": "#v_count", "sum": "#s_sum", "min": "#v_min", "max": "#v_max", "first": "#v_first",
                   "first_t": "#t_first", "first_s": "#q_first", "last": "#v_last", "last_t": "#t_last",
                   "last_s": "#q_last"}
        for what in PARTS:
            out[plan.part(c, what)] = grouped.column(f"{c.name}{sources[what]}")
    return pa.table(out).cast(plan.schema())


def spec_plan(spec: PipelineSpec) -> RollupPlan | None:
    """The rollup plan a pipeline spec asks for (None when rollups are off)."""
    rollups = spec.storage.rollups
    if not rollups.enabled:
        return None
    return plan_for(spec_schema(spec), by=rollups.by, granularities=rollups.granularities)


def rollup_problems(spec: PipelineSpec) -> list[Problem]:
    """What is wrong with a spec's rollups, for a 422 at deploy."""
    schema = spec_schema(spec)
    problems = []
    for i, name in enumerate(spec.storage.rollups.by or ()):
        column = schema.get(name)
        if column is None:
            problems.append(Problem(f"storage.rollups.by.{i}", f"no mapped field {name!r}"))
        elif column.type in ("json", "double"):
            problems.append(Problem(f"storage.rollups.by.{i}", f"cannot group by {column.type} field {name!r}"))
    return problems


def merge_partials(parts: pa.Table, plan: RollupPlan) -> pa.Table:
    """Partial rows merged into one row per bucket and group (what compaction writes): the
    same answers, fewer rows."""
    import duckdb  # the engine the lake's queries use; here for its arg_min over a tuple

    if not parts.num_rows:
        return plan.schema().empty_table()
    keys = ", ".join([f'"{plan.bucket}"', *(f'"{c.name}"' for c in plan.by)])
    select = [keys, f'CAST(sum("{plan.rows}") AS BIGINT) AS "{plan.rows}"']
    for c in plan.fields:
        p = {what: f'"{plan.part(c, what)}"' for what in PARTS}
        select += [f"CAST(sum({p['n']}) AS BIGINT) AS {p['n']}", f"sum({p['sum']}) AS {p['sum']}",
                   f"min({p['min']}) AS {p['min']}", f"max({p['max']}) AS {p['max']}"]
        for end, fn in (("first", "arg_min"), ("last", "arg_max")):
            value, t, s = p[end], p[f"{end}_t"], p[f"{end}_s"]
            for column in (value, t, s):
                select.append(f"{fn}({column}, ({t}, {s})) FILTER (WHERE {value} IS NOT NULL) AS {column}")
    con = duckdb.connect()
    try:
        con.register("parts", parts)
        merged = con.sql(f"SELECT {', '.join(select)} FROM parts GROUP BY {keys}").to_arrow_table()
    finally:
        con.close()
    return merged.select(plan.schema().names).cast(plan.schema())
