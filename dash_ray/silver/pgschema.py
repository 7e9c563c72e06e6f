"""Where a pipeline's silver rows live in PostgreSQL, shared by the store that writes them and
the engine that queries them: one table per pipeline in schema `dash_silver`, named by the
pipeline id, with `seq`, `time`, one typed column per mapped field, and jsonb for json fields
and extras; a btree on (time, seq), for time ranges and ordered paging. No BRIN on time
beside it: the btree answers every time filter a BRIN would, and a BRIN on an ever-growing
time updates its range summary (and logs it) for nearly every row, which made COPY into the
table about 20% slower here (benchmarks/silver.py); tables created with one keep it. The DDL is
idempotent; it adds columns, and retypes a column whose field a new spec version widened
(`retype_columns`: int to double, any scalar to string, the old values converted to the very
text DuckDB shows for them over the lake, so both stores answer alike).

When the TimescaleDB extension is installed in the database, a new table is made a hypertable
on `time` instead. A hypertable's unique indexes must hold its partitioning column, so there
`seq` is indexed but not a primary key: a range is still never doubled, because every write
deletes its range before it copies, under the pipeline's lock, in one transaction. (Untested
here: the extension is not installed on the development machine.) An existing plain table
is left as it is.

Beside the tables, `dash_silver._progress` keeps per pipeline the highest seq written, in the
write's transaction, so ranges whose records were all dead or filtered count too, and how many
rows PostgreSQL refused (`refused`); `dash_silver._refused` holds each refused row's seq, time
and reason. (Their names start with `_`, which a pipeline id cannot, so no pipeline's table
can take them.)"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from psycopg import sql

from dash_ray.query.model import Column

__all__ = ["PG_TYPES", "PROGRESS", "REFUSED", "SCHEMA", "add_columns", "create_table", "present_columns",
           "retype_columns", "table"]

SCHEMA = "dash_silver"
PROGRESS = sql.Identifier(SCHEMA, "_progress")
REFUSED = sql.Identifier(SCHEMA, "_refused")
PG_TYPES = {"string": "text", "int": "bigint", "double": "double precision", "bool": "boolean",
            "timestamp": "timestamptz", "json": "jsonb"}
_PIPELINE_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def table(pipeline_id: str) -> sql.Composed:
    """The pipeline's silver table, quoted (ids are `[a-z][a-z0-9-]{0,62}`, so they fit)."""
    if not _PIPELINE_ID.match(pipeline_id):
        raise ValueError(f"not a pipeline id: {pipeline_id!r}")
    return sql.Identifier(SCHEMA, pipeline_id)


def create_table(pipeline_id: str, columns: Iterable[Column], *, timescale: bool = False) -> list[sql.Composed]:
    """Statements that create the table (and schema, progress table, indexes) when missing and
    add any column it lacks; with `timescale`, a new table becomes a hypertable on `time`.
    Run them in one transaction."""
    name = table(pipeline_id)
    statements = [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (pipeline text PRIMARY KEY, stored_seq bigint NOT NULL)").format(
            PROGRESS),
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS refused bigint NOT NULL DEFAULT 0").format(PROGRESS),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (pipeline text, seq bigint, time timestamptz, reason text NOT NULL,"
                " PRIMARY KEY (pipeline, seq))").format(REFUSED),
    ]
    if timescale:
        statements += [
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (seq bigint NOT NULL, time timestamptz NOT NULL)").format(name),
            sql.SQL("SELECT create_hypertable({}::regclass, by_range('time'), if_not_exists => TRUE)").format(
                sql.Literal(f'{SCHEMA}."{pipeline_id}"')),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (seq)").format(
                sql.Identifier(_index_name(pipeline_id, "seq")), name),
        ]
    else:
        statements.append(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (seq bigint PRIMARY KEY, time timestamptz NOT NULL)").format(name))
    statements.append(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (time, seq)").format(
        sql.Identifier(_index_name(pipeline_id, "time_seq")), name))
    return statements + add_columns(pipeline_id, columns)


def _index_name(pipeline_id: str, what: str) -> str:
    # Index names share the schema's namespace and 63 bytes: derive them from a digest.
    return f"silver_{hashlib.sha1(pipeline_id.encode()).hexdigest()[:16]}_{what}"


def add_columns(pipeline_id: str, columns: Iterable[Column]) -> list[sql.Composed]:
    return [sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
        table(pipeline_id), sql.Identifier(c.name), sql.SQL(PG_TYPES[c.type])) for c in columns]


# Old values as text, exactly as DuckDB casts them when it reads old and new lake files
# together: timestamps as `2026-05-01 12:00:00.5+00` (UTC, ISO: the statements run with those
# settings), doubles as Python's repr writes them (`_DOUBLE_TEXT`).
_AS_TEXT = {"bigint": "{}::text", "boolean": "{}::text", "timestamp with time zone": "{}::text",
            "double precision": "dash_silver._double_text({})"}
