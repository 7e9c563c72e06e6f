"""The idempotency window of one pipeline: the ack given to each `Idempotency-Key`, so a
retried request is answered with the first ack instead of being stored twice.

Bounded two ways, both documented in API.md: a key is remembered for `window_s` seconds
(default one hour) after its request was stored, and at most `max_keys` keys (default 100,000)
are kept; past that the oldest are forgotten first. Keys survive a restart: those whose data
is already in the lake are persisted here (SQLite beside the write-ahead log) when the log is
trimmed, and the rest are rebuilt from the log itself on replay.

In memory each key holds a tuple of plain values `(at, accepted, first_seq, last_seq,
rejected)`, `rejected` being the encoded text, not an `Ack`: tuples of atoms leave the
garbage collector's tracking, and 100,000 tracked acks made each full collection of a busy
pipeline stall its event loop for ~100 ms (measured; the Ack is built again for a duplicate).
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from dash_ray.ingest.batch import Ack, Rejection

__all__ = ["IdempotencyIndex"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key TEXT PRIMARY KEY,
    at REAL NOT NULL,
    accepted INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    rejected TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_at ON keys (at)
"""


def _encode_rejected(rejected: Iterable[Rejection]) -> str:
    return "\n".join(f"{r.index}\t{r.reason}" for r in rejected)


def _decode_rejected(text: str) -> tuple[Rejection, ...]:
    out = []
    for line in text.splitlines():
        index, _, reason = line.partition("\t")
        out.append(Rejection(int(index), reason))
    return tuple(out)


class IdempotencyIndex:
    """Key → first ack, within a time window and a size bound."""

    def __init__(
        self,
        path: Path | None,
        *,
        window_s: float = 3600.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[str, tuple[float, int, int, int, str]] = OrderedDict()
        self._db: sqlite3.Connection | None = None
        self._unbounded = 0  # rows written since the table was last cut to `max_keys`
        if path is not None:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._load()

    def __len__(self) -> int:
        return len(self._keys)

    def _load(self) -> None:
        assert self._db is not None
        horizon = self._clock() - self.window_s
        self._db.execute("DELETE FROM keys WHERE at < ?", (horizon,))
        rows = self._db.execute(
            "SELECT key, at, accepted, first_seq, last_seq, rejected FROM keys ORDER BY at DESC LIMIT ?",
            (self.max_keys,),
        ).fetchall()
        for key, at, accepted, first_seq, last_seq, rejected in reversed(rows):
            self._keys[key] = (at, accepted, first_seq, last_seq, rejected)

    def get(self, key: str) -> Ack | None:
        """The ack first given for `key`, marked duplicate, or None when the key is new or
        has left the window."""
        entry = self._keys.get(key)
        if entry is None:
            return None
        at, accepted, first_seq, last_seq, rejected = entry
        if at < self._clock() - self.window_s:
            del self._keys[key]
            return None
        return Ack(accepted, first_seq, last_seq, _decode_rejected(rejected) if rejected else (), duplicate=True)

    def remember(self, key: str, ack: Ack, at: float | None = None) -> None:
        """Remember `key` in memory (it becomes durable through the log, then `persist`)."""
        self._keys[key] = (self._clock() if at is None else at, ack.accepted, ack.first_seq, ack.last_seq,
                           _encode_rejected(ack.rejected) if ack.rejected else "")
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def persist(self, keys: Iterable[str]) -> None:
        """Write the given remembered keys to disk: called before the log entries holding
        them are trimmed. Also forgets keys on disk that left the window."""
        if self._db is None:
            return
        rows = []
        for key in keys:
            entry = self._keys.get(key)
            if entry is not None:
                rows.append((key, *entry))
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("DELETE FROM keys WHERE at < ?", (self._clock() - self.window_s,))
            # The table keeps what memory keeps, the newest `max_keys`: unbounded, a busy
            # pipeline's table grew by every request of the window, and every persist paid
            # for it. Cut every max_keys/4 rows written (the cut walks max_keys index entries).
            self._unbounded += len(rows)
            if self._unbounded >= max(1, self.max_keys // 4):
                self._unbounded = 0
                self._db.execute("DELETE FROM keys WHERE at < (SELECT at FROM keys ORDER BY at DESC "
                                 "LIMIT 1 OFFSET ?)", (self.max_keys - 1,))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
