"""The JSON shape of a query's answer, the same whichever engine ran it: times as ISO 8601
UTC with a Z, json fields parsed, exact integers for integer sums, `next` for paging."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Sequence
from typing import Any

import orjson

from dash_ray.query.model import Column, Query, iso

__all__ = ["aggregate_answer", "raw_answer", "value_of"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _micros(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


def value_of(column: Column | None, value: Any) -> Any:
    """A database value as the API shows it for a column of that type."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return iso(_micros(value))
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if column is not None and column.type == "json" and isinstance(value, (str, bytes)):
        return orjson.loads(value)
    if column is not None and column.type == "double" and isinstance(value, int):
        return float(value)
    return value


def raw_answer(query: Query, rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Rows are (seq, time_us, *fields); one more than the limit means there is a next page."""
    more = len(rows) > query.limit
    out = []
    for row in rows[:query.limit]:
        record: dict[str, Any] = {"seq": row[0], "time": iso(row[1])}
        for column, value in zip(query.fields, row[2:], strict=True):
            record[column.name] = value_of(column, value)
        out.append(record)
    return {"rows": out, "next": out[-1]["seq"] if more and out else None}


def aggregate_answer(query: Query, rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Rows are (bucket_us?, *by, *aggs) as `aggregate_sql` selects them."""
    out = []
    for row in rows:
        values = list(row)
        record: dict[str, Any] = {}
        if query.bucket_us is not None:
            record["bucket"] = iso(values.pop(0))
        for column in query.by:
            record[column.name] = value_of(column, values.pop(0))
        for agg in query.aggs:
            value = values.pop(0)
            if agg.fn == "count":
                record[agg.name] = int(value or 0)
            elif agg.fn == "avg":
                record[agg.name] = None if value is None else value_of(None, float(value))
            else:
                record[agg.name] = value_of(agg.column, value)
        out.append(record)
    return {"rows": out}