# Python's repr of a double: the fewest significant digits that read back as the same double,
# in fixed notation from 1e-4 to 1e16 (with `.0` when integral), else as `4.5e+16`; `nan`,
# `inf`. PostgreSQL's own text is shortest too, but for integral doubles past 2^53 it writes
# every digit (45997786075464896 for 4.59977860754649e+16): from 1e15 on, 15 and 16 digits are
# tried first (in plpgsql, slow; most values take the first branches, inlined into the ALTER).
_DOUBLE_TEXT = """CREATE OR REPLACE FUNCTION dash_silver._double_text(x float8) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN x = 'NaN'::float8 THEN 'nan' WHEN x = 'Infinity'::float8 THEN 'inf'
            WHEN x = '-Infinity'::float8 THEN '-inf'
            WHEN x = 0 THEN CASE WHEN x::text LIKE '-%' THEN '-0.0' ELSE '0.0' END
            -- Most values: PostgreSQL's text is Python's, but for the `.0` of an integral value.
            WHEN abs(x) < 1e-4 THEN x::text
            WHEN abs(x) < 1e15 THEN CASE WHEN x = trunc(x) THEN x::text || '.0' ELSE x::text END
            ELSE dash_silver._large_double_text(x) END
$$"""
_LARGE_DOUBLE_TEXT = """CREATE OR REPLACE FUNCTION dash_silver._large_double_text(x float8) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    exact numeric := x::text::numeric;
    shortest numeric := exact;
    candidate numeric;
    digits text;
    e int := dash_silver._exponent(exact);
BEGIN
    FOR n IN 15..16 LOOP
        candidate := round(exact, n - 1 - e);
        IF abs(candidate) <= 1.7976931348623157e308 AND candidate::float8 = x THEN
            shortest := candidate;
            EXIT;
        END IF;
    END LOOP;
    shortest := trim_scale(shortest);
    e := dash_silver._exponent(shortest);
    IF e < 16 THEN
        RETURN CASE WHEN strpos(shortest::text, '.') > 0 THEN shortest::text ELSE shortest::text || '.0' END;
    END IF;
    digits := rtrim(ltrim(replace(abs(shortest)::text, '.', ''), '0'), '0');
    RETURN CASE WHEN x < 0 THEN '-' ELSE '' END || left(digits, 1)
        || CASE WHEN length(digits) > 1 THEN '.' || substr(digits, 2) ELSE '' END
        || 'e+' || e;
END
$$"""
# The decimal exponent of a non-zero numeric (that of its first significant digit), from its
# digits: numeric's log() rounds 16.999... up to 17.
_EXPONENT = """CREATE OR REPLACE FUNCTION dash_silver._exponent(d numeric) RETURNS int
LANGUAGE sql IMMUTABLE STRICT AS $$
SELECT CASE WHEN abs(d) >= 1 THEN length(split_part(abs(d)::text, '.', 1)) - 1
            ELSE -(length(split_part(abs(d)::text, '.', 2)) - length(ltrim(split_part(abs(d)::text, '.', 2), '0')) + 1)
       END
$$"""
RETYPE_SETTINGS = ("SET LOCAL TimeZone = 'UTC'", "SET LOCAL DateStyle = 'ISO'", "SET LOCAL extra_float_digits = 1",
                   _EXPONENT, _LARGE_DOUBLE_TEXT, _DOUBLE_TEXT)


def retype_columns(pipeline_id: str, columns: Iterable[Column], present: dict[str, str]) -> list[sql.Composed]:
    """ALTERs for the columns whose table type (`present`: name to PostgreSQL type) is a type
    the field was widened from: bigint to double precision, or a scalar to text. Run them
    after `RETYPE_SETTINGS` (which also create the function they use), in one transaction."""
    statements = []
    for c in columns:
        old, wanted = present.get(c.name), PG_TYPES[c.type]
        if old is None or old == wanted:
            continue
        column = sql.Identifier(c.name)
        if wanted == "text" and old in _AS_TEXT:
            using = sql.SQL(_AS_TEXT[old]).format(column)
        elif (old, wanted) == ("bigint", "double precision"):
            using = sql.SQL("{}::double precision").format(column)
        else:
            continue  # not a widening: the deploy check refuses it; rows that do not fit are refused
        statements.append(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}").format(
            table(pipeline_id), column, sql.SQL(wanted), using))
    return statements


def present_columns() -> sql.Composed:
    """A query for the names of the table's columns; parameters: (schema, pipeline id)."""
    return sql.SQL("SELECT column_name FROM information_schema.columns"
                   " WHERE table_schema = %s AND table_name = %s")
