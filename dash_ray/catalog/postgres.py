"""The PostgreSQL catalog backend (`DASH_PG_DSN`): tables in their own schema (`dash` by
default) so they never meet a user's tables; one connection behind a lock, opened again once
when it has dropped.

A transaction that fails because the connection dropped before its commit is run again on a
new connection; one that drops during its commit is not (it may have committed), and the
caller gets UnavailableError.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dash_ray.errors import InternalError, UnavailableError

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:  # pragma: no cover - psycopg is a dependency of dash-ray
    raise ImportError("the PostgreSQL catalog needs psycopg: pip install 'psycopg[binary]'") from exc

__all__ = ["PostgresBackend"]

T = TypeVar("T")

_SCHEMA_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _baseline(schema: str) -> tuple[str, ...]:
    return (
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)",
        "CREATE TABLE IF NOT EXISTS pipelines ("
        " id TEXT PRIMARY KEY, spec JSONB NOT NULL, status TEXT NOT NULL,"
        " restarts INTEGER NOT NULL DEFAULT 0, last_error TEXT, version BIGINT NOT NULL,"
        " created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",
        "CREATE TABLE IF NOT EXISTS pipeline_secrets ("
        " pipeline_id TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,"
        " seq INTEGER NOT NULL, ciphertext BYTEA NOT NULL, valid_until TIMESTAMPTZ,"
        " created_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (pipeline_id, seq))",
        "CREATE TABLE IF NOT EXISTS tokens ("
        " id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL, hash TEXT NOT NULL,"
        " created_at TIMESTAMPTZ NOT NULL, revoked_at TIMESTAMPTZ)",
    )


class PostgresBackend:
    """A catalog in schema `schema` of the database at `dsn`."""

    def __init__(self, dsn: str, *, schema: str = "dash", connect_timeout_s: float = 10.0) -> None:
        if not _SCHEMA_PATTERN.match(schema):
            raise ValueError(f"schema {schema!r} must match {_SCHEMA_PATTERN.pattern}")
        self._dsn = dsn
        self.schema = schema
        self._connect_timeout_s = connect_timeout_s
        self._where = _describe(dsn, schema)
        # Two processes opening the same catalog take turns at creating its tables.
        self._migration_lock_key = zlib.crc32(f"dash.catalog.{schema}".encode())
        self.migrations: tuple[tuple[str, ...], ...] = (
            _baseline(schema),
            # 2: specs as the text they were given; JSONB reorders keys, and the order of
            # a mapping's fields is part of the spec.
            ("ALTER TABLE pipelines ALTER COLUMN spec TYPE TEXT USING spec::text",),
            # 3: dashboards, each the JSON of its validated model.
            ("CREATE TABLE dashboards (id TEXT PRIMARY KEY, body TEXT NOT NULL, version BIGINT NOT NULL,"
             " created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",),
            # 4: named secrets for sources and sinks, encrypted like ingest secrets.
            ("CREATE TABLE named_secrets (name TEXT PRIMARY KEY, ciphertext BYTEA NOT NULL,"
             " created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",),
            # 5: page sessions (dash_ray/auth/sessions.py), by the hash of their id.
            ("CREATE TABLE sessions (hash TEXT PRIMARY KEY, token_id TEXT NOT NULL, token_hash TEXT NOT NULL,"
             " created_at TIMESTAMPTZ NOT NULL, last_seen_at TIMESTAMPTZ NOT NULL,"
             " expires_at TIMESTAMPTZ NOT NULL)",
             "CREATE INDEX sessions_token ON sessions (token_id)"),
        )
        self._lock = threading.Lock()
        self._closed = False
        self._conn: psycopg.Connection[Any] = self._connect()

    def __repr__(self) -> str:
        return self._where

    def run(self, work: Callable[[_Transaction], T], *, exclusive: bool = False) -> T:
        with self._lock:
            if self._closed:
                raise InternalError(f"catalog {self._where} is closed")
            for attempt in (1, 2):
                conn = self._conn
                if conn.closed or conn.broken:
                    self._conn = conn = self._connect()
                committing = False
                try:
                    with conn.transaction():
                        if exclusive:
                            conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._migration_lock_key,))
                        result = work(_Transaction(conn))
                        committing = True
                    return result
                except psycopg.OperationalError as exc:
                    if conn.broken and not committing and attempt == 1:
                        continue  # dropped before the commit: nothing was written; again
                    outcome = " (it may have been committed)" if committing else ""
                    raise UnavailableError(
                        f"catalog {self._where}: {_reason(exc)}{outcome}"
                    ) from exc
                except psycopg.Error as exc:
                    raise InternalError(f"catalog {self._where}: {_reason(exc)}") from exc
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=max(1, round(self._connect_timeout_s))
            )
        except psycopg.Error as exc:
            raise UnavailableError(f"catalog {self._where} unreachable: {_reason(exc)}") from exc
        try:
            # Every statement names tables unqualified; the schema comes from here.
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        except psycopg.Error as exc:
            conn.close()
            raise UnavailableError(f"catalog {self._where}: {_reason(exc)}") from exc
        return conn


class _Transaction:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql_text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._conn.execute(sql_text.replace("?", "%s"), tuple(params))
        return cursor.fetchall() if cursor.description is not None else []


def _reason(exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__


def _describe(dsn: str, schema: str) -> str:
    """The DSN without its password, for messages and repr()."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:
        return f"postgresql (unparsable DSN), schema {schema}"
    user = f"{info['user']}@" if info.get("user") else ""
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{host}{port}/{info.get('dbname') or ''} (schema {schema})"
