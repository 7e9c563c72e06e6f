"""The write-ahead log of one pipeline in PostgreSQL: group commit in one statement, an owner
epoch that fences a stale writer, recovery, and trim by DELETE.

Two tables, shared by every pipeline's log in the database (created when missing):
- `dash_wal_owners (log, epoch, trimmed_seq)`: one row per log. `open()` raises the epoch by
  one and commits before it reads, so from then on an older owner can write nothing.
- `dash_wal_entries (log, seq, key, data)`: the entries, `seq` 1, 2, 3... per log, no gaps.

One writer thread owns the connection (autocommit; what PostgreSQL acknowledges is durable as
its `synchronous_commit` says: on, the default, is flushed to the server's WAL, and to a
synchronous standby when the installation has one). Appends that queue while a group is being
committed share the next group: one transaction, one binary COPY, one commit.

Guarantees:
- `append` resolves once its group's statement committed; groups commit in call order.
- Fencing: each group's transaction first reads the owner row `FOR SHARE` and goes on only if
  the epoch is still this owner's, so it either commits before a newer owner's epoch UPDATE
  (which waits for it, and the newer owner then reads it) or writes nothing and fails the log. A trim updates
  the owner row under the same condition, in the transaction that deletes.
- `open()` refuses (WalCorruptError) entries with a gap in `seq` or a key that goes down: an
  acknowledged entry is missing.
- A failed statement (refused, or the connection lost) fails every append not yet committed,
  and the log. A commit whose answer was lost may still have happened; `open()` then returns
  that group whole, never part of it.
- `trim(k)` deletes whole entries with key <= k, run by the writer between groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from typing import Any, Literal

import psycopg

from dash_ray.errors import WalCorruptError
from dash_ray.log.base import Entry, LogStats
from dash_ray.log.futures import Waiter, settle_all

__all__ = ["PostgresLog"]

log = logging.getLogger(__name__)

_Append = tuple[int, bytes, asyncio.AbstractEventLoop, "asyncio.Future[None]"]

_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('dash_wal_schema')), to_regclass('dash_wal_entries')"
# Entries live minutes, until the pipeline stored them: not compressing them (EXTERNAL) saves
# the commit's CPU, which measured 2-3x on 20 kB entries.
_SCHEMA = """
CREATE TABLE dash_wal_owners (
    log text PRIMARY KEY,
    epoch bigint NOT NULL,
    trimmed_seq bigint NOT NULL DEFAULT 0
);
CREATE TABLE dash_wal_entries (
    log text NOT NULL,
    seq bigint NOT NULL,
    key bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (log, seq)
);
ALTER TABLE dash_wal_entries ALTER data SET STORAGE EXTERNAL;
"""
_TAKE_EPOCH = """
INSERT INTO dash_wal_owners (log, epoch) VALUES (%s, 1)
ON CONFLICT (log) DO UPDATE SET epoch = dash_wal_owners.epoch + 1
RETURNING epoch, trimmed_seq
"""
_READ = "SELECT seq, key, data FROM dash_wal_entries WHERE log = %s ORDER BY seq"
_OWNED = "SELECT 1 FROM dash_wal_owners WHERE log = %s AND epoch = %s FOR SHARE"
_COPY = "COPY dash_wal_entries (log, seq, key, data) FROM STDIN (FORMAT BINARY)"
_MARK_TRIM = """
UPDATE dash_wal_owners SET trimmed_seq = %(upto)s
WHERE log = %(log)s AND epoch = %(epoch)s RETURNING epoch
"""
_TRIM = "DELETE FROM dash_wal_entries WHERE log = %(log)s AND seq <= %(upto)s"
_EPOCH = "SELECT epoch FROM dash_wal_owners WHERE log = %s"


class PostgresLog:
    """A pipeline's write-ahead log in PostgreSQL rows; one owner at a time (fenced)."""

    def __init__(self, dsn: str, name: str, *, connect_timeout: float = 10.0, io_timeout: float = 30.0) -> None:
        self.dsn = dsn
        self.name = name
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self.stats = LogStats()
        self.epoch = 0
        self._state: Literal["new", "open", "closed", "failed"] = "new"
        self._failure: BaseException | None = None
        self._last_key = -1
        # Shared with the writer thread, under the lock:
        self._lock = threading.Condition()
        self._pending: list[_Append] = []
        self._trim_to: int | None = None
        self._trim_waiters: list[Waiter] = []
        # The writer thread's alone once the log is open:
        self._conn: psycopg.Connection[Any] | None = None
        self._stored: deque[tuple[int, int, int]] = deque()  # (seq, key, size) not yet trimmed
        self._seq = 0  # the last seq written
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> str:
        return self._state

    # -- open / recover ----------------------------------------------------------------------

    def open(self) -> list[Entry]:
        """Take a new owner epoch (fencing any older owner), then read every entry still in
        the table, in order. Raises WalCorruptError for a gap (the epoch is taken; nothing
        else changes), OSError when the database cannot be reached. Blocking: call it in a
        thread."""
        if self._state != "new":
            raise RuntimeError(f"log is {self._state}")
        try:
            # Keepalives and a TCP user timeout: a server gone without a reset (a partition)
            # fails the statement waiting on it within about `io_timeout`, not the kernel's 15 min.
            conn = psycopg.connect(self.dsn, connect_timeout=max(1, int(self.connect_timeout)),
                                   application_name=f"dash-wal:{self.name}"[:63], keepalives=1,
                                   keepalives_idle=max(1, int(self.io_timeout / 3)), keepalives_interval=5,
                                   keepalives_count=3, tcp_user_timeout=int(self.io_timeout * 1000))
        except psycopg.Error as exc:
            raise OSError(f"write-ahead log {self.name}: cannot reach PostgreSQL: {exc}") from exc
        try:
            entries = self._recover(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise OSError(f"write-ahead log {self.name}: opening failed: {exc}") from exc
            raise
        conn.autocommit = True
        self._conn = conn
        self._state = "open"
        self._thread = threading.Thread(target=self._writer, name=f"wal-pg:{self.name}", daemon=True)
        self._thread.start()
        return entries

    def _recover(self, conn: psycopg.Connection[Any]) -> list[Entry]:
        with conn.transaction():
            if conn.execute(_SCHEMA_LOCK).fetchone()[1] is None:  # type: ignore[index]
                conn.execute(_SCHEMA)
        with conn.transaction():
            row = conn.execute(_TAKE_EPOCH, (self.name,)).fetchone()
        assert row is not None
        self.epoch, trimmed = row
        entries: list[Entry] = []
        expected = trimmed + 1
        with conn.transaction(), conn.cursor(name="dash_wal_read") as cursor:
            cursor.itersize = 1000
            cursor.execute(_READ, (self.name,))
            for seq, key, data in cursor:
                if seq != expected:
                    raise WalCorruptError(
                        f"write-ahead log {self.name}: entry {seq} follows entry {expected - 1} (trimmed "
                        f"through {trimmed}): entries {expected}..{seq - 1} are missing from dash_wal_entries")
                if entries and key < entries[-1].key:
                    raise WalCorruptError(f"write-ahead log {self.name}: key {key} after {entries[-1].key} "
                                          f"at entry {seq}")
                entries.append(Entry(key, bytes(data)))
                self._stored.append((seq, key, len(data)))
                self.stats.bytes += len(data)
                expected += 1
        self._seq = expected - 1
        if entries:
            self._last_key = self.stats.last_key = entries[-1].key
        self._refresh_stats()
        return entries

    def _refresh_stats(self) -> None:
        self.stats.segments = len(self._stored)

    # -- the event loop's side ---------------------------------------------------------------

    def append(self, key: int, data: bytes) -> asyncio.Future[None]:
        """Queue an entry now (so appends keep call order); the future resolves once its group
        committed and fails with OSError otherwise. Raises RuntimeError when the log is not
        open (not yet, closed, failed or fenced), ValueError when `key` is below the last."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state != "open":
                raise RuntimeError(f"log is {self._state}: {self._failure!r}" if self._failure
                                   else f"log is {self._state}")
            if key < self._last_key:
                raise ValueError(f"log keys must not decrease: {key} after {self._last_key}")
            self._last_key = key
            self._pending.append((key, bytes(data), loop, future))
            self._lock.notify()
        return future

    async def trim(self, through_key: int) -> None:
        """Ask the writer to delete entries with key <= `through_key` and wait until it has.
        Trims asked for while one waits merge (the highest key wins). Does nothing when the log
        is not open or fails first; raises OSError when the delete fails or a newer owner took
        the log (the log has then failed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._state != "open":
                return
            self._trim_to = through_key if self._trim_to is None else max(self._trim_to, through_key)
            self._trim_waiters.append((loop, future))
            self._lock.notify()
        await future

    async def close(self) -> None:
        """Commit the pending appends and trims, then close the connection. Idempotent."""
        with self._lock:
            if self._state in ("new", "open"):
                self._state = "closed"
            self._lock.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        self._state = "closed"

    # -- the writer thread -------------------------------------------------------------------

    def _writer(self) -> None:
        try:
            while self._serve_once():
                pass
        finally:
            if self._conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._conn.close()

    def _serve_once(self) -> bool:
        """Commit what is pending, then trim what was asked; False once the log is done."""
        with self._lock:
            while not self._pending and self._trim_to is None and self._state == "open":
                self._lock.wait()
            group, self._pending = self._pending, []
            trim_to, self._trim_to = self._trim_to, None
            waiters, self._trim_waiters = self._trim_waiters, []
            if not group and trim_to is None:
                return False  # closed, and nothing left to do
        trimming = False
        try:
            if group:
                self._write(group)
            if trim_to is not None:
                trimming = True
                self._trim(trim_to)
        except BaseException as exc:  # noqa: BLE001 - reported to every waiter
            log.error("write-ahead log %s: %s failed: %s", self.name, "trim" if trimming else "write", exc)
            with self._lock:
                self._failure = exc
                self._state = "failed"
                group += self._pending
                later = self._trim_waiters
                self._pending, self._trim_waiters, self._trim_to = [], [], None
            settle_all([(loop, future) for _, _, loop, future in group], exc)
            settle_all(waiters, exc if trimming else None)
            settle_all(later, None)
            return False
        settle_all(waiters, None)
        return True

    def _write(self, group: list[_Append]) -> None:
        """One transaction: check the epoch (holding the owner row against a newer owner's
        UPDATE until the commit), COPY the group in, commit."""
        assert self._conn is not None
        first = self._seq + 1
        try:
            with self._conn.transaction():
                if self._conn.execute(_OWNED, (self.name, self.epoch)).fetchone() is None:
                    raise self._fenced()
                with self._conn.cursor().copy(_COPY) as copy:
                    copy.set_types(["text", "int8", "int8", "bytea"])
                    for i, (key, data, _, _) in enumerate(group):
                        copy.write_row((self.name, first + i, key, data))
        except psycopg.Error as exc:
            raise OSError(f"write-ahead log {self.name}: writing {len(group)} entries failed: {exc}") from exc
        for i, (key, data, _, _) in enumerate(group):
            self._stored.append((first + i, key, len(data)))
            self.stats.bytes += len(data)
        self._seq = first + len(group) - 1
        self.stats.appended += len(group)
        self.stats.fsyncs += 1
        self.stats.last_key = group[-1][0]
        self._refresh_stats()
        settle_all([(loop, future) for _, _, loop, future in group], None)

    def _trim(self, through_key: int) -> None:
        assert self._conn is not None
        upto, count = 0, 0
        for seq, key, _ in self._stored:
            if key > through_key:
                break
            upto, count = seq, count + 1
        if not count:
            return
        params = {"log": self.name, "epoch": self.epoch, "upto": upto}
        try:
            with self._conn.transaction():
                if self._conn.execute(_MARK_TRIM, params).fetchone() is None:
                    raise self._fenced()
                self._conn.execute(_TRIM, params)
        except psycopg.Error as exc:
            raise OSError(f"write-ahead log {self.name}: trimming through entry {upto} failed: {exc}") from exc
        for _ in range(count):
            self.stats.bytes -= self._stored.popleft()[2]
        self.stats.trimmed += count
        self._refresh_stats()

    def _fenced(self) -> OSError:
        assert self._conn is not None
        row = self._conn.execute(_EPOCH, (self.name,)).fetchone()
        newest = row[0] if row else "none"
        return OSError(f"write-ahead log {self.name}: owner epoch {self.epoch} was superseded by epoch "
                       f"{newest} (a newer owner opened the log); nothing written")

