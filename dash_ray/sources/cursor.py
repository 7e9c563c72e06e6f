"""What a poller keeps durably in its pipeline's `state_dir` (SQLite, each change one atomic
transaction): the incremental cursor, the ETag/Last-Modified of its last complete poll, the
bounded set of record keys already ingested, and the *outbox*: the batches of the page being
ingested, staged before they are sent.

The outbox is what makes a kill harmless: a page's new records are staged (with the page's
keys) before `ingest` is called, and cleared, with the keys added to the seen set, in one
transaction after `ingest` acknowledged them. A process killed in between finds the staged
batches at its next start and sends them again with the same idempotency keys: the pipeline
answers a duplicate for what it had stored, and stores what it had not. The cursor and the
validators advance only when a poll completed (`finish_poll`), so a poll cut short is
repeated from where it started, and its records already ingested are recognised by their keys.

The seen set keeps the `max_keys` keys most recently fetched (a key fetched again moves to
the end); older ones are forgotten first.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["PollStore", "Staged", "record_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS seen (n INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS outbox (part INTEGER PRIMARY KEY, payload BLOB NOT NULL, count INTEGER NOT NULL,
                                   idem TEXT NOT NULL)
"""


def record_key(value: Any) -> str:
    """A compact, stable key for a record's primary key value (or the whole record)."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


@dataclass(frozen=True)
class Staged:
    """Batches staged in the outbox: (payload, count, idempotency key) each, and the keys of
    their records."""

    parts: list[tuple[bytes, int, str]]
    keys: list[str]


class PollStore:
    """The durable state of one poller. Calls are blocking (run them in a thread); one at a time."""

    def __init__(self, path: Path, *, max_keys: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading -------------------------------------------------------------------------

    def get(self, name: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE name = ?", (name,)).fetchone()
        return default if row is None else orjson.loads(row[0])

    def known(self, keys: list[str]) -> set[str]:
        """Those of `keys` in the seen set."""
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in self._db.execute(f"SELECT key FROM seen WHERE key IN ({marks})", chunk))
        return found

    def seen_count(self) -> int:
        with self._lock:
            low, high = self._db.execute("SELECT min(n), max(n) FROM seen").fetchone()
        return 0 if low is None else int(high) - int(low) + 1

    def staged(self) -> Staged | None:
        """What the outbox holds (from a poll a kill interrupted), or None."""
        with self._lock:
            parts = [(bytes(p), int(c), str(i))
                     for p, c, i in self._db.execute("SELECT payload, count, idem FROM outbox ORDER BY part")]
            row = self._db.execute("SELECT value FROM kv WHERE name = 'outbox_keys'").fetchone()
        if not parts:
            return None
        return Staged(parts, orjson.loads(row[0]) if row else [])

    # -- changing (each one transaction) -----------------------------------------------------

    def stage(self, staged: Staged) -> None:
        """Put a page's batches in the outbox (replacing what it held)."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM outbox")
            self._db.executemany("INSERT INTO outbox (part, payload, count, idem) VALUES (?, ?, ?, ?)",
                                 [(n, p, c, i) for n, (p, c, i) in enumerate(staged.parts)])
            self._put("outbox_keys", staged.keys)

    def commit(self, keys: list[str]) -> None:
        """The outbox was acknowledged: clear it, and note `keys` (its records' and those fetched
        again) as the most recently seen, forgetting the oldest beyond the bound."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM outbox")
            self._db.execute("DELETE FROM kv WHERE name = 'outbox_keys'")
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                self._db.execute(f"DELETE FROM seen WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            self._db.executemany("INSERT INTO seen (key) VALUES (?)", [(k,) for k in unique])
            self._db.execute("DELETE FROM seen WHERE n <= (SELECT max(n) FROM seen) - ?", (self._max_keys,))

    def finish_poll(self, values: dict[str, Any]) -> None:
        """A poll completed: keep `values` (the cursor, the validators) at once."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for name, value in values.items():
                self._put(name, value)

    def _put(self, name: str, value: Any) -> None:
        self._db.execute("INSERT INTO kv (name, value) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, orjson.dumps(value)))
