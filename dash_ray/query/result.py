"""The JSON shape of a query's answer, the same whichever engine ran it: times as ISO 8601
UTC with a Z, json fields parsed, exact integers for integer sums, `next` for paging."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Sequence
from typing import Any

import orjson

from dash_ray.query.model import Query, iso
from dash_ray.silver.schema import Column

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


def _convert(column_type: str | None, values: list[Any]) -> list[Any]:
    """A column of database values as the API shows them; each distinct value is converted
    once (buckets and group keys repeat a lot)."""
    plain = {int, str, bool, type(None)}
    if column_type in ("int", "string", "bool") and all(type(v) in plain for v in values):
        return values
    if column_type == "double" and all(type(v) is float and math.isfinite(v) or v is None for v in values):
        return values
    seen: dict[Any, Any] = {}
    out = []
    for value in values:
        try:
            converted = seen[value]
        except KeyError:
            converted = seen[value] = value_of(_COLUMN.get(column_type), value)
        except TypeError:  # unhashable (a json value already parsed)
            converted = value_of(_COLUMN.get(column_type), value)
        out.append(converted)
    return out


_COLUMN: dict[str | None, Column] = {t: Column("_", t)
                                     for t in ("string", "int", "double", "bool", "timestamp", "json")}


def _iso_column(values: list[int]) -> list[str]:
    seen: dict[int, str] = {}
    return [seen[v] if v in seen else seen.setdefault(v, iso(v)) for v in values]


def _records(names: list[str], columns: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def raw_answer(query: Query, rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Rows are (seq, time_us, *fields); one more than the limit means there is a next page."""
    more = len(rows) > query.limit
    page = rows[:query.limit]
    if not page:
        return {"rows": [], "next": None}
    columns = [list(c) for c in zip(*page, strict=True)]
    out_columns = [columns[0], _iso_column(columns[1])]
    out_columns += [_convert(c.type, values) for c, values in zip(query.fields, columns[2:], strict=True)]
    out = _records(["seq", "time", *(c.name for c in query.fields)], out_columns)
    return {"rows": out, "next": out[-1]["seq"] if more else None}


def aggregate_answer(query: Query, rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Rows are (bucket_us?, *by, *aggs) as `aggregate_sql` selects them."""
    if not rows:
        return {"rows": []}
    columns = [list(c) for c in zip(*rows, strict=True)]
    names: list[str] = []
    out: list[list[Any]] = []
    if query.bucket_us is not None:
        names.append("bucket")
        out.append(_iso_column(columns.pop(0)))
    for column in query.by:
        names.append(column.name)
        out.append(_convert(column.type, columns.pop(0)))
    for agg in query.aggs:
        values = columns.pop(0)
        names.append(agg.name)
        if agg.fn == "count":
            out.append([int(v or 0) for v in values])
        elif agg.fn == "avg":
            out.append(_convert("double", [None if v is None else float(v) for v in values]))
        else:
            out.append(_convert(agg.column.type if agg.column else None, values))
    return {"rows": _records(names, out)}


def live_records(columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows (seq, time_us, *columns) in the live feed's shape: `{"seq", "time", "data"}`."""
    if not rows:
        return []
    values = [list(c) for c in zip(*rows, strict=True)]
    times = _iso_column(values[1])
    data = _records([c.name for c in columns],
                    [_convert(c.type, v) for c, v in zip(columns, values[2:], strict=True)]) \
        if columns else [{} for _ in rows]
    return [{"seq": seq, "time": t, "data": d} for seq, t, d in zip(values[0], times, data, strict=True)]
