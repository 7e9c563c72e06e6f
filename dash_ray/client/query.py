"""The SDK's side of `GET /v1/pipelines/{id}/query`: its arguments as the API's parameters
(times as ISO 8601 text, lists joined), and its answers as Arrow tables typed by the
pipeline's spec (`Client.query_table`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FilterArg", "TimeArg", "answer_table", "filter_param", "query_params", "table_columns", "time_param"]

TimeArg = dt.datetime | str | float | int | None


def time_param(value: TimeArg) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("give a timezone-aware datetime (e.g. datetime.now(timezone.utc))")
        return value.isoformat()
    return str(value)


def _names(value: Sequence[str] | str | None) -> list[str]:
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else value
    return [part.strip() for part in parts if part.strip()]


def _listed(value: Sequence[str] | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return ",".join(value)


FilterArg = Mapping[str, Sequence[str | int] | str | int] | str | None


def filter_param(value: FilterArg) -> str | None:
    """`{"device": ["a", "b"], "n": 3}` as the API's `filter=device:a,b;n:3` (text as is)."""
    if value is None or isinstance(value, str):
        return value
    parts = []
    for name, values in value.items():
        listed = [values] if isinstance(values, (str, int)) else list(values)
        parts.append(f"{name}:{','.join(str(v) for v in listed)}")
    return ";".join(parts) or None


def query_params(start: TimeArg, end: TimeArg, fields: Sequence[str] | str | None, bucket: str | None,
                 agg: Sequence[str] | str | None, by: Sequence[str] | str | None, limit: int | None,
                 order: str | None, after: int | None, where: FilterArg = None) -> dict[str, Any]:
    params = {"from": time_param(start), "to": time_param(end), "fields": _listed(fields), "bucket": bucket,
              "agg": _listed(agg), "by": _listed(by), "limit": limit, "order": order, "after": after,
              "filter": filter_param(where)}
    return {k: v for k, v in params.items() if v is not None}


def table_columns(field_types: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, str]:
    """The columns a query answers, in order, each with its Dash type (`int`, `double`,
    `timestamp`, ...): `seq`, `time` and the fields for raw rows; `bucket`, the `by` fields
    and one column per aggregate otherwise. `field_types`: the pipeline's queryable fields."""
    aggs = _names(options.get("agg"))
    if not aggs:
        wanted = [n for n in _names(options.get("fields")) if n not in ("seq", "time")]
        if not _names(options.get("fields")):
            wanted = list(field_types)
        return {"seq": "int", "time": "timestamp", **{n: field_types.get(n, "json") for n in wanted}}
    columns = {"bucket": "timestamp"} if options.get("bucket") else {}
    columns.update({n: field_types.get(n, "json") for n in _names(options.get("by"))})
    for text in aggs:
        fn, _, field = text.partition(":")
        field = field.strip()
        if not field:
            columns["count"] = "int"
        elif fn == "count":
            columns[f"count_{field}"] = "int"
        elif fn == "avg":
            columns[f"avg_{field}"] = "double"
        elif fn == "sum":
            columns[f"sum_{field}"] = "int" if field_types.get(field) == "int" else "double"
        else:
            columns[f"{fn}_{field}"] = field_types.get(field, "json")
    return columns


def _arrow_type(dash_type: str) -> pa.DataType:
    import pyarrow as pa

    return {"string": pa.string(), "int": pa.int64(), "double": pa.float64(), "bool": pa.bool_(),
            "timestamp": pa.timestamp("us", tz="UTC")}.get(dash_type, pa.string())


def answer_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> pa.Table:
    """`rows` as a pyarrow Table with a column per entry of `columns` (a column the rows have
    beyond them is kept, its type inferred): timestamps as timestamp[us, UTC], json values as
    JSON text, and a column that holds only nulls still of its field's type."""
    import pyarrow as pa

    names = list(columns) + [n for n in dict.fromkeys(k for row in rows for k in row) if n not in columns]
    arrays, fields = [], []
    for name in names:
        values = [row.get(name) for row in rows]
        dash_type = columns.get(name)
        if dash_type is None:
            array = pa.array(values)
        elif dash_type == "timestamp":
            array = pa.array(values, pa.string()).cast(_arrow_type("timestamp"))
        elif dash_type == "json":
            array = pa.array([None if v is None else orjson.dumps(v).decode() for v in values], pa.string())
        elif dash_type == "double":
            array = pa.array([None if v is None else float(v) for v in values], pa.float64())
        else:
            array = pa.array(values, _arrow_type(dash_type))
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
