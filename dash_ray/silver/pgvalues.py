"""What PostgreSQL cannot hold of the values the lake keeps, and how silver rows are made to
fit before they are copied.

PostgreSQL's text and jsonb cannot hold the character U+0000 (COPY refuses the row, and with
it the whole range); Dash stores U+FFFD (the replacement character) in its place, in strings,
json values and json keys alike. The lake keeps the value as it was sent, so a query answered
from the lake shows U+0000 where one answered from PostgreSQL shows U+FFFD. Everything else
the mapping can produce fits: strings are valid UTF-8 (a lone surrogate cannot reach a row:
the JSON parser refuses it), timestamps lie in years 1 to 9999, doubles (NaN and infinities
included) and 64-bit integers map to PostgreSQL's types exactly, and JSON numbers are finite.
A row PostgreSQL refuses anyway (a constraint added to the table by hand) is left out by the
store, with its reason (`dash_ray.silver.postgres`).

Rows stored before a spec widened a field (read back from the lake by a catch-up) hold the
field in its old type; they are converted as DuckDB converts them over the lake (`fit_types`),
so PostgreSQL holds what a query of the lake shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.silver.schema import Column

__all__ = ["REPLACEMENT", "fit_rows", "fit_types"]

REPLACEMENT = "\ufffd"
_NUL = "\x00"
# U+0000 inside JSON text is always escaped; the escape of a backslash followed by `u0000`
# (`\\u0000`) matches too, and is left alone by parsing the value.
_JSON_NUL = "\\u0000"


def fit_types(rows: pa.Table, columns: Sequence[Column]) -> pa.Table:
    """`rows` with each column of a string field that holds another type (the field was
    widened since) cast to text as DuckDB casts it; the very same table when none does (an
    int column of a double field is left to the binary encoding, which rounds it alike)."""
    strings = {c.name for c in columns if c.type in ("string", "json")}
    stale = [name for name in rows.column_names if name in strings and not _is_text(rows.schema.field(name).type)]
    if not stale:
        return rows
    from dash_ray.silver.evolution import as_text  # DuckDB only on this rare path

    return as_text(rows, stale)


def _is_text(type_: pa.DataType) -> bool:
    return bool(pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_null(type_))


def fit_rows(rows: pa.Table, kinds: Mapping[str, str | None]) -> pa.Table:
    """`rows` with every U+0000 in string and json columns (by their Dash kind in `kinds`)
    replaced by U+FFFD; the very same table when none holds one (the usual case: one scan of
    each string column's bytes)."""
    columns = list(rows.columns)
    changed = False
    for i, name in enumerate(rows.column_names):
        column = columns[i]
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            continue
        json = kinds.get(name) == "json"
        if not pc.any(pc.match_substring(column, _JSON_NUL if json else _NUL)).as_py():
            continue
        columns[i] = _fit_json(column) if json else pc.replace_substring(column, _NUL, REPLACEMENT)
        changed = True
    return pa.Table.from_arrays(columns, schema=rows.schema) if changed else rows


def _fit_json(column: pa.ChunkedArray) -> pa.Array:
    return pa.array([text if text is None or _JSON_NUL not in text else _fit_text(text) for text in column.to_pylist()],
                    column.type)


def _fit_text(text: str) -> str:
    try:
        return orjson.dumps(_fit(orjson.loads(text))).decode()
    except orjson.JSONDecodeError:  # not JSON after all (a column of another kind): as text
        return text.replace(_JSON_NUL, "\\ufffd")


def _fit(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(_NUL, REPLACEMENT)
    if isinstance(value, list):
        return [_fit(v) for v in value]
    if isinstance(value, dict):
        return {_fit(k): _fit(v) for k, v in value.items()}
    return value
