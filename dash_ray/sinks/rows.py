"""Mapped Arrow rows as the records a sink keeps (`rows_as_json`): each row's `{"seq", "time",
"data"}` as JSON, the shape of `dash_ray.live.records`, with its group.

Made a column at a time: timestamps become ISO 8601 text in Arrow (a cast to string, then the
`T`, the `Z` and a zero fraction fixed; Arrow's `strftime` is a hundred times slower) and the other
columns Python values (`to_pylist` of a column), so no `datetime` is made per value (what
`Table.to_pylist` does, with its time zone, at several microseconds a value: the dearest step
of a sink's share of the pipeline's process before)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.mapping.timestamps import TIMESTAMP

__all__ = ["rows_as_json"]

_FIXED = ("seq", "time")
_NAIVE = pa.timestamp("us")


def _values(column: pa.ChunkedArray, *, json: bool) -> list[Any]:
    if pa.types.is_timestamp(column.type):
        array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        if array.type != TIMESTAMP:
            array = array.cast(TIMESTAMP)
        return _iso(array).to_pylist()  # type: ignore[no-any-return]
    values = column.to_pylist()
    if json:
        return [None if v is None else orjson.Fragment(v) for v in values]
    return values  # type: ignore[no-any-return]


def _iso(timestamps: pa.Array) -> pa.Array:
    """timestamp[us, UTC] as `2024-05-01T12:00:00Z`, with `.123456` when there is a fraction
    (what orjson and `datetime.isoformat` write)."""
    # As naive timestamps (the same numbers: UTC): a cast of zoned ones converts each value.
    text = timestamps.view(_NAIVE).cast(pa.string())
    text = pc.replace_substring(pc.binary_join_element_wise(text, "Z", ""), " ", "T", max_replacements=1)
    return pc.replace_substring(text, ".000000Z", "Z")


def rows_as_json(rows: pa.Table, json_columns: frozenset[str],
                 group_of: Callable[[dict[str, Any]], str]) -> list[tuple[int, str, bytes]]:
    """Each row as (seq, its group (`group_of` its data), `{"seq", "time", "data"}` as JSON);
    timestamps as ISO 8601 with `Z` (a fraction only when there is one), json fields embedded
    as they are, nulls as null."""
    names = [n for n in rows.column_names if n not in _FIXED]
    seqs = rows.column("seq").to_pylist()
    times = _values(rows.column("time"), json=False)
    columns = [_values(rows.column(n), json=n in json_columns) for n in names]
    each = zip(*columns, strict=True) if columns else itertools.repeat(())
    dumps = orjson.dumps
    out = []
    for seq, time_, values in zip(seqs, times, each, strict=False):
        data = dict(zip(names, values, strict=True))
        out.append((seq, group_of(data), dumps({"seq": seq, "time": time_, "data": data})))
    return out
