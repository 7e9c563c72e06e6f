"""Replay jobs of one pipeline: started on request, run in the background one at a time
(under the lake upkeep's lock), their progress readable, their record kept in SQLite beside
the write-ahead log so `GET /v1/jobs/{id}` still answers after a restart (a job a restart cut
short reads `failed`, saying so; running it again is safe, replay being idempotent).

A job id is `<pipeline id>.<n>`, so the web tier knows which pipeline to ask."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow.compute as pc

from dash_ray.errors import NotFoundError
from dash_ray.lake import Lake
from dash_ray.lifecycle.replay import ReplayProgress, replay_spans, spans_for
from dash_ray.mapping import CompiledMapping
from dash_ray.silver.base import SilverStore
from dash_ray.silver.lake import LakeSilver

__all__ = ["Job", "Replays"]

log = logging.getLogger(__name__)

JobState = Literal["running", "done", "failed"]
_SCHEMA = """CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, done INTEGER NOT NULL,
    total INTEGER NOT NULL, error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class Job:
    id: str
    kind: Literal["replay", "dead-replay"]
    state: JobState
    done: int
    total: int
    error: str | None
    created_at: str
    updated_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Replays:
    """Starts, runs and remembers one pipeline's replay jobs."""

    def __init__(self, pipeline_id: str, *, lake: Lake, mapping: CompiledMapping, silver: LakeSilver,
                 lock: asyncio.Lock, stored_seq: Callable[[], int], path: Path,
                 secondaries: Callable[[], Sequence[SilverStore]] = tuple) -> None:
        self.pipeline_id = pipeline_id
        self.lake = lake
        self.mapping = mapping
        self.silver = silver
        self._lock = lock
        self._stored_seq = stored_seq
        self._secondaries = secondaries
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(_SCHEMA)
        self._db.execute("UPDATE jobs SET state = 'failed', error = 'interrupted by a restart of the pipeline;"
                         " run it again (replay is idempotent)' WHERE state = 'running'")
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def get(self, job_id: str) -> Job:
        if self._closed:
            raise NotFoundError(f"pipeline {self.pipeline_id} is closing", where=job_id)
        row = self._db.execute("SELECT id, kind, state, done, total, error, created_at, updated_at FROM jobs"
                               " WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no job {job_id!r}", where=job_id)
        return Job(*row)

    def _save(self, job: Job) -> None:
        """Only on the event loop; a no-op once closed."""
        if self._closed:
            return
        job.updated_at = _now()
        self._db.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (job.id, job.kind, job.state, job.done, job.total, job.error, job.created_at, job.updated_at))

    def _new(self, kind: Literal["replay", "dead-replay"]) -> Job:
        n = self._db.execute("SELECT count(*) FROM jobs").fetchone()[0] + 1
        job = Job(f"{self.pipeline_id}.{n}", kind, "running", 0, 0, None, _now(), _now())
        self._save(job)
        return job

    def replay(self, *, start_us: int | None = None, end_us: int | None = None,
               first_seq: int | None = None, last_seq: int | None = None) -> Job:
        """Start replaying what was received in `[start_us, end_us)` (or seqs
        `first_seq..last_seq`; everything when neither is given)."""
        job = self._new("replay")
        self._spawn(job, lambda: self._received_ranges(start_us, end_us, first_seq, last_seq))
        return job

    def replay_dead(self) -> Job:
        """Start re-running every dead-lettered record through the current mapping: what maps
        now goes to silver, the rest stays dead."""
        job = self._new("dead-replay")
        self._spawn(job, lambda: [(f.first_seq, f.last_seq) for f in self.lake.files("dead", self.pipeline_id)])
        return job

    def _spawn(self, job: Job, ranges: Callable[[], list[tuple[int, int]]]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job, ranges))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job, ranges: Callable[[], list[tuple[int, int]]]) -> None:
        progress = ReplayProgress()

        def work() -> None:
            spans = spans_for(self.lake, self.pipeline_id, ranges(), stored_seq=self._stored_seq())
            progress.total = sum(b - a + 1 for a, b in spans)
            replay_spans(self.lake, self.pipeline_id, spans, mapping=self.mapping, silver=self.silver,
                         secondaries=self._secondaries(), progress=progress)

        async with self._lock:
            worker = asyncio.ensure_future(asyncio.to_thread(work))
            while not worker.done():
                await asyncio.wait([worker], timeout=1.0)
                job.done, job.total = progress.done, progress.total
                self._save(job)
            try:
                worker.result()
            except Exception as exc:  # noqa: BLE001 - the job says why; the data is as before or replayed
                log.exception("pipeline %s: job %s failed", self.pipeline_id, job.id)
                job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"[:500]
            else:
                job.state, job.done = "done", progress.total
            self._save(job)

    def _received_ranges(self, start_us: int | None, end_us: int | None, first_seq: int | None,
                         last_seq: int | None) -> list[tuple[int, int]]:
        if first_seq is not None or last_seq is not None:
            return [(first_seq or 1, last_seq if last_seq is not None else self._stored_seq())]
        if start_us is None and end_us is None:
            return [(1, self._stored_seq())]
        seqs: list[int] = []
        first_day = None if start_us is None else (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=start_us)).date()
        for f in self.lake.files("bronze", self.pipeline_id):
            if first_day is not None and f.day < first_day:
                continue
            table = self.lake.read_file(f, columns=["seq", "received_at"])
            micros = pc.cast(table.column("received_at"), "int64")
            keep = pc.and_(pc.greater_equal(micros, start_us if start_us is not None else -(2**62)),
                           pc.less(micros, end_us if end_us is not None else 2**62))
            chosen = table.column("seq").filter(keep)
            if len(chosen):
                seqs += [pc.min(chosen).as_py(), pc.max(chosen).as_py()]
        return [(min(seqs), max(seqs))] if seqs else []

    async def close(self) -> None:
        """Wait for a running job to finish its span (a job cut short reads failed later)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # A worker thread still running writes no job record (only the loop does).
        self._closed = True
        self._db.close()
