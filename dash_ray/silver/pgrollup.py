"""Rollups in PostgreSQL: one table of partial aggregates per granularity (schema
`dash_rollup_<g>`, named by the pipeline id), one row per bucket and `by` group, kept in the
same transaction as the silver rows they summarise, so they are never behind.

- A new range is merged in: its partials (computed in Arrow, `dash_ray.silver.rollup`, once for
  the lake and PostgreSQL, `partials.py`) are COPY'd into a temporary table and upserted,
  adding counts and sums and keeping the least and greatest values and the earliest and
  latest (time, seq).
- A range written again, or rows discarded, cannot be merged (a min cannot be subtracted):
  the buckets they touch are recomputed from the silver rows.
- A changed plan (other fields or groups) rebuilds the tables from the silver rows; the plan
  in use is recorded in `dash_rollup.plans`, and the query engine uses a table only when it
  holds the current plan.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from dash_ray.silver import pgschema
from dash_ray.silver.partials import partials_of
from dash_ray.silver.rollup import GRANULARITIES, PARTS, RollupPlan

__all__ = ["PLANS", "current_plan", "ensure", "merge", "recompute", "schema_of", "table"]

PLANS = sql.Identifier("dash_rollup", "plans")
_TYPES = {"n": "bigint", "first_t": "bigint", "first_s": "bigint", "last_t": "bigint", "last_s": "bigint"}
_CSV = pacsv.WriteOptions(include_header=False, quoting_style="needed")


def schema_of(granularity: str) -> str:
    return f"dash_rollup_{granularity}"


def table(pipeline_id: str, granularity: str) -> sql.Identifier:
    pgschema.table(pipeline_id)  # checks the id
    return sql.Identifier(schema_of(granularity), pipeline_id)


def _columns(plan: RollupPlan) -> list[tuple[str, str]]:
    out = [(plan.bucket, "bigint"), *((c.name, pgschema.PG_TYPES[c.type]) for c in plan.by), (plan.rows, "bigint")]
    for c in plan.fields:
        value = pgschema.PG_TYPES[c.type]
        for what in PARTS:
            out.append((plan.part(c, what),
                        "numeric" if what == "sum" and c.type == "int" else _TYPES.get(what, value)))
    return out


def current_plan(conn: psycopg.Connection[Any], pipeline_id: str, granularity: str) -> str | None:
    """The key of the plan the pipeline's table of `granularity` holds (None: no table)."""
    if conn.execute("SELECT to_regclass('dash_rollup.plans')").fetchone()[0] is None:  # type: ignore[index]
        return None
    row = conn.execute(sql.SQL("SELECT plan FROM {} WHERE pipeline = %s AND granularity = %s").format(PLANS),
                       (pipeline_id, granularity)).fetchone()
    return None if row is None else row[0]


