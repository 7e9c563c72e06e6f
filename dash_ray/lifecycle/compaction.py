"""Compaction: a pipeline's small lake files merged into files of about the target size, in
the background, with no record lost or doubled and no reader ever seeing a half state.

Files are merged by *range groups*: consecutive stored sequence ranges whose files together
come to about the target size. A group is merged in every day partition of every area of a
family at once, so all of them keep the same range boundaries: the silver family (the rollup
areas first, then silver) and bronze and dead each on their own. Per day, the merged file is
named by the group's whole range; readers already leave out a file whose range another file
of the same day covers (`Lake.files`), so:
- before the merged file exists they read the small ones, after it they read it alone, and
  deleting the small ones later changes nothing they see;
- a kill at any point leaves whole files only (writes are atomic), and the next pass deletes
  small files a merged one covers;
- rollup partials are merged first, then silver, so at every instant each silver file is
  covered by rollup files of its own range or larger, which is what the query engine checks.
Only ranges at or below the pipeline's stored seq are touched; a running commit writes above.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from dash_ray.lake import Lake, LakeFile
from dash_ray.silver.lake import rollup_area
from dash_ray.silver.rollup import RollupPlan, merge_partials

__all__ = ["CompactionReport", "compact", "families"]

log = logging.getLogger(__name__)

Merge = Callable[[pa.Table], pa.Table]


@dataclass
class CompactionReport:
    groups: int = 0
    files_in: int = 0
    files_out: int = 0
    removed: int = 0


def families(plan: RollupPlan | None) -> list[list[tuple[str, Merge | None]]]:
    """Areas compacted together, primary area last, each with how its rows merge (None:
    concatenate)."""
    silver: list[tuple[str, Merge | None]] = []
    if plan is not None:
        for granularity in plan.granularities:
            silver.append((rollup_area(plan, granularity), lambda t: merge_partials(t, plan)))
    silver.append(("silver", None))
    return [silver, [("bronze", None)], [("dead", None)]]


def _groups(files: list[LakeFile], target_bytes: int, min_files: int) -> list[tuple[int, int]]:
    """Range groups of the primary area's small files, in seq order."""
    sizes: dict[tuple[int, int], int] = {}
    for f in files:
        sizes[(f.first_seq, f.last_seq)] = sizes.get((f.first_seq, f.last_seq), 0) + f.size
    groups: list[tuple[int, int]] = []
    run: list[tuple[int, int]] = []
    total = 0

    def close() -> None:
        if len(run) >= min_files:
            groups.append((run[0][0], run[-1][1]))

    for key in sorted(sizes):
        if sizes[key] >= target_bytes // 2:  # already big enough: a boundary
            close()
            run, total = [], 0
            continue
        run.append(key)
        total += sizes[key]
        if total >= target_bytes:
            close()
            run, total = [], 0
    close()
    return groups


def compact(lake: Lake, pipeline_id: str, *, stored_seq: int, plan: RollupPlan | None,
            target_bytes: int, min_files: int) -> CompactionReport:
    """One pass over every family; returns what it did. Blocking. Safe to kill at any point."""
    report = CompactionReport()
    for family in families(plan):
        primary = family[-1][0]
        every = {area: lake.files(area, pipeline_id, superseded=True) for area, _ in family}
        live = [f for f in lake.files(primary, pipeline_id) if f.last_seq <= stored_seq]
        for first, last in _groups(live, target_bytes, min_files):
            report.groups += 1
            for area, merge in family:
                report.files_in += _merge_group(lake, pipeline_id, area, merge, every[area], first, last, report)
        # Small files covered by a merged one (this pass's, or a killed pass's) go now.
        for area, _ in family:
            live_paths = {f.path for f in lake.files(area, pipeline_id)}
            doomed = [f for f in lake.files(area, pipeline_id, superseded=True)
                      if f.path not in live_paths and f.last_seq <= stored_seq]
            lake.delete(doomed)
            report.removed += len(doomed)
    return report


def _merge_group(lake: Lake, pipeline_id: str, area: str, merge: Merge | None, files: list[LakeFile],
                 first: int, last: int, report: CompactionReport) -> int:
    by_day: dict[dt.date, list[LakeFile]] = {}
    for f in files:
        if first <= f.first_seq and f.last_seq <= last and (f.first_seq, f.last_seq) != (first, last):
            by_day.setdefault(f.day, []).append(f)
    merged = 0
    for day, parts in sorted(by_day.items()):
        table = pa.concat_tables([lake.read_file(f) for f in sorted(parts)], promote_options="permissive")
        if merge is not None:
            table = merge(table)
        lake.write(area, pipeline_id, table, first_seq=first, last_seq=last, day=day)
        report.files_out += 1
        merged += len(parts)
    return merged
