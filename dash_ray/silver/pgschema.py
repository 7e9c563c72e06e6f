"""Where a pipeline's silver rows live in PostgreSQL, shared by the store that writes them and
the engine that queries them: one table per pipeline in schema `dash_silver`, named by the
pipeline id, with `seq`, `time`, one typed column per mapped field, and jsonb for json fields
and extras; a BRIN index on time (cheap to keep up on append-mostly data) and a btree on
(time, seq) for ordered paging. The DDL is idempotent and only ever adds columns."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from psycopg import sql

from dash_ray.query.model import Column

__all__ = ["PG_TYPES", "SCHEMA", "add_columns", "create_table", "present_columns", "table"]

SCHEMA = "dash_silver"
PG_TYPES = {"string": "text", "int": "bigint", "double": "double precision", "bool": "boolean",
            "timestamp": "timestamptz", "json": "jsonb"}
_PIPELINE_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def table(pipeline_id: str) -> sql.Composed:
    """The pipeline's silver table, quoted (ids are `[a-z][a-z0-9-]{0,62}`, so they fit)."""
    if not _PIPELINE_ID.match(pipeline_id):
        raise ValueError(f"not a pipeline id: {pipeline_id!r}")
    return sql.Identifier(SCHEMA, pipeline_id)


def create_table(pipeline_id: str, columns: Iterable[Column]) -> list[sql.Composed]:
    """Statements that create the table (and schema, indexes) when missing and add any
    column it lacks. Run them in one transaction."""
    name = table(pipeline_id)
    statements = [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (seq bigint PRIMARY KEY, time timestamptz NOT NULL)").format(name),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING brin (time)").format(
            sql.Identifier(_index_name(pipeline_id, "time_brin")), name),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (time, seq)").format(
            sql.Identifier(_index_name(pipeline_id, "time_seq")), name),
    ]
    return statements + add_columns(pipeline_id, columns)


def _index_name(pipeline_id: str, what: str) -> str:
    # Index names share the schema's namespace and 63 bytes: derive them from a digest.
    return f"silver_{hashlib.sha1(pipeline_id.encode()).hexdigest()[:16]}_{what}"


def add_columns(pipeline_id: str, columns: Iterable[Column]) -> list[sql.Composed]:
    return [sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
        table(pipeline_id), sql.Identifier(c.name), sql.SQL(PG_TYPES[c.type])) for c in columns]


def present_columns() -> sql.Composed:
    """A query for the names of the table's columns; parameters: (schema, pipeline id)."""
    return sql.SQL("SELECT column_name FROM information_schema.columns"
                   " WHERE table_schema = %s AND table_name = %s")