def ensure(conn: psycopg.Connection[Any], pipeline_id: str, plan: RollupPlan) -> None:
    """Create the tables of `plan`, rebuilding any that holds another plan's partials."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS dash_rollup")
    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (pipeline text, granularity text, plan text NOT NULL,"
                         " PRIMARY KEY (pipeline, granularity))").format(PLANS))
    for granularity in plan.granularities:
        if current_plan(conn, pipeline_id, granularity) == plan.key:
            continue
        name = table(pipeline_id, granularity)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema_of(granularity))))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in _columns(plan))
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(name, columns))
        keys = _keys(plan)
        conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} ({}) NULLS NOT DISTINCT").format(name, keys))
        conn.execute(sql.SQL("INSERT INTO {} ({}) {}").format(
            name, _names(plan), _from_silver(pipeline_id, plan, granularity, sql.SQL("TRUE"))))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s) ON CONFLICT (pipeline, granularity)"
                             " DO UPDATE SET plan = excluded.plan").format(PLANS),
                     (pipeline_id, granularity, plan.key))


def _keys(plan: RollupPlan) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, [plan.bucket, *(c.name for c in plan.by)]))


def _names(plan: RollupPlan) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n, _ in _columns(plan))


def _from_silver(pipeline_id: str, plan: RollupPlan, granularity: str, where: sql.Composable) -> sql.Composed:
    """SELECT of the partial rows of the silver rows matching `where`."""
    width = sql.Literal(GRANULARITIES[granularity])
    e = sql.SQL("((extract(epoch from time) * 1000000)::bigint)")
    bucket = sql.SQL("({e} - ((({e} % {w}) + {w}) % {w}))").format(e=e, w=width)
    select: list[sql.Composable] = [bucket,
                                    *(sql.Identifier(c.name) for c in plan.by), sql.SQL("count(*)")]
    for c in plan.fields:
        f = sql.Identifier(c.name)
        ordered = {"first": sql.SQL("time, seq"), "last": sql.SQL("time DESC, seq DESC")}
        select += [sql.SQL("count({})").format(f), sql.SQL("sum({})").format(f),
                   sql.SQL("min({})").format(f), sql.SQL("max({})").format(f)]
        for end in ("first", "last"):
            for value in (f, e, sql.SQL("seq")):
                select.append(sql.SQL("(array_agg({} ORDER BY {}) FILTER (WHERE {} IS NOT NULL))[1]").format(
                    value, ordered[end], f))
    groups = sql.SQL(", ").join([sql.SQL("1"), *(sql.Identifier(c.name) for c in plan.by)])
    return sql.SQL("SELECT {} FROM {} WHERE {} GROUP BY {}").format(
        sql.SQL(", ").join(select), pgschema.table(pipeline_id), where, groups)


def merge(conn: psycopg.Connection[Any], pipeline_id: str, plan: RollupPlan, rows: pa.Table) -> None:
    """Merge the partials of new silver `rows` (a range never written before)."""
    for granularity in plan.granularities:
        part_rows = partials_of(rows, plan, granularity)
        if not part_rows.num_rows:
            continue
        name = table(pipeline_id, granularity)
        # One staging table per session, plan and granularity, emptied by every commit: created
        # and dropped per write, its catalog rows cost more than the merge itself.
        stage = sql.Identifier(f"dash_stage_{granularity}_{plan.key}")
        conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS").format(stage, name))
        body = io.BytesIO()
        pacsv.write_csv(part_rows, body, _CSV)
        with conn.cursor() as cursor, cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                stage, _names(plan))) as stream:
            stream.write(body.getbuffer())
        conn.execute(sql.SQL("INSERT INTO {} AS r SELECT * FROM {} ON CONFLICT ({}) DO UPDATE SET {}").format(
            name, stage, _keys(plan), sql.SQL(", ").join(_merge_sets(plan))))


def _merge_sets(plan: RollupPlan) -> list[sql.Composable]:
    sets: list[sql.Composable] = [sql.SQL("{n} = r.{n} + excluded.{n}").format(n=sql.Identifier(plan.rows))]
    for c in plan.fields:
        p = {what: sql.Identifier(plan.part(c, what)) for what in PARTS}
        sets += [
            sql.SQL("{n} = r.{n} + excluded.{n}").format(n=p["n"]),
            sql.SQL("{s} = CASE WHEN r.{s} IS NULL THEN excluded.{s} WHEN excluded.{s} IS NULL THEN r.{s}"
                    " ELSE r.{s} + excluded.{s} END").format(s=p["sum"]),
            sql.SQL("{m} = least(r.{m}, excluded.{m})").format(m=p["min"]),
            sql.SQL("{m} = greatest(r.{m}, excluded.{m})").format(m=p["max"]),
        ]
        for end, better in (("first", "<"), ("last", ">")):
            t, s = p[f"{end}_t"], p[f"{end}_s"]
            newer = sql.SQL("excluded.{t} IS NOT NULL AND (r.{t} IS NULL OR (excluded.{t}, excluded.{s}) {op}"
                            " (r.{t}, r.{s}))").format(t=t, s=s, op=sql.SQL(better))
            for column in (p[end], t, s):
                sets.append(sql.SQL("{c} = CASE WHEN {newer} THEN excluded.{c} ELSE r.{c} END").format(
                    c=column, newer=newer))
    return sets


def recompute(conn: psycopg.Connection[Any], pipeline_id: str, plan: RollupPlan, micros: Sequence[int]) -> None:
    """Recompute, from the silver rows, every bucket holding one of the instants `micros`."""
    if not micros:
        return
    for granularity in plan.granularities:
        width = GRANULARITIES[granularity]
        buckets = sorted({m - m % width for m in micros})
        name = table(pipeline_id, granularity)
        conn.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(name, sql.Identifier(plan.bucket)), (buckets,))
        e = sql.SQL("((extract(epoch from time) * 1000000)::bigint)")
        where = sql.SQL("({e} - ((({e} % {w}) + {w}) % {w})) = ANY({b})").format(
            e=e, w=sql.Literal(width), b=sql.Literal(buckets))
        conn.execute(sql.SQL("INSERT INTO {} ({}) {}").format(
            name, _names(plan), _from_silver(pipeline_id, plan, granularity, where)))
