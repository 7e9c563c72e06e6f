"""The binary COPY body built from Arrow loads the same values as Arrow's CSV does: NULLs in
every type, empty and non-ASCII strings, quotes and newlines, NaN and -0.0, times before 2000
and before 1970, extreme integers, and arrays that are sliced or in several chunks."""

from __future__ import annotations

import io
import math
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from dash_ray.silver import pgbinary

TYPES = {"seq": ("int", "bigint"), "time": ("timestamp", "timestamptz"), "s": ("string", "text"),
         "d": ("double", "float8"), "i": ("int", "bigint"), "b": ("bool", "boolean"), "j": ("json", "jsonb")}


def sample() -> pa.Table:
    table = pa.table({
        "seq": pa.array(range(1, 8), pa.int64()),
        "time": pa.array([0, 946_684_800_000_000, 1_767_225_600_123_456, -5, None, 1, 2], pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "s": pa.array(["a", None, "", 'héllo, "x"\nnext', "日本", "\\N", "x" * 300]),
        "d": pa.array([1.5, None, float("nan"), -0.0, 1e308, -1e-300, 3.0]),
        "i": pa.array([None, -1, 2**63 - 1, -(2**63), 0, 7, 8], pa.int64()),
        "b": pa.array([True, False, None, True, False, None, True]),
        "j": pa.array(['{"a": 1}', None, "[1, 2]", '"x"', "null", "{}", '{"k": "日本"}']),
    })
    # Several chunks, one of them a slice with an offset.
    return pa.concat_tables([table.slice(0, 3), table.slice(3, 2), table.slice(5)])


def load(conn: psycopg.Connection[Any], name: str, copy: str, body: bytes) -> list[tuple[Any, ...]]:
    columns = ", ".join(f"{n} {pg}" for n, (_, pg) in TYPES.items())
    conn.execute(f"CREATE TEMP TABLE {name} ({columns})")
    with conn.cursor() as cursor, cursor.copy(f"COPY {name} FROM STDIN (FORMAT {copy})") as stream:
        stream.write(body)
    return conn.execute(f"SELECT * FROM {name} ORDER BY seq").fetchall()


def same(a: Any, b: Any) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or (
        a == b and type(a) is type(b) and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b)))


def test_binary_copy_loads_what_csv_loads(pg_dsn: str) -> None:
    table = sample()
    assert table.column("s").num_chunks == 3
    body = pgbinary.encode(table, [kind for kind, _ in TYPES.values()])
    csv = io.BytesIO()
    pacsv.write_csv(table, csv, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    with psycopg.connect(pg_dsn) as conn:
        binary_rows = load(conn, "from_binary", "binary", body)
        csv_rows = load(conn, "from_csv", "csv", csv.getvalue())
    assert len(binary_rows) == 7
    for got, expected in zip(binary_rows, csv_rows, strict=True):
        assert all(same(a, b) for a, b in zip(got, expected, strict=True)), (got, expected)
    assert binary_rows[4][1] is None and binary_rows[3][2] == 'héllo, "x"\nnext'


def test_an_empty_table_is_a_valid_body(pg_dsn: str) -> None:
    body = pgbinary.encode(sample().slice(0, 0), [kind for kind, _ in TYPES.values()])
    with psycopg.connect(pg_dsn) as conn:
        assert load(conn, "empty", "binary", body) == []
