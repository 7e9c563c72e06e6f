"""Mapped Arrow rows as the records a sink keeps (`rows_as_json`): each row's `{"seq", "time",
"data"}` as JSON, the shape of `dash_ray.live.records`, with its group (`grouping.group_key`).

Made a column at a time: timestamps become ISO 8601 text in Arrow (a cast to string, then the
`T`, the `Z` and a zero fraction fixed; Arrow's `strftime` is a hundred times slower) and the other
columns Python values (`to_pylist` of a column), so no `datetime` is made per value (what
`Table.to_pylist` does, with its time zone, at several microseconds a value: the dearest step
of a sink's share of the pipeline's process before)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.mapping.timestamps import TIMESTAMP

__all__ = ["rows_as_json"]

_FIXED = ("seq", "time")
_NAIVE = pa.timestamp("us")


def _values(column: pa.ChunkedArray) -> list[Any]:
    if pa.types.is_timestamp(column.type):
        return [v for chunk in column.chunks for v in _iso(chunk).to_pylist()]
    return column.to_pylist()  # type: ignore[no-any-return]


def _iso(timestamps: pa.Array) -> pa.Array:
    """timestamp[us, UTC] as `2024-05-01T12:00:00Z`, with `.123456` when there is a fraction
    (what orjson and `datetime.isoformat` write)."""
    if timestamps.type != TIMESTAMP:
        timestamps = timestamps.cast(TIMESTAMP)
    # As naive timestamps (the same numbers: UTC): a cast of zoned ones converts each value.
    text = timestamps.view(_NAIVE).cast(pa.string())
    text = pc.replace_substring(pc.binary_join_element_wise(text, "Z", ""), " ", "T", max_replacements=1)
    return pc.replace_substring(text, ".000000Z", "Z")


def rows_as_json(rows: pa.Table, json_columns: frozenset[str],
                 group_by: Sequence[str] | None = None) -> list[tuple[int, str, bytes]]:
    """Each row as (seq, its group, `{"seq", "time", "data"}` as JSON); timestamps as ISO 8601
    with `Z` (a fraction only when there is one), json fields embedded as they are, nulls as
    null. The group is `""` without `group_by` (a webhook's one batch), else the JSON list of
    the row's `group_by` values (`grouping.group_key`: a json field's text as a string)."""
    names = [n for n in rows.column_names if n not in _FIXED]
    seqs = rows.column("seq").to_pylist()
    times = _values(rows.column("time"))
    raw = {n: _values(rows.column(n)) for n in names}
    columns = [[None if v is None else orjson.Fragment(v) for v in raw[n]] if n in json_columns else raw[n]
               for n in names]
    dumps = orjson.dumps
    if group_by:
        none = [None] * len(seqs)
        groups: Iterable[str] = (dumps(list(key)).decode()
                                 for key in zip(*(raw.get(n, none) for n in group_by), strict=True))
    else:
        groups = itertools.repeat("")
    each = zip(*columns, strict=True) if columns else itertools.repeat(())
    # `.decode().encode()`: orjson's bytes are a block of its output buffer's size, resized;
    # thousands of them kept at once cost several times the encoding (the allocator's work,
    # measured: 1 to 5 µs a record), where a compact copy of each costs a tenth of a µs.
    return [(seq, grp, dumps({"seq": seq, "time": time_, "data": dict(zip(names, values, strict=True))}
                             ).decode().encode())
            for seq, time_, values, grp in zip(seqs, times, each, groups, strict=False)]
