"""The job record stays bounded (issue 21.20): finished jobs past `KEEP_JOBS` newer ones or
`KEEP_DAYS` old are forgotten, running ones never; numbers are never given twice; a file
written before the job shape grew still reads."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from dash_ray.errors import NotFoundError
from dash_ray.lifecycle.jobstore import KEEP_DAYS, KEEP_JOBS, JobStore


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def finished(store: JobStore, clock: Clock, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        job = store.new("replay", {"from_seq": 1})
        clock.advance(seconds=1)
        job.state = "done"
        store.save(job)
        ids.append(job.id)
    return ids


def test_finished_jobs_are_kept_to_a_bounded_count_and_numbers_never_repeat(tmp_path: Path) -> None:
    clock = Clock()
    store = JobStore("p", tmp_path / "jobs.sqlite", clock=clock)
    running = store.new("dead-replay", {})
    ids = finished(store, clock, KEEP_JOBS + 50)
    store.prune()
    assert store.count() == KEEP_JOBS + 1  # the newest finished ones, and the running one
    assert store.get(running.id).state == "running"
    with pytest.raises(NotFoundError):
        store.get(ids[0])
    assert store.get(ids[-1]).asked == {"from_seq": 1}
    store.close()
    again = JobStore("p", tmp_path / "jobs.sqlite", clock=clock)
    assert again.get(running.id).state == "failed"  # cut short by the restart
    assert again.new("replay", {}).id == f"p.{KEEP_JOBS + 52}"
    again.close()


def test_finished_jobs_are_forgotten_after_keep_days(tmp_path: Path) -> None:
    clock = Clock()
    store = JobStore("p", tmp_path / "jobs.sqlite", clock=clock)
    old = finished(store, clock, 3)
    clock.advance(days=KEEP_DAYS + 1)
    new = finished(store, clock, 1)
    store.prune()
    assert store.count() == 1 and store.get(new[0]).state == "done"
    with pytest.raises(NotFoundError):
        store.get(old[-1])
    store.close()


def test_a_job_file_of_the_old_shape_reads_and_keeps_numbering(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, done INTEGER"
               " NOT NULL, total INTEGER NOT NULL, error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)")
    db.execute("INSERT INTO jobs VALUES ('p.7', 'replay', 'done', 20, 20, NULL, '2026-05-01T00:00:00Z',"
               " '2026-05-01T00:00:00Z')")
    db.commit()
    db.close()
    store = JobStore("p", path, clock=Clock())
    old = store.get("p.7")
    assert (old.state, old.done, old.asked, old.matched, old.kept) == ("done", 20, {}, None, 0)
    assert store.new("replay", {}).id == "p.8"
    store.close()
