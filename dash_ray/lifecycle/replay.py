"""Replay: the current mapping run again over stored raw records, rewriting their silver rows,
rollups and dead letters, idempotently (twice leaves one copy).

The unit rewritten is a *span*: a stretch of stored sequence numbers whose every file, in
every area, lies inside it. A requested range is widened to the smallest span (files merged by
compaction may reach past it), then, per span: the bronze rows are read and mapped; the new
silver files (one per event day, named by the span, with their partials) and the new dead file
replace the old ones of the same names; files of the span in days the new rows no longer have
are deleted; secondary silver stores (PostgreSQL) rewrite the span in one transaction. Readers
see each file whole; between the new files and the last deletions a day that lost all its rows
may still show its old ones for a moment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.lake import AREAS, Lake, LakeFile
from dash_ray.mapping import CompiledMapping
from dash_ray.silver.base import SilverStore
from dash_ray.silver.lake import LakeSilver

__all__ = ["ReplayProgress", "replay_spans", "rewrite_span", "spans_for"]


@dataclass
class ReplayProgress:
    total: int = 0
    done: int = 0


def _all_files(lake: Lake, pipeline_id: str) -> list[LakeFile]:
    areas = (*AREAS, *lake.rollup_areas())
    return [f for area in areas for f in lake.files(area, pipeline_id)]


def spans_for(lake: Lake, pipeline_id: str, ranges: Sequence[tuple[int, int]], *, stored_seq: int) -> list[tuple[int, int]]:
    """The smallest spans covering `ranges` (clipped to what is stored) such that no live
    file of any area crosses a span's edge; in seq order, disjoint."""
    files = [(f.first_seq, f.last_seq) for f in _all_files(lake, pipeline_id) if f.last_seq <= stored_seq]
    spans = _merged([(max(1, a), min(b, stored_seq)) for a, b in ranges if a <= min(b, stored_seq)])
    changed = True
    while changed:
        changed = False
        grown = []
        for a, b in spans:
            for f, last in files:
                if f <= b and last >= a and (f < a or last > b):
                    a, b, changed = min(a, f), max(b, last), True
            grown.append((a, b))
        spans = _merged(grown)
    return spans


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _bronze(lake: Lake, pipeline_id: str, first: int, last: int) -> pa.Table:
    parts = []
    for f in lake.files("bronze", pipeline_id):
        if f.first_seq <= last and f.last_seq >= first:
            table = lake.read_file(f, columns=["seq", "received_at", "raw"])
            seq = table.column("seq")
            parts.append(table.filter(pc.and_(pc.greater_equal(seq, first), pc.less_equal(seq, last))))
    if not parts:
        return pa.table({"seq": pa.array([], pa.int64()), "received_at": pa.array([], pa.timestamp("us", tz="UTC")),
                         "raw": pa.array([], pa.string())})
    return pa.concat_tables(parts).sort_by("seq")


def rewrite_span(lake: Lake, pipeline_id: str, span: tuple[int, int], *, mapping: CompiledMapping,
                 silver: LakeSilver, secondaries: Sequence[SilverStore] = (),
                 today: Callable[[], dt.date] | None = None) -> int:
    """Map the span's raw records again and replace what it stored; returns the records
    replayed. Blocking."""
    first, last = span
    raw = _bronze(lake, pipeline_id, first, last)
    result = mapping.apply(raw)
    before = {f.path: f for area in ("silver", "dead", *lake.rollup_areas())
              for f in lake.files(area, pipeline_id, superseded=True) if first <= f.first_seq and f.last_seq <= last}
    written = set(silver.write(result.rows, first_seq=first, last_seq=last, replacing=True))
    if result.dead.num_rows:
        # The dead file keeps the (receive) day its range's bronze file has.
        old_dead = [f for f in before.values() if f.path.startswith(f"{lake.root}/dead/")]
        day = max((f.day for f in old_dead), default=None) or _bronze_day(lake, pipeline_id, first, last) \
            or (today or _utc_today)()
        written.add(lake.write("dead", pipeline_id, result.dead, first_seq=first, last_seq=last, day=day))
    stale = [f for path, f in before.items() if path not in written]
    for store in secondaries:
        store.write(result.rows, first_seq=first, last_seq=last)
    lake.delete(stale)
    return raw.num_rows


def _bronze_day(lake: Lake, pipeline_id: str, first: int, last: int) -> dt.date | None:
    days = [f.day for f in lake.files("bronze", pipeline_id) if f.first_seq <= last and f.last_seq >= first]
    return max(days, default=None)


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def replay_spans(lake: Lake, pipeline_id: str, spans: Sequence[tuple[int, int]], *, mapping: CompiledMapping,
                 silver: LakeSilver, secondaries: Sequence[SilverStore] = (),
                 progress: ReplayProgress | None = None) -> ReplayProgress:
    """Rewrite each span in turn, counting records in `progress` as it goes."""
    progress = progress or ReplayProgress()
    for span in spans:
        progress.done += rewrite_span(lake, pipeline_id, span, mapping=mapping, silver=silver, secondaries=secondaries)
    return progress
