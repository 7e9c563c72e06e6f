"""PostgreSQL's binary COPY format, built from Arrow columns with numpy: no per-row Python, and
on the server no text to parse (timestamps and doubles cost most as text). See
https://www.postgresql.org/docs/current/sql-copy.html (Binary Format).

Layout: an 11-byte signature, a 4-byte flags field and a 4-byte header extension length, then
per row a 2-byte field count and per field a 4-byte length (-1 for NULL) and its bytes, all
integers big-endian; a 2-byte -1 ends the data. Values per PostgreSQL type:
bigint 8 bytes, double precision 8 bytes (IEEE 754), boolean 1 byte, timestamptz 8 bytes of
microseconds since 2000-01-01 UTC, text its UTF-8 bytes, jsonb a version byte (1) then text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["encode"]

_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
_FIXED = {"int": (pa.int64(), ">i8"), "double": (pa.float64(), ">f8"), "timestamp": (pa.int64(), ">i8"),
          "bool": (pa.uint8(), "u1")}
_TIMESTAMP = pa.timestamp("us", tz="UTC")
_Payload = np.ndarray | tuple[np.ndarray, np.ndarray, int]


def encode(table: pa.Table, types: Sequence[str]) -> bytes:
    """The binary COPY body of `table`, whose columns have the Dash types `types` (`int`,
    `double`, `bool`, `timestamp`, `string`, `json`), in the table's column order. Arrow
    values are cast to the type's Arrow form first (an unsafe cast raises ArrowInvalid)."""
    n = table.num_rows
    columns = [_prepared(table.column(i), t) for i, t in enumerate(types)]
    row_len = np.full(n, 2, dtype=np.int64)
    for _, size, _, _ in columns:
        row_len += 4 + size
    starts = np.empty(n, dtype=np.int64)
    if n:
        starts[0] = len(_HEADER)
        np.cumsum(row_len[:-1], out=starts[1:])
        starts[1:] += len(_HEADER)
    total = len(_HEADER) + int(row_len.sum()) + len(_TRAILER)
    buf = np.empty(total, dtype=np.uint8)
    buf[:len(_HEADER)] = np.frombuffer(_HEADER, dtype=np.uint8)
    buf[total - 2:] = 0xFF
    _scatter(buf, starts, np.full(n, len(types), dtype=">i2").view(np.uint8).reshape(n, 2))
    pos = starts + 2
    for _, size, valid, payload in columns:
        lengths = np.where(valid, size, -1).astype(">i4")
        _scatter(buf, pos, lengths.view(np.uint8).reshape(n, 4))
        data = pos + 4
        if isinstance(payload, np.ndarray):  # a fixed-width column
            if valid.all():
                _scatter(buf, data, payload)
            else:
                _scatter(buf, data[valid], payload[valid])
        else:
            offsets, chars, prefix = payload
            if prefix:  # jsonb's version byte
                buf[data[valid]] = 1
                data = data + 1
            _copy_strings(buf, data, offsets, chars, np.where(valid, size - prefix, 0))
        pos = pos + 4 + size
    return buf.tobytes()


def _prepared(column: pa.ChunkedArray, kind: str) -> tuple[str, np.ndarray, np.ndarray, _Payload]:
    """(`fixed` or `var`, data bytes per row (0 for NULL), validity, payload) of one column:
    a fixed column's payload is its bytes, n rows by width; a var one's (offsets, chars, prefix)."""
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(array)
    valid = np.ones(n, dtype=bool) if array.null_count == 0 else array.is_valid().to_numpy(zero_copy_only=False)
    if kind in _FIXED:
        arrow_type, dtype = _FIXED[kind]
        if kind == "timestamp":
            array = pc.cast(array, _TIMESTAMP).cast(pa.int64())
        elif kind == "bool":
            array = pc.cast(array, pa.bool_()).cast(pa.uint8())
        elif kind == "double" and pa.types.is_integer(array.type):
            # Rounded to the nearest double, as DuckDB and PostgreSQL read an int as a double
            # (Arrow's safe cast refuses integers past 2^53).
            array = pc.cast(array, arrow_type, safe=False)
        else:
            array = pc.cast(array, arrow_type)
        values = pc.fill_null(array, 0).to_numpy(zero_copy_only=False)
        if kind == "timestamp":
            values = values - _PG_EPOCH_US
        width = np.dtype(dtype).itemsize
        payload = values.astype(dtype).view(np.uint8).reshape(n, width)
        return "fixed", np.where(valid, width, 0).astype(np.int64), valid, payload
    array = pc.cast(array, pa.string())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset:array.offset + n + 1].astype(np.int64)
    data = array.buffers()[2]
    chars = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    lengths = np.where(valid, np.diff(offsets), 0)
    prefix = 1 if kind == "json" else 0
    return "var", (lengths + prefix * valid).astype(np.int64), valid, (offsets, chars, prefix)


def _scatter(buf: np.ndarray, at: np.ndarray, rows: np.ndarray) -> None:
    """Write `rows[i]` (fixed-width byte rows) at `buf[at[i]:]`."""
    if len(at):
        buf[at[:, None] + np.arange(rows.shape[1])] = rows


def _copy_strings(buf: np.ndarray, at: np.ndarray, offsets: np.ndarray, chars: np.ndarray,
                  lengths: np.ndarray) -> None:
    """Copy string i's bytes (`chars[offsets[i]:offsets[i] + lengths[i]]`) to `buf[at[i]:]`."""
    total = int(lengths.sum())
    if not total:
        return
    # Position of each byte within its string, then its source and destination.
    firsts = np.cumsum(lengths) - lengths
    within = np.arange(total, dtype=np.int64) - np.repeat(firsts, lengths)
    buf[np.repeat(at, lengths) + within] = chars[np.repeat(offsets[:-1], lengths) + within]
