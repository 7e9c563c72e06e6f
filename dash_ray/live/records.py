"""A record as readers of a pipeline's newest records see it (the live feed, the hot cache):
`{"seq", "time", "data"}`, made from mapped Arrow rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pyarrow as pa

__all__ = ["rows_to_records"]

_FIXED = ("seq", "time")


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def rows_to_records(rows: pa.Table, json_columns: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Mapped Arrow rows as `{"seq", "time", "data"}` dicts, timestamps as ISO 8601 UTC and
    json columns parsed back into values."""
    names = [n for n in rows.column_names if n not in _FIXED]
    timestamps = {n for n in names if pa.types.is_timestamp(rows.schema.field(n).type)}
    seqs = rows.column("seq").to_pylist()
    times = rows.column("time").to_pylist()
    columns = {n: rows.column(n).to_pylist() for n in names}
    records = []
    for i, seq in enumerate(seqs):
        data: dict[str, Any] = {}
        for name in names:
            value = columns[name][i]
            if value is not None:
                if name in timestamps:
                    value = _iso(value)
                elif name in json_columns:
                    value = orjson.loads(value)
            data[name] = value
        time = times[i]
        records.append({"seq": seq, "time": _iso(time) if time is not None else None, "data": data})
    return records
