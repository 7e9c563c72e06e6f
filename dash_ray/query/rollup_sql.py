"""Aggregates answered from rollups (`dash_ray.silver.rollup`): which granularity can answer a
query (`granularity_for`), and the SQL, for both dialects: partial rows of the whole rollup
buckets inside the range, merged with raw rows turned into partials (the range's edges, which
do not fill a rollup bucket, and rows not rolled up yet), then combined.

The statement expects these relations, provided by the engine as CTEs before it (the text
starts with `, parts AS (`, to continue the engine's WITH list):
- `rolled`: the plan's partial rows of the chosen granularity;
- `silver`: the raw rows (or, named by `edges`, one relation for each edge of the range: the
  DuckDB engine gives each only the files of its days, and a relation read once is never
  materialized as a CTE read twice would be);
- `unrolled` (when `has_unrolled`): raw rows whose ranges have no partials yet.
"""

from __future__ import annotations

from dash_ray.query.dialect import Dialect
from dash_ray.query.model import Agg, Query
from dash_ray.query.sql import BUCKET, Statement, add_filters, agg_alias, bucket_start, from_micros, quote_internal
from dash_ray.silver.rollup import GRANULARITIES, PARTS, RollupPlan
from dash_ray.silver.schema import Column, quote

__all__ = ["edges_of", "granularity_for", "middle_of", "rollup_sql"]


def granularity_for(plan: RollupPlan, query: Query) -> str | None:
    """The coarsest granularity of `plan` that can answer `query`, or None (read it raw)."""
    filtered = {f.column for f in query.filters}
    if not query.aggregate or not set(query.by) | filtered <= set(plan.by):
        return None
    for agg in query.aggs:
        if agg.column is not None and agg.column not in plan.fields:
            return None
    fits = [g for g in plan.granularities
            if query.bucket_us is None or query.bucket_us % GRANULARITIES[g] == 0]
    return max(fits, key=GRANULARITIES.__getitem__, default=None)


