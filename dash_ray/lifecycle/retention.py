"""Retention: a pipeline's lake files older than its spec keeps them, deleted by the date of
their partition (receive date for bronze and dead letters, event date for silver and rollups),
whole days at a time, so a reader sees a day entirely or not at all.

One exception keeps recovery sound: the bronze file with the highest range is never deleted,
because the newest bronze file is where a restarted pipeline finds the last stored seq (with
it gone, numbering would start again and collide with what is stored). And the seq ranges of
the silver files it deletes are noted in the lake first (`Lake.note_expired`), so a live client
resuming from before them is told they are gone rather than passing over them in silence.

Rollups of a plan the spec no longer has (other granularities, fields or groups: each plan has
its own areas, `silver.lake.rollup_area`) are never read again; they are deleted whole.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dash_ray.lake import Lake
from dash_ray.silver.lake import rollup_area
from dash_ray.silver.rollup import RollupPlan
from dash_ray.spec import RetentionSpec

__all__ = ["RetentionReport", "apply_retention", "cutoff", "drop_unplanned_rollups"]


@dataclass
class RetentionReport:
    removed: int = 0


def cutoff(days: int, today: dt.date) -> dt.date:
    """The first day kept when keeping `days` days up to `today` (today counts)."""
    return today - dt.timedelta(days=days - 1)


def apply_retention(lake: Lake, pipeline_id: str, retention: RetentionSpec, *, today: dt.date) -> RetentionReport:
    """Delete expired files of every area. Blocking."""
    report = RetentionReport()
    rules = [("bronze", retention.bronze_days), ("dead", retention.dead_days), ("silver", retention.silver_days)]
    rules += [(area, retention.silver_days) for area in lake.rollup_areas()]
    for area, days in rules:
        if days is None:
            continue
        keep_from = cutoff(days, today)
        files = lake.files(area, pipeline_id, superseded=True)
        expired = [f for f in files if f.day < keep_from]
        if area == "bronze" and files:
            newest = max(files, key=lambda f: f.last_seq)
            expired = [f for f in expired if f.path != newest.path]
        if area == "silver" and expired:
            # Noted first: a live client catching up is told of these rows (a gap).
            lake.note_expired(pipeline_id, expired, kept=[f for f in files if f not in expired])
        lake.delete(expired)
        report.removed += len(expired)
    return report


def drop_unplanned_rollups(lake: Lake, pipeline_id: str, plan: RollupPlan | None) -> int:
    """Delete the pipeline's folders in rollup areas that `plan` does not write (all of them
    when it has none); how many. Blocking."""
    planned = set() if plan is None else {rollup_area(plan, g) for g in plan.granularities}
    return sum(lake.drop(area, pipeline_id) for area in lake.rollup_areas() if area not in planned)
