"""The SQL of an aggregate answered from rollups, for both dialects: partial rows of the
whole rollup buckets inside the range, merged with raw rows turned into partials (the range's
edges, which do not fill a rollup bucket, and rows not rolled up yet), then combined.

The statement expects these relations, provided by the engine as CTEs before it (the text
starts with `, parts AS (`, to continue the engine's WITH list):
- `rolled`: the plan's partial rows of the chosen granularity;
- `silver`: the raw rows;
- `unrolled` (when `has_unrolled`): raw rows whose ranges have no partials yet.
"""

from __future__ import annotations

from dash_ray.query.model import Agg, Column, Query
from dash_ray.query.rollup import GRANULARITIES, RollupPlan, part
from dash_ray.query.sql import Dialect, Statement, from_micros, quote

__all__ = ["middle_of", "rollup_sql"]


def middle_of(query: Query, granularity: str) -> tuple[int | None, int | None] | None:
    """The whole buckets `[a, b)` of `granularity` inside the query's range (None for an
    unbounded side), or None when not one whole bucket fits."""
    width = GRANULARITIES[granularity]
    a = None if query.start_us is None else -((-query.start_us) // width) * width
    b = None if query.end_us is None else query.end_us - query.end_us % width
    if a is not None and b is not None and a >= b:
        return None
    return a, b


def _epoch(dialect: Dialect) -> str:
    return "epoch_us(time)" if dialect == "duckdb" else "(extract(epoch from time) * 1000000)::bigint"


def _raw_parts(dialect: Dialect, plan: RollupPlan) -> str:
    """Columns that make one raw row a partial row."""
    e = _epoch(dialect)
    columns = [f"{e} AS bucket_us", *(quote(c.name) for c in plan.by), "1 AS rows"]
    for c in plan.fields:
        f = quote(c.name)
        total = f"CAST({f} AS DECIMAL(38, 0))" if c.type == "int" else f
        when = f"CASE WHEN {f} IS NOT NULL THEN"
        columns += [f"CASE WHEN {f} IS NULL THEN 0 ELSE 1 END AS {quote(part(c, 'n'))}",
                    f"{total} AS {quote(part(c, 'sum'))}",
                    f"{f} AS {quote(part(c, 'min'))}", f"{f} AS {quote(part(c, 'max'))}",
                    f"{f} AS {quote(part(c, 'first'))}", f"{when} {e} END AS {quote(part(c, 'first_t'))}",
                    f"{when} seq END AS {quote(part(c, 'first_s'))}",
                    f"{f} AS {quote(part(c, 'last'))}", f"{when} {e} END AS {quote(part(c, 'last_t'))}",
                    f"{when} seq END AS {quote(part(c, 'last_s'))}"]
    return ", ".join(columns)


def _all_parts(plan: RollupPlan) -> str:
    names = ["bucket_us", *(quote(c.name) for c in plan.by), "rows"]
    names += [quote(part(c, p)) for c in plan.fields for p in
              ("n", "sum", "min", "max", "first", "first_t", "first_s", "last", "last_t", "last_s")]
    return ", ".join(names)


def _combine(dialect: Dialect, agg: Agg) -> str:
    if agg.column is None:
        return "CAST(sum(rows) AS BIGINT)"
    c: Column = agg.column
    p = {what: quote(part(c, what)) for what in ("n", "sum", "min", "max", "first", "first_t", "first_s",
                                                   "last", "last_t", "last_s")}
    if agg.fn == "count":
        return f"CAST(coalesce(sum({p['n']}), 0) AS BIGINT)"
    if agg.fn == "sum":
        return f"sum({p['sum']})" if c.type == "int" else f"CAST(sum({p['sum']}) AS DOUBLE PRECISION)"
    if agg.fn == "avg":
        return f"CAST(sum({p['sum']}) AS DOUBLE PRECISION) / NULLIF(sum({p['n']}), 0)"
    if agg.fn in ("min", "max"):
        return f"{agg.fn}({p[agg.fn]})"
    value, t, s = (p["first"], p["first_t"], p["first_s"]) if agg.fn == "first" else (p["last"], p["last_t"], p["last_s"])
    if dialect == "duckdb":
        fn = "arg_min" if agg.fn == "first" else "arg_max"
        return f"{fn}({value}, ({t}, {s})) FILTER (WHERE {value} IS NOT NULL)"
    direction = "" if agg.fn == "first" else " DESC"
    return f"(array_agg({value} ORDER BY {t}{direction}, {s}{direction}) FILTER (WHERE {value} IS NOT NULL))[1]"


def rollup_sql(dialect: Dialect, query: Query, plan: RollupPlan, granularity: str, *,
               has_unrolled: bool) -> Statement:
    """Same columns and order as `aggregate_sql` for the same query."""
    middle = middle_of(query, granularity)
    assert middle is not None, "choose the raw path when no whole bucket fits"
    a, b = middle
    st = Statement(dialect)
    st.add(f", parts AS (SELECT {_all_parts(plan)} FROM rolled WHERE TRUE")
    if a is not None:
        st.add("AND bucket_us >= ?", a)
    if b is not None:
        st.add("AND bucket_us < ?", b)
    raw = _raw_parts(dialect, plan)
    if a is not None and query.start_us is not None and query.start_us < a:
        st.add(f"UNION ALL SELECT {raw} FROM silver WHERE time >= ? AND time < ?",
               from_micros(query.start_us), from_micros(a))
    if b is not None and query.end_us is not None and b < query.end_us:
        st.add(f"UNION ALL SELECT {raw} FROM silver WHERE time >= ? AND time < ?",
               from_micros(b), from_micros(query.end_us))
    if has_unrolled:
        st.add(f"UNION ALL SELECT {raw} FROM unrolled WHERE TRUE")
        if a is not None:
            st.add("AND time >= ?", from_micros(a))
        if b is not None:
            st.add("AND time < ?", from_micros(b))
    st.add(")")
    select: list[str] = []
    keys: list[str] = []
    order: list[str] = []
    bucket_params: list[int] = []
    if query.bucket_us is not None:
        select.append("(bucket_us - (((bucket_us % ?) + ?) % ?)) AS bucket_key")
        bucket_params = [query.bucket_us] * 3
        keys.append("bucket_key")
        order.append("bucket_key")
    for column in query.by:
        select.append(quote(column.name))
        keys.append(quote(column.name))
        sort = f'{quote(column.name)} COLLATE "C"' if dialect == "postgres" and column.type == "string" else quote(column.name)
        order.append(f"{sort} NULLS LAST")
    select += [f"{_combine(dialect, agg)} AS {quote(agg.name)}" for agg in query.aggs]
    st.add("SELECT " + ", ".join(select) + " FROM parts", *bucket_params)
    if keys:
        st.add("GROUP BY " + ", ".join(keys))
    st.add("HAVING sum(rows) > 0")
    if order:
        st.add("ORDER BY " + ", ".join(order))
    st.add("LIMIT ?", query.limit)
    return st
