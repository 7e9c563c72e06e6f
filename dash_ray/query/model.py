"""What a query on a pipeline's silver rows asks, checked against the pipeline's columns
(`dash_ray.silver.schema`): `parse_query` turns the parameters of `GET /v1/pipelines/{id}/query`
into a `Query`, or a QueryError (400) naming the parameter. Nothing from a parameter ever becomes SQL text: field
names are looked up in the pipeline's schema and only the schema's names are used, and every
value travels as a bound parameter.

Semantics, the same for every engine (docs/API.md):
- `from` inclusive, `to` exclusive, on the event time; ISO 8601 (no offset means UTC) or epoch
  seconds. Missing means unbounded.
- Raw rows are ordered by (time, seq); `after=<seq>` continues after that row in that order.
- Buckets are `<n><s|m|h|d>`, aligned to the UNIX epoch in UTC; only buckets holding rows are
  listed, ordered by bucket then the `by` fields (nulls last).
- Aggregates skip nulls: `count:f` counts non-null values, `count` counts rows; `first`/`last`
  are the earliest/latest non-null value by (time, seq); `avg` is a double; `sum` of an int
  field is an exact integer.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from dash_ray.errors import QueryError, QueryLimitError
from dash_ray.mapping.timestamps import MAX_US, MIN_US, parse_iso_scalar
from dash_ray.silver.schema import NUMERIC, Column, Schema

__all__ = ["AGG_FUNCTIONS", "MAX_BUCKETS", "Agg", "Filter", "Query", "iso", "parse_query"]

AggFunction = Literal["avg", "min", "max", "sum", "count", "first", "last"]
AGG_FUNCTIONS: tuple[AggFunction, ...] = ("avg", "min", "max", "sum", "count", "first", "last")
_ORDERED = frozenset({"int", "double", "string", "timestamp", "bool"})

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000
MAX_BY = 8
MAX_AGGS = 32
# A bucketed aggregate over a closed range may span at most this many buckets.
MAX_BUCKETS = 100_000
# `filter=<field>:<v1>,<v2>;<field>:...`: equality on string or int fields, bounded.
MAX_FILTER_FIELDS = 4
MAX_FILTER_VALUES = 100
MAX_FILTER_VALUE_CHARS = 200
_FILTERABLE = frozenset({"string", "int"})
_BUCKET = re.compile(r"^([1-9][0-9]{0,8})([smhd])$")
_UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}


@dataclass(frozen=True)
class Agg:
    fn: AggFunction
    column: Column | None  # None: `count` of rows

    @property
    def name(self) -> str:
        return self.fn if self.column is None else f"{self.fn}_{self.column.name}"


@dataclass(frozen=True)
class Filter:
    """Rows whose `column` equals one of `values` (bound parameters, never SQL text)."""

    column: Column
    values: tuple[str | int, ...]


@dataclass(frozen=True)
class Query:
    """A checked query. Times are UTC microseconds; `bucket_us` is None for raw rows or one
    group over the whole range."""

    start_us: int | None = None
    end_us: int | None = None
    fields: tuple[Column, ...] = ()
    limit: int = DEFAULT_LIMIT
    order: Literal["asc", "desc"] = "asc"
    after: int | None = None
    bucket_us: int | None = None
    aggs: tuple[Agg, ...] = ()
    by: tuple[Column, ...] = ()
    filters: tuple[Filter, ...] = ()

    @property
    def aggregate(self) -> bool:
        return bool(self.aggs)


def _time(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        micros = parse_iso_scalar(text)
        if micros is None:
            raise QueryError(f"{name!r} must be ISO 8601 or epoch seconds, not {raw[:60]!r}", where=name) from None
        return micros
    micros_float = value * 1_000_000
    if not MIN_US <= micros_float <= MAX_US:
        raise QueryError(f"{name!r} is outside years 1 to 9999", where=name)
    return round(micros_float)


def _int(params: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw.strip()):
        raise QueryError(f"{name!r} must be an integer", where=name)
    value = int(raw)
    if not low <= value <= high:
        raise QueryError(f"{name!r} must be between {low} and {high}", where=name)
    return value


def _names(params: Mapping[str, str], name: str) -> list[str]:
    raw = params.get(name, "")
    return [part.strip() for part in raw.split(",") if part.strip()]


def _column(schema: Schema, name: str, param: str) -> Column:
    column = schema.get(name)
    if column is None:
        known = ", ".join(c.name for c in schema.columns) or "none"
        also = "; every row also has seq and time" if param == "fields" else ""
        raise QueryError(f"unknown field {name[:60]!r} in {param!r}; fields: {known}{also}", where=param)
    return column


def _agg(schema: Schema, text: str) -> Agg:
    fn, sep, field = text.partition(":")
    if fn not in AGG_FUNCTIONS:
        raise QueryError(f"unknown function {fn[:30]!r} in 'agg'; use one of {', '.join(AGG_FUNCTIONS)}", where="agg")
    if not sep:
        if fn != "count":
            raise QueryError(f"'{fn}' needs a field: '{fn}:<field>'", where="agg")
        return Agg("count", None)
    column = _column(schema, field.strip(), "agg")
    if fn in ("avg", "sum") and column.type not in NUMERIC:
        raise QueryError(f"'{fn}' needs a numeric field; {column.name!r} is {column.type}", where="agg")
    if fn in ("min", "max", "first", "last") and column.type not in _ORDERED:
        raise QueryError(f"'{fn}' does not apply to {column.type} field {column.name!r}", where="agg")
    return Agg(fn, column)


def _filters(params: Mapping[str, str], schema: Schema) -> tuple[Filter, ...]:
    raw = params.get("filter", "")
    if not raw.strip():
        return ()
    parts = [part for part in raw.split(";") if part.strip()]
    if len(parts) > MAX_FILTER_FIELDS:
        raise QueryError(f"'filter' takes at most {MAX_FILTER_FIELDS} fields", where="filter")
    filters: list[Filter] = []
    for part in parts:
        name, sep, values_text = part.partition(":")
        if not sep:
            raise QueryError("'filter' must look like device:sensor-1,sensor-2", where="filter")
        column = _column(schema, name.strip(), "filter")
        if column.type not in _FILTERABLE:
            raise QueryError(f"'filter' applies to string and int fields; {column.name!r} is {column.type}",
                             where="filter")
        if any(f.column == column for f in filters):
            raise QueryError(f"'filter' names {column.name!r} twice", where="filter")
        values = values_text.split(",")
        if not 1 <= len(values) <= MAX_FILTER_VALUES:
            raise QueryError(f"'filter' takes 1 to {MAX_FILTER_VALUES} values per field", where="filter")
        if any(len(v) > MAX_FILTER_VALUE_CHARS for v in values):
            raise QueryError(f"a 'filter' value is longer than {MAX_FILTER_VALUE_CHARS} characters", where="filter")
        if column.type == "int":
            if not all(re.fullmatch(r"-?[0-9]{1,19}", v.strip()) for v in values):
                raise QueryError(f"'filter' on int field {column.name!r} takes integers", where="filter")
            filters.append(Filter(column, tuple(dict.fromkeys(int(v) for v in values))))
        else:
            filters.append(Filter(column, tuple(dict.fromkeys(values))))
    return tuple(filters)


def parse_query(params: Mapping[str, str], schema: Schema) -> Query:
    """Check the query parameters against `schema`; QueryError names the first bad one."""
    known = {"from", "to", "fields", "limit", "order", "after", "bucket", "agg", "by", "filter", "token"}
    for name in params:
        if name not in known:
            raise QueryError(f"unknown parameter {name[:40]!r}; known: {', '.join(sorted(known - {'token'}))}",
                             where=name)
    start, end = _time(params, "from"), _time(params, "to")
    if start is not None and end is not None and start > end:
        raise QueryError("'from' is after 'to'", where="from")
    filters = _filters(params, schema)
    aggs = tuple(_agg(schema, part) for part in _names(params, "agg"))
    if len(aggs) > MAX_AGGS:
        raise QueryError(f"at most {MAX_AGGS} aggregates", where="agg")
    if len({a.name for a in aggs}) != len(aggs):
        raise QueryError("an aggregate is listed twice", where="agg")
    bucket_us = None
    if raw_bucket := params.get("bucket"):
        match = _BUCKET.match(raw_bucket.strip())
        if not match:
            raise QueryError(f"'bucket' must look like 10s, 1m, 1h or 1d, not {raw_bucket[:30]!r}", where="bucket")
        bucket_us = int(match.group(1)) * _UNIT_US[match.group(2)]
        if bucket_us > MAX_US - MIN_US:
            raise QueryError("'bucket' is longer than all of time", where="bucket")
        if not aggs:
            raise QueryError("'bucket' needs 'agg' (e.g. agg=avg:temp_c or agg=count)", where="bucket")
        if start is not None and end is not None and end > start:
            buckets = (end - 1) // bucket_us - start // bucket_us + 1
            if buckets > MAX_BUCKETS:
                raise QueryLimitError(
                    f"bucket={raw_bucket.strip()} over this range makes {buckets:,} buckets, more than "
                    f"{MAX_BUCKETS:,}: use a wider bucket or a shorter range", where="bucket")
    by = tuple(_column(schema, name, "by") for name in _names(params, "by"))
    if by and not aggs:
        raise QueryError("'by' needs 'agg'", where="by")
    if len(by) > MAX_BY or len(set(by)) != len(by):
        raise QueryError(f"'by' takes up to {MAX_BY} different fields", where="by")
    for column in by:
        if column.type == "json":
            raise QueryError(f"cannot group by json field {column.name!r}", where="by")
        taken = (["bucket"] if bucket_us is not None else []) + [a.name for a in aggs]
        if column.name in taken:
            raise QueryError(f"'by' field {column.name!r} would have the same name as another column of the "
                             f"answer ({'the bucket' if column.name == 'bucket' else 'an aggregate'}); "
                             "query it in a separate call or rename the field", where="by")
    if aggs:
        for name in ("fields", "after", "order"):
            if params.get(name):
                raise QueryError(f"{name!r} applies to raw rows, not to aggregates", where=name)
        return Query(start_us=start, end_us=end, limit=_int(params, "limit", MAX_LIMIT, 1, MAX_LIMIT) or MAX_LIMIT,
                     bucket_us=bucket_us, aggs=aggs, by=by, filters=filters)
    # Every row has `seq` and `time`: asking for them is asking for no other field.
    named = _names(params, "fields")
    fields = tuple(_column(schema, name, "fields") for name in named if name not in ("seq", "time"))
    fields = fields if named else schema.columns
    order = params.get("order", "asc") or "asc"
    if order not in ("asc", "desc"):
        raise QueryError("'order' must be asc or desc", where="order")
    return Query(start_us=start, end_us=end, fields=fields,
                 limit=_int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT) or DEFAULT_LIMIT,
                 order=order, after=_int(params, "after", None, 0, 2**63 - 1),  # type: ignore[arg-type]
                 filters=filters)


def iso(micros: int) -> str:
    """UTC microseconds as ISO 8601 with a Z (no fraction when it is zero)."""
    value = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=micros)
    return value.isoformat().replace("+00:00", "Z")
