"""The SQLite catalog backend: one file under `$DASH_HOME`, one connection behind a lock.

WAL journal mode lets other processes (the CLI) read while the registry writes;
`synchronous=FULL` makes each commit survive a power cut, which matters because a secret is
handed to the user as soon as its transaction commits. The file is created with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dash_ray.errors import InternalError, UnavailableError

__all__ = ["SqliteBackend"]

T = TypeVar("T")

_BASELINE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pipelines ("
    " id TEXT PRIMARY KEY, spec TEXT NOT NULL, status TEXT NOT NULL,"
    " restarts INTEGER NOT NULL DEFAULT 0, last_error TEXT, version INTEGER NOT NULL,"
    " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pipeline_secrets ("
    " pipeline_id TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,"
    " seq INTEGER NOT NULL, ciphertext BLOB NOT NULL, valid_until TEXT,"
    " created_at TEXT NOT NULL, PRIMARY KEY (pipeline_id, seq))",
    "CREATE TABLE IF NOT EXISTS tokens ("
    " id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL, hash TEXT NOT NULL,"
    " created_at TEXT NOT NULL, revoked_at TEXT)",
)


class SqliteBackend:
    """A catalog in the SQLite file at `path` (its folder is created)."""

    migrations: tuple[tuple[str, ...], ...] = (
        _BASELINE,
        # 2: dashboards, each the JSON of its validated model.
        ("CREATE TABLE dashboards (id TEXT PRIMARY KEY, body TEXT NOT NULL, version INTEGER NOT NULL,"
         " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",),
        # 3: named secrets for sources and sinks, encrypted like ingest secrets.
        ("CREATE TABLE named_secrets (name TEXT PRIMARY KEY, ciphertext BLOB NOT NULL,"
         " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)",),
        # 4: page sessions (dash_ray/auth/sessions.py), by the hash of their id.
        ("CREATE TABLE sessions (hash TEXT PRIMARY KEY, token_id TEXT NOT NULL, token_hash TEXT NOT NULL,"
         " created_at TEXT NOT NULL, last_seen_at TEXT NOT NULL, expires_at TEXT NOT NULL)",
         "CREATE INDEX sessions_token ON sessions (token_id)"),
    )

    def __init__(self, path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Private from its first byte: it holds token hashes and encrypted secrets.
            # SQLite gives the -wal and -shm files the same mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise UnavailableError(f"catalog {self!r} cannot be opened: {exc}") from exc
        try:
            mode = _journal_mode_wal(conn, busy_timeout_s)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            conn.close()
            raise UnavailableError(f"catalog {self!r} cannot be opened: {exc}") from exc
        if mode != "wal":
            conn.close()
            raise UnavailableError(f"catalog {self!r} cannot use WAL journal mode (got {mode!r})")
        self._conn: sqlite3.Connection | None = conn

    def __repr__(self) -> str:
        return f"sqlite:{self.path}"

    def run(self, work: Callable[[_Transaction], T], *, exclusive: bool = False) -> T:
        # Every transaction takes the write lock up front (BEGIN IMMEDIATE): a read that
        # later writes can then never fail on a lock upgrade. `exclusive` needs nothing more.
        with self._lock:
            conn = self._conn
            if conn is None:
                raise InternalError(f"catalog {self!r} is closed")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(_Transaction(conn))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                # Busy past the timeout, disk full, I/O: the caller may try again later.
                raise UnavailableError(f"catalog {self!r}: {exc}") from exc
            except sqlite3.Error as exc:
                raise InternalError(f"catalog {self!r}: {type(exc).__name__}: {exc}") from exc
            return result

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, [_param(p) for p in params]).fetchall()


def _param(value: Any) -> Any:
    # Fixed-width UTC text, so stored times also sort correctly as strings.
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")
    return value


def _journal_mode_wal(conn: sqlite3.Connection, timeout_s: float) -> str:
    """Switch to WAL. Switching needs a moment's exclusive lock, and SQLite answers "locked"
    at once instead of waiting when another connection opens the file at the same time, so
    this waits and tries again, up to the busy timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
