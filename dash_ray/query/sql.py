"""The SQL of a checked `Query`, for DuckDB and PostgreSQL alike: one builder, and the engine's
`Dialect` (`dialect.py`) where their SQL differs, so both stores answer with the same rows.

Only names from the pipeline's schema reach the SQL text, each double-quoted after checking
it is a plain identifier, beside names the SQL makes up for its own columns, which hold a `#`
(no field name can, so none shadows a field and an alias never outgrows PostgreSQL's 63
characters); every value (times, bucket width, seq, limit) is a bound parameter.
The relation queried is named `silver` (a CTE or view the engine provides) with columns
`seq`, `time` and the schema's fields. Buckets are computed on integer epoch microseconds,
`e - ((e % w) + w) % w`, which floors to the epoch-aligned bucket in both dialects (also
before 1970). Strings sort bytewise (`Dialect.sort_key`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from dash_ray.query.dialect import Dialect
from dash_ray.query.model import Agg, Query
from dash_ray.silver.schema import quote

__all__ = ["BUCKET", "Statement", "add_filters", "after_time_sql", "agg_alias", "aggregate_sql", "bucket_start",
           "from_micros",
           "quote_internal", "raw_sql"]

_INTERNAL = re.compile(r"^#[A-Za-z0-9_#]{1,70}$|^[A-Za-z_][A-Za-z0-9_#]{0,70}$")
# The bucket column of an aggregate's output. Names the SQL makes up for itself hold a `#`,
# which no field name can (spec.FIELD_NAME_PATTERN), so they never shadow a field.
BUCKET = '"#bucket"'
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def from_micros(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


def quote_internal(name: str) -> str:
    """A name the SQL makes up (holding a `#`, or a plain identifier) as a quoted identifier."""
    if not _INTERNAL.match(name):
        raise ValueError(f"not an internal name: {name!r}")
    return f'"{name}"'


def agg_alias(i: int) -> str:
    """The output column of the `i`th aggregate (the answer names it, by position)."""
    return f'"#a{i}"'


@dataclass
class Statement:
    """SQL text with positional placeholders and its parameters, in order."""

    dialect: Dialect
    parts: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, text: str, *params: Any) -> Statement:
        self.parts.append(text)
        self.params.extend(params)
        return self

    @property
    def text(self) -> str:
        return self.dialect.text(" ".join(self.parts))


def bucket_start(epoch_us: str) -> str:
    """The start of the epoch-aligned bucket of `epoch_us` (integer microseconds); the width
    is three bound parameters."""
    return f"({epoch_us} - ((({epoch_us} % ?) + ?) % ?))"


def add_filters(st: Statement, query: Query) -> None:
    """`AND "field" IN (?, ...)` for each of the query's filters: the field's name from the
    schema, each value a bound parameter."""
    for f in query.filters:
        st.add(f"AND {quote(f.column.name)} IN ({', '.join('?' for _ in f.values)})", *f.values)


def _where(st: Statement, query: Query) -> None:
    # On the column itself, so PostgreSQL's index and DuckDB's row-group statistics apply.
    st.add("WHERE TRUE")
    if query.start_us is not None:
        st.add("AND time >= ?", from_micros(query.start_us))
    if query.end_us is not None:
        st.add("AND time < ?", from_micros(query.end_us))
    add_filters(st, query)


def raw_sql(dialect: Dialect, query: Query, *, after_time_us: int | None = None) -> Statement:
    """Rows in (time, seq) order (or its reverse), one more than `limit` so the caller knows
    whether there is a next page. `after_time_us` is the time of the row `query.after`."""
    st = Statement(dialect)
    columns = ", ".join(quote(c.name) for c in query.fields)
    st.add(f"SELECT seq, {dialect.epoch_us()} AS time_us" + (f", {columns}" if columns else "") + " FROM silver")
    _where(st, query)
    if query.after is not None:
        assert after_time_us is not None
        e = dialect.epoch_us()
        op = ">" if query.order == "asc" else "<"
        st.add(f"AND ({e} {op} ? OR ({e} = ? AND seq {op} ?))", after_time_us, after_time_us, query.after)
    direction = "ASC" if query.order == "asc" else "DESC"
    st.add(f"ORDER BY time {direction}, seq {direction} LIMIT ?", query.limit + 1)
    return st


def after_time_sql(dialect: Dialect, seq: int) -> Statement:
    """The time (epoch microseconds) of the row with `seq`."""
    return Statement(dialect).add(f"SELECT {dialect.epoch_us()} FROM silver WHERE seq = ?", seq)


def _agg_expr(dialect: Dialect, agg: Agg) -> str:
    if agg.column is None:
        return "count(*)"
    name = quote(agg.column.name)
    if agg.fn == "count":
        return f"count({name})"
    if agg.fn == "avg":
        return dialect.avg(name)
    if agg.fn == "sum":
        return f"sum({name})"  # of an int field exact in both: PostgreSQL's numeric, DuckDB's HUGEINT
    if agg.fn == "min" or agg.fn == "max":
        return dialect.extreme(agg.fn, name, agg.column)
    assert agg.fn == "first" or agg.fn == "last"
    return dialect.first_last(agg.fn, name, dialect.order_time, "seq")


def aggregate_sql(dialect: Dialect, query: Query) -> Statement:
    """One row per bucket (when `bucket_us`) and `by` group that holds rows, ordered by
    bucket then the `by` fields, nulls last; columns: the bucket?, the by fields, then each
    aggregate, under made-up names (`BUCKET`, `agg_alias`) that no field can shadow."""
    st = Statement(dialect)
    select: list[str] = []
    keys: list[str] = []
    order: list[str] = []
    params: list[Any] = []
    if query.bucket_us is not None:
        select.append(f"{bucket_start(dialect.epoch_us())} AS {BUCKET}")
        params += [query.bucket_us] * 3
        keys.append(BUCKET)
        order.append(BUCKET)
    for column in query.by:
        select.append(quote(column.name))
        keys.append(quote(column.name))
        order.append(f"{dialect.sort_key(column)} NULLS LAST")
    select += [f"{_agg_expr(dialect, agg)} AS {agg_alias(i)}" for i, agg in enumerate(query.aggs)]
    st.add("SELECT " + ", ".join(select) + " FROM silver", *params)
    _where(st, query)
    if keys:
        st.add("GROUP BY " + ", ".join(keys))
    st.add("HAVING count(*) > 0")
    if order:
        st.add("ORDER BY " + ", ".join(order))
    st.add("LIMIT ?", query.limit)
    return st
