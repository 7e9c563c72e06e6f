"""A sink's durable state, in one SQLite file of its own (`<wal dir>/sinks/<name>/state.sqlite`,
beside the pipeline's write-ahead log): the cursor (the last seq the sink has taken: every
record up to it is either waiting in `pending`, in a delivery, delivered, or was not selected),
the records taken and not yet in a delivery (`pending`, by group), each group's times, and the
outbox of deliveries (queued, then gone once delivered, or dead with their reason).

Each step is one transaction, so a crash between two leaves a state a restart goes on from:
records are never in two places, and a delivery once formed keeps its id and body until it is
delivered (so a redelivery after a crash carries the same `webhook-id`). Used from one thread
at a time (the sink's calls go through `asyncio.to_thread` one after another)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Delivery", "GroupTimes", "SinkStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY, grp TEXT NOT NULL, record BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS pending_grp ON pending (grp, seq);
CREATE TABLE IF NOT EXISTS groups (grp TEXT PRIMARY KEY, started REAL NOT NULL, sent REAL);
CREATE TABLE IF NOT EXISTS outbox (
    n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, grp TEXT NOT NULL,
    first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, records INTEGER NOT NULL, body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'queued',
    reason TEXT, dead_at REAL);
"""


@dataclass(frozen=True)
class Delivery:
    """One message to the destination: `body` is what is sent (JSON), `id` its stable id."""

    n: int
    id: str
    grp: str
    first_seq: int
    last_seq: int
    records: int
    body: bytes
    attempts: int = 0
    next_at: float = 0.0
    state: str = "queued"
    reason: str | None = None
    dead_at: float | None = None

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "first_seq": self.first_seq, "last_seq": self.last_seq, "records": self.records,
                "attempts": self.attempts, "reason": self.reason, "dead_at": self.dead_at}


@dataclass(frozen=True)
class GroupTimes:
    started: float
    sent: float | None


_COLUMNS = "n, id, grp, first_seq, last_seq, records, body, attempts, next_at, state, reason, dead_at"


class SinkStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives the process being killed (what the sink's
        # guarantees are about) without an fsync of its own, which would compete with the
        # pipeline's log for the disk; after a power cut the newest commits may be undone and
        # the records they covered are taken again from the lake (delivered again, perhaps
        # under another id).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- cursor and settings ---------------------------------------------------------------

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str | None) -> None:
        with self._db:
            self._set(key, value)

    def _set(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def cursor(self) -> int:
        return int(self.get("cursor") or 0)

    # -- taking records --------------------------------------------------------------------

    def take(self, records: Iterable[tuple[int, str, bytes]], through: int, now: float, *,
             quiet_since: float | None = None) -> None:
        """Add `records` (seq, group, the record as JSON) to `pending` and move the cursor to
        `through`, in one transaction; a group with no times yet, or with nothing pending and
        no message since `quiet_since`, starts now."""
        rows = list(records)
        groups = {row[1] for row in rows}
        with self._db:
            if quiet_since is not None:
                self._db.executemany("DELETE FROM groups WHERE grp = ? AND grp NOT IN (SELECT grp FROM pending) "
                                     "AND coalesce(sent, started) < ?", [(g, quiet_since) for g in groups])
            self._db.executemany("INSERT OR REPLACE INTO pending VALUES (?, ?, ?)", rows)
            self._db.executemany("INSERT OR IGNORE INTO groups VALUES (?, ?, NULL)", [(g, now) for g in groups])
            self._set("cursor", str(through))

    def pending_groups(self) -> dict[str, tuple[int, GroupTimes]]:
        """Each group with pending records: (how many, its times)."""
        rows = self._db.execute("SELECT p.grp, count(*), g.started, g.sent FROM pending p JOIN groups g "
                                "ON g.grp = p.grp GROUP BY p.grp").fetchall()
        return {grp: (count, GroupTimes(started, sent)) for grp, count, started, sent in rows}

    def pending_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])

    def pending_records(self, grp: str, limit: int | None = None) -> list[tuple[int, dict[str, Any]]]:
        return [(seq, orjson.loads(record)) for seq, record in self.pending_json(grp, limit)]

    def pending_json(self, grp: str, limit: int | None = None) -> list[tuple[int, bytes]]:
        """The group's oldest pending records (all, or `limit`), in seq order, as stored (JSON)."""
        sql = "SELECT seq, record FROM pending WHERE grp = ? ORDER BY seq"
        rows = self._db.execute(sql + (" LIMIT ?" if limit else ""), (grp, limit) if limit else (grp,)).fetchall()
        return [(int(seq), bytes(record)) for seq, record in rows]

    def group_times(self, grp: str) -> GroupTimes | None:
        row = self._db.execute("SELECT started, sent FROM groups WHERE grp = ?", (grp,)).fetchone()
        return None if row is None else GroupTimes(row[0], row[1])

    def forget_groups(self, quiet_since: float) -> int:
        """Forget the groups with nothing pending whose last message went before `quiet_since`."""
        with self._db:
            return self._db.execute("DELETE FROM groups WHERE grp NOT IN (SELECT grp FROM pending) AND "
                                    "coalesce(sent, started) < ?", (quiet_since,)).rowcount

    # -- the outbox ------------------------------------------------------------------------

    def form(self, delivery_id: str, grp: str, seqs: list[int], body: bytes, now: float, *,
             batching: bool = False) -> None:
        """Make the delivery of pending records `seqs` of `grp` (they leave `pending`: the
        group's oldest, as `pending_json` gave them, so every pending record of the group from
        the first to the last of them) and mark the group as sent now (a batch: forget it once
        nothing of it waits), in one transaction."""
        records, first, last = len(seqs), min(seqs), max(seqs)
        with self._db:
            self._db.execute("INSERT OR IGNORE INTO outbox (id, grp, first_seq, last_seq, records, body, next_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (delivery_id, grp, first, last, records, body, now))
            deleted = self._db.execute("DELETE FROM pending WHERE grp = ? AND seq BETWEEN ? AND ?",
                                       (grp, first, last)).rowcount
            if deleted != records:  # not the group's oldest: leave nothing half done
                raise ValueError(f"pending records of group {grp!r} {first}..{last} are not the {records} taken")
            self._db.execute("UPDATE groups SET sent = ? WHERE grp = ?", (now, grp))
            if batching:
                self._db.execute("DELETE FROM groups WHERE grp = ? AND grp NOT IN (SELECT grp FROM pending)", (grp,))

    def next_queued(self) -> Delivery | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE state = 'queued' ORDER BY n LIMIT 1").fetchone()
        return None if row is None else Delivery(*row)

    def delivered(self, delivery: Delivery) -> None:
        with self._db:
            self._db.execute("DELETE FROM outbox WHERE n = ?", (delivery.n,))
            last = max(int(self.get("delivered_seq") or 0), delivery.last_seq)
            self._set("delivered_seq", str(last))

    def retry(self, delivery: Delivery, attempts: int, next_at: float, reason: str) -> None:
        with self._db:
            self._db.execute("UPDATE outbox SET attempts = ?, next_at = ?, reason = ? WHERE n = ?",
                             (attempts, next_at, reason, delivery.n))

    def dead(self, delivery: Delivery, attempts: int, reason: str, now: float) -> None:
        with self._db:
            self._db.execute("UPDATE outbox SET state = 'dead', attempts = ?, reason = ?, dead_at = ? WHERE n = ?",
                             (attempts, reason, now, delivery.n))

    def dead_deliveries(self, limit: int = 100) -> list[Delivery]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE state = 'dead' ORDER BY n DESC LIMIT ?",
                                (limit,)).fetchall()
        return [Delivery(*row) for row in rows]

    def redeliver(self, now: float) -> int:
        """Queue every dead delivery again (same id and body), first attempt now."""
        with self._db:
            return self._db.execute("UPDATE outbox SET state = 'queued', attempts = 0, next_at = ?, dead_at = NULL "
                                    "WHERE state = 'dead'", (now,)).rowcount

    def outbox_counts(self) -> dict[str, int]:
        """`queued` deliveries, `retrying` (queued after a failed attempt), `dead`, and
        `queued_records` (records in queued deliveries)."""
        row = self._db.execute("SELECT coalesce(sum(state = 'queued'), 0), coalesce(sum(state = 'queued' AND "
                               "attempts > 0), 0), coalesce(sum(state = 'dead'), 0), coalesce(sum(CASE WHEN "
                               "state = 'queued' THEN records ELSE 0 END), 0) FROM outbox").fetchone()
        return {"queued": row[0], "retrying": row[1], "dead": row[2], "queued_records": row[3]}
