"""Where a pipeline's silver rows live in PostgreSQL, shared by the store that writes them and
the engine that queries them: one table per pipeline in schema `dash_silver`, named by the
pipeline id, with `seq`, `time`, one typed column per mapped field, and jsonb for json fields
and extras; a btree on (time, seq), for time ranges and ordered paging. No BRIN on time
beside it: the btree answers every time filter a BRIN would, and a BRIN on an ever-growing
time updates its range summary (and logs it) for nearly every row, which made COPY into the
table about 20% slower here (benchmarks/silver.py); tables created with one keep it. The DDL is
idempotent and adds columns; a column whose field a new spec version widened is retyped by
`pgretype.py`.

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

from dash_ray.silver.schema import Column

__all__ = ["PG_TYPES", "PROGRESS", "REFUSED", "SCHEMA", "add_columns", "create_table", "present_columns", "table"]

SCHEMA = "dash_silver"
PROGRESS = sql.Identifier(SCHEMA, "_progress")
REFUSED = sql.Identifier(SCHEMA, "_refused")
PG_TYPES = {"string": "text", "int": "bigint", "double": "double precision", "bool": "boolean",
            "timestamp": "timestamptz", "json": "jsonb"}
_PIPELINE_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def table(pipeline_id: str) -> sql.Identifier:
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


def present_columns() -> sql.SQL:
    """A query for the names of the table's columns; parameters: (schema, pipeline id)."""
    return sql.SQL("SELECT column_name FROM information_schema.columns"
                   " WHERE table_schema = %s AND table_name = %s")
