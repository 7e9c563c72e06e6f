"""The record of one pipeline's replay jobs: a SQLite file beside its write-ahead log, so a
job still answers after a restart (one a restart cut short reads `failed`, saying so).

It is bounded: a finished job is forgotten once 100 newer jobs finished after it, or 30 days
after it finished, whichever comes first (`KEEP_JOBS`, `KEEP_DAYS`); a running job never is.
Job numbers keep counting up across that pruning and across restarts, so an id is never given
to two jobs while the file lives (a purge deletes it with the log)."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from dash_ray.errors import NotFoundError

__all__ = ["KEEP_DAYS", "KEEP_JOBS", "Job", "JobStore"]

KEEP_JOBS = 100
KEEP_DAYS = 30

JobKind = Literal["replay", "dead-replay"]
JobState = Literal["running", "done", "failed"]
_COLUMNS = ("id", "kind", "state", "done", "total", "error", "created_at", "updated_at", "asked", "matched",
            "replayed", "kept", "note")
_SCHEMA = """CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, done INTEGER NOT NULL,
    total INTEGER NOT NULL, error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"""
# Columns a file written before they existed gains (its old jobs read them as defaults).
_ADDED = {"asked": "TEXT", "matched": "INTEGER", "replayed": "INTEGER NOT NULL DEFAULT 0",
          "kept": "INTEGER NOT NULL DEFAULT 0", "note": "TEXT"}


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _stamp(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Job:
    """One replay job. `asked`: the range as requested; `matched`: the stored records it
    named (None until known); `total`: the records of the stored files holding them, which a
    replay rewrites whole (so usually more than `matched`), and `done` of them so far; of
    those, `replayed` were mapped again and `kept` keep their stored rows (no raw data left);
    `note` says why anything was kept."""

    id: str
    kind: JobKind
    state: JobState
    done: int
    total: int
    error: str | None
    created_at: str
    updated_at: str
    asked: dict[str, Any] = field(default_factory=dict)
    matched: int | None = None
    replayed: int = 0
    kept: int = 0
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class JobStore:
    """The jobs of one pipeline, in `path`. Used from one thread at a time."""

    def __init__(self, pipeline_id: str, path: Path, *, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        self.pipeline_id = pipeline_id
        self._clock = clock
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, kind in _ADDED.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        self._db.execute("CREATE TABLE IF NOT EXISTS numbers (last INTEGER NOT NULL)")
        self._db.execute("UPDATE jobs SET state = 'failed', error = 'interrupted by a restart of the pipeline;"
                         " run it again (replay is idempotent)', updated_at = ? WHERE state = 'running'",
                         (_stamp(clock()),))
        numbers = [int(i.rpartition(".")[2]) for (i,) in self._db.execute("SELECT id FROM jobs")
                   if i.rpartition(".")[2].isdigit()]
        row = self._db.execute("SELECT last FROM numbers").fetchone()
        self._last = max([row[0] if row else 0, *numbers])
        self.prune()

    def get(self, job_id: str) -> Job:
        row = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no job {job_id!r}", where=job_id)
        values = dict(zip(_COLUMNS, row, strict=True))
        values["asked"] = orjson.loads(values["asked"]) if values["asked"] else {}
        return Job(**values)

    def new(self, kind: JobKind, asked: dict[str, Any]) -> Job:
        self._last += 1
        self._db.execute("DELETE FROM numbers")
        self._db.execute("INSERT INTO numbers VALUES (?)", (self._last,))
        now = _stamp(self._clock())
        job = Job(f"{self.pipeline_id}.{self._last}", kind, "running", 0, 0, None, now, now, asked=asked)
        self.save(job)
        return job

    def save(self, job: Job) -> None:
        job.updated_at = _stamp(self._clock())
        values = {**job.as_dict(), "asked": orjson.dumps(job.asked).decode()}
        self._db.execute(f"INSERT OR REPLACE INTO jobs ({', '.join(_COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                         tuple(values[c] for c in _COLUMNS))

    def prune(self) -> int:
        """Forget finished jobs past `KEEP_JOBS` newer ones or older than `KEEP_DAYS`; how many."""
        oldest = _stamp(self._clock() - dt.timedelta(days=KEEP_DAYS))
        cursor = self._db.execute(
            "DELETE FROM jobs WHERE state != 'running' AND (updated_at < ? OR id NOT IN ("
            "SELECT id FROM jobs WHERE state != 'running' ORDER BY updated_at DESC, rowid DESC LIMIT ?))",
            (oldest, KEEP_JOBS))
        return cursor.rowcount

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM jobs").fetchone()[0])

    def close(self) -> None:
        self._db.close()
