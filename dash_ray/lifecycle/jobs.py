"""Replay jobs of one pipeline: started on request, run in the background one at a time
(under the lake upkeep's lock), their progress readable, their record kept beside the
write-ahead log (`jobstore.py`) so `GET /v1/jobs/{id}` still answers after a restart (a job a
restart cut short reads `failed`, saying so; running it again is safe, replay being
idempotent).

A job id is `<pipeline id>.<n>`, so the web tier knows which pipeline to ask."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from dash_ray.errors import NotFoundError
from dash_ray.lake import Lake
from dash_ray.lifecycle.jobstore import Job, JobKind, JobStore
from dash_ray.lifecycle.replay import ReplayProgress, replay_spans, spans_for
from dash_ray.lifecycle.selection import ReplayRequest, select
from dash_ray.mapping import CompiledMapping
from dash_ray.silver.base import SilverStore
from dash_ray.silver.lake import LakeSilver

__all__ = ["Job", "Replays"]

log = logging.getLogger(__name__)


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
        # Opened on first use: creating the SQLite file costs ~80 ms of fsyncs on the event
        # loop, paid by every start of a pipeline that never runs a job (a host of many
        # shared pipelines starts them one after another on one loop).
        self._path = path
        self._opened: JobStore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def _store(self) -> JobStore:
        if self._opened is None:
            self._opened = JobStore(self.pipeline_id, self._path)
        return self._opened

    def get(self, job_id: str) -> Job:
        if self._closed:
            raise NotFoundError(f"pipeline {self.pipeline_id} is closing", where=job_id)
        return self._store.get(job_id)

    def _save(self, job: Job) -> None:
        """Only on the event loop; a no-op once closed."""
        if not self._closed:
            self._store.save(job)

    def replay(self, *, start_us: int | None = None, end_us: int | None = None,
               received_start_us: int | None = None, received_end_us: int | None = None,
               first_seq: int | None = None, last_seq: int | None = None) -> Job:
        """Start replaying the stored records whose event time is in `[start_us, end_us)`, or
        that were received in `[received_start_us, received_end_us)`, or seqs
        `first_seq..last_seq`; everything when none is given (`selection.py`). MalformedBodyError
        for a request that mixes them or runs backwards."""
        return self.submit(ReplayRequest(start_us, end_us, received_start_us, received_end_us, first_seq, last_seq))

    def replay_dead(self) -> Job:
        """Start re-running every dead-lettered record through the current mapping: what maps
        now goes to silver, the rest stays dead."""
        return self.submit(ReplayRequest(dead=True))

    def submit(self, request: ReplayRequest) -> Job:
        """Start the job `request` asks for (a dead-letter replay when `request.dead`)."""
        kind: JobKind = "dead-replay" if request.dead else "replay"
        job = self._store.new(kind, request.asked())
        task = asyncio.get_running_loop().create_task(self._run(job, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job, request: ReplayRequest) -> None:
        progress = ReplayProgress()

        def work() -> None:
            stored = self._stored_seq()
            chosen = select(self.lake, self.pipeline_id, request, stored_seq=stored)
            job.matched = chosen.matched
            spans = spans_for(self.lake, self.pipeline_id, chosen.ranges, stored_seq=stored)
            progress.total = sum(b - a + 1 for a, b in spans)
            replay_spans(self.lake, self.pipeline_id, spans, mapping=self.mapping, silver=self.silver,
                         secondaries=self._secondaries(), progress=progress)

        async with self._lock:
            worker = asyncio.ensure_future(asyncio.to_thread(work))
            while not worker.done():
                await asyncio.wait([worker], timeout=1.0)
                _report(job, progress)
                self._save(job)
            try:
                worker.result()
            except Exception as exc:  # the job says why; the data is as before or replayed
                log.exception("pipeline %s: job %s failed", self.pipeline_id, job.id)
                job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"[:500]
            else:
                job.state = "done"
            _report(job, progress)
            self._save(job)
            if not self._closed:
                self._store.prune()

    async def close(self) -> None:
        """Wait for a running job to finish its span (a job cut short reads failed later)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # A worker thread still running writes no job record (only the loop does).
        self._closed = True
        if self._opened is not None:
            self._opened.close()


def _report(job: Job, progress: ReplayProgress) -> None:
    job.done, job.total, job.replayed, job.kept = progress.done, progress.total, progress.replayed, progress.kept
    notes: list[str] = []
    if progress.kept_seqs is not None:
        first, last = progress.kept_seqs
        notes.append(f"{progress.kept} record(s) between seq {first}..{last} kept their stored rows as they were: "
                     "their raw records are gone (bronze retention is shorter than silver's)")
    notes += progress.refused
    job.note = "; ".join(notes)[:1000] if notes else None