def middle_of(query: Query, granularity: str) -> tuple[int | None, int | None] | None:
    """The whole buckets `[a, b)` of `granularity` inside the query's range (None for an
    unbounded side), or None when not one whole bucket fits."""
    width = GRANULARITIES[granularity]
    a = None if query.start_us is None else -((-query.start_us) // width) * width
    b = None if query.end_us is None else query.end_us - query.end_us % width
    if a is not None and b is not None and a >= b:
        return None
    return a, b


def _raw_parts(dialect: Dialect, plan: RollupPlan) -> str:
    """Columns that make one raw row a partial row."""
    e = dialect.epoch_us()
    columns = [f"{e} AS {quote_internal(plan.bucket)}", *(quote(c.name) for c in plan.by),
               f"1 AS {quote_internal(plan.rows)}"]
    for c in plan.fields:
        f = quote(c.name)
        p = _parts(plan, c)
        total = f"CAST({f} AS DECIMAL(38, 0))" if c.type == "int" else f
        when = f"CASE WHEN {f} IS NOT NULL THEN"
        columns += [f"CASE WHEN {f} IS NULL THEN 0 ELSE 1 END AS {p['n']}", f"{total} AS {p['sum']}",
                    f"{f} AS {p['min']}", f"{f} AS {p['max']}",
                    f"{f} AS {p['first']}", f"{when} {e} END AS {p['first_t']}", f"{when} seq END AS {p['first_s']}",
                    f"{f} AS {p['last']}", f"{when} {e} END AS {p['last_t']}", f"{when} seq END AS {p['last_s']}"]
    return ", ".join(columns)


def _parts(plan: RollupPlan, column: Column) -> dict[str, str]:
    """The quoted names of a field's partial columns, by what they hold."""
    return {what: quote_internal(plan.part(column, what)) for what in PARTS}


def _all_parts(plan: RollupPlan) -> str:
    names = [quote_internal(plan.bucket), *(quote(c.name) for c in plan.by), quote_internal(plan.rows)]
    names += [quote_internal(plan.part(c, what)) for c in plan.fields for what in PARTS]
    return ", ".join(names)


def _combine(dialect: Dialect, plan: RollupPlan, agg: Agg) -> str:
    if agg.column is None:
        return f"CAST(sum({quote_internal(plan.rows)}) AS BIGINT)"
    c: Column = agg.column
    p = _parts(plan, c)
    if agg.fn == "count":
        return f"CAST(coalesce(sum({p['n']}), 0) AS BIGINT)"
    if agg.fn == "sum":
        return f"sum({p['sum']})" if c.type == "int" else f"CAST(sum({p['sum']}) AS DOUBLE PRECISION)"
    if agg.fn == "avg":
        return f"CAST(sum({p['sum']}) AS DOUBLE PRECISION) / NULLIF(sum({p['n']}), 0)"
    if agg.fn in ("min", "max"):
        return f"{agg.fn}({p[agg.fn]})"
    end = agg.fn
    assert end == "first" or end == "last"
    return dialect.first_last(end, p[end], p[f"{end}_t"], p[f"{end}_s"])


def edges_of(query: Query, granularity: str) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """The raw edges `[start, a)` and `[b, end)` of the query's range around its whole
    buckets (`middle_of`), in epoch microseconds; None for an edge that is empty."""
    middle = middle_of(query, granularity)
    assert middle is not None, "choose the raw path when no whole bucket fits"
    a, b = middle
    head = (query.start_us, a) if a is not None and query.start_us is not None and query.start_us < a else None
    tail = (b, query.end_us) if b is not None and query.end_us is not None and b < query.end_us else None
    return head, tail


def rollup_sql(dialect: Dialect, query: Query, plan: RollupPlan, granularity: str, *,
               has_unrolled: bool, edges: tuple[str | None, str | None] = ("silver", "silver")) -> Statement:
    """Same columns and order as `aggregate_sql` for the same query. `edges` names the
    relations the raw rows of the range's head and tail are read from (None: no rows)."""
    middle = middle_of(query, granularity)
    assert middle is not None, "choose the raw path when no whole bucket fits"
    a, b = middle
    st = Statement(dialect)
    st.add(f", parts AS (SELECT {_all_parts(plan)} FROM rolled WHERE TRUE")
    if a is not None:
        st.add(f"AND {quote_internal(plan.bucket)} >= ?", a)
    if b is not None:
        st.add(f"AND {quote_internal(plan.bucket)} < ?", b)
    raw = _raw_parts(dialect, plan)
    for relation, edge in zip(edges, edges_of(query, granularity), strict=True):
        if edge is not None and relation is not None:
            st.add(f"UNION ALL SELECT {raw} FROM {quote_internal(relation)} WHERE time >= ? AND time < ?",
                   from_micros(edge[0]), from_micros(edge[1]))
    if has_unrolled:
        st.add(f"UNION ALL SELECT {raw} FROM unrolled WHERE TRUE")
        if a is not None:
            st.add("AND time >= ?", from_micros(a))
        if b is not None:
            st.add("AND time < ?", from_micros(b))
    st.add(")")
    # Output columns take `#` names no field has, so none can shadow a field in GROUP BY or
    # ORDER BY (the answer names them, `dash_ray.query.result`).
    select: list[str] = []
    keys: list[str] = []
    order: list[str] = []
    bucket_params: list[int] = []
    if query.bucket_us is not None:
        select.append(f"{bucket_start(quote_internal(plan.bucket))} AS {BUCKET}")
        bucket_params = [query.bucket_us] * 3
        keys.append(BUCKET)
        order.append(BUCKET)
    for column in query.by:
        select.append(quote(column.name))
        keys.append(quote(column.name))
        order.append(f"{dialect.sort_key(column)} NULLS LAST")
    select += [f"{_combine(dialect, plan, agg)} AS {agg_alias(i)}" for i, agg in enumerate(query.aggs)]
    st.add("SELECT " + ", ".join(select) + " FROM parts WHERE TRUE", *bucket_params)
    add_filters(st, query)  # on the `by` columns the partial rows keep (granularity_for)
    if keys:
        st.add("GROUP BY " + ", ".join(keys))
    st.add(f"HAVING sum({quote_internal(plan.rows)}) > 0")
    if order:
        st.add("ORDER BY " + ", ".join(order))
    st.add("LIMIT ?", query.limit)
    return st
