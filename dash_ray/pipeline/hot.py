"""The hot cache: a pipeline's newest mapped records, kept in memory in sequence order.

Bounded: holding `capacity` records, adding one drops the oldest. Only records that are
already durable are added, so what a reader sees here is never lost later.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import deque
from typing import Any

import orjson
import pyarrow as pa

__all__ = ["HotBuffer", "rows_to_records"]

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


class HotBuffer:
    """The newest `capacity` records, oldest first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._records: deque[dict[str, Any]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def last_seq(self) -> int:
        return self._records[-1]["seq"] if self._records else 0

    def extend(self, records: list[dict[str, Any]]) -> None:
        """Append records in ascending seq order (older ones are dropped past capacity)."""
        if len(records) > self.capacity:
            records = records[-self.capacity:]
        self._records.extend(records)

    def since(self, after: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Records with seq > `after` (all when None), oldest first, at most `limit` of them:
        the oldest `limit` after `after` when `after` is given (a reader catching up), else the
        newest `limit`."""
        records = list(self._records)
        if after is not None:
            start = bisect.bisect_right(records, after, key=lambda r: r["seq"])
            records = records[start:]
            return records if limit is None else records[:limit]
        if limit is None:
            return records
        return records[-limit:] if limit > 0 else []
