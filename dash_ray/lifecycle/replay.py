"""Replay: the current mapping run again over stored raw records, rewriting their silver rows,
rollups and dead letters, idempotently (twice leaves one copy).

The unit rewritten is a *span*: a stretch of stored sequence numbers whose every file, in
every area, lies inside it. A requested range is widened to the smallest span (files merged by
compaction may reach past it), then, per span: the raw records are read (from bronze, and for
a dead letter whose bronze is gone, from the raw text the dead letter keeps) and mapped; the
new silver files (one per event day, named by the span, with their partials) and the new dead
file replace the old ones of the same names; files of the span in days the new rows no longer
have are deleted; secondary silver stores (PostgreSQL) rewrite the span in one transaction.
Readers see each file whole; between the new files and the last deletions a day that lost all
its rows may still show its old ones for a moment.

Only what can be rebuilt is replaced. A record whose raw data retention removed (bronze kept
fewer days than silver) keeps the silver row it has, as it was stored: it goes into the
span's new files beside the rebuilt rows. A span with nothing to rebuild is not touched; a
span whose kept rows cannot share a file with the rebuilt ones (a field retyped to a type the
old values do not fit) is not touched either, and the outcome says why.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.lake import AREAS, Lake, LakeFile
from dash_ray.mapping import CompiledMapping
from dash_ray.silver.base import SilverStore
from dash_ray.silver.lake import LakeSilver

__all__ = ["ReplayProgress", "replay_spans", "rewrite_span", "spans_for"]

_RAW = pa.schema([("seq", pa.int64()), ("received_at", pa.timestamp("us", tz="UTC")), ("raw", pa.string())])


@dataclass
class ReplayProgress:
    """What a replay did so far: `done` of `total` records of its spans gone through, of
    which `replayed` were mapped again and `kept` keep their stored rows (no raw data);
    `kept_seqs` the lowest and highest seq kept, `refused` why spans were left as they were."""

    total: int = 0
    done: int = 0
    replayed: int = 0
    kept: int = 0
    kept_seqs: tuple[int, int] | None = None
    refused: list[str] = field(default_factory=list)

    def keep(self, seqs: pa.ChunkedArray | pa.Array) -> None:
        """Count the records of `seqs` as kept."""
        if not len(seqs):
            return
        self.kept += len(seqs)
        low, high = pc.min(seqs).as_py(), pc.max(seqs).as_py()
        if self.kept_seqs is not None:
            low, high = min(low, self.kept_seqs[0]), max(high, self.kept_seqs[1])
        self.kept_seqs = (low, high)


def _all_files(lake: Lake, pipeline_id: str) -> list[LakeFile]:
    areas = (*AREAS, *lake.rollup_areas())
    return [f for area in areas for f in lake.files(area, pipeline_id)]


def spans_for(lake: Lake, pipeline_id: str, ranges: Sequence[tuple[int, int]], *,
              stored_seq: int) -> list[tuple[int, int]]:
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


def _in_span(lake: Lake, pipeline_id: str, area: str, first: int, last: int) -> pa.Table | None:
    """The rows of the live files of `area` inside `first..last`."""
    files = [f for f in lake.files(area, pipeline_id) if first <= f.first_seq and f.last_seq <= last]
    if not files:
        return None
    return pa.concat_tables([lake.read_file(f) for f in files], promote_options="permissive")


def _raw(lake: Lake, pipeline_id: str, first: int, last: int) -> pa.Table:
    """The span's raw records, in seq order: bronze's, and for seqs bronze no longer has, the
    raw text their dead letters keep (one dead letter per record)."""
    parts = []
    for f in lake.files("bronze", pipeline_id):
        if f.first_seq <= last and f.last_seq >= first:
            table = lake.read_file(f, columns=list(_RAW.names))
            seq = table.column("seq")
            parts.append(table.filter(pc.and_(pc.greater_equal(seq, first), pc.less_equal(seq, last))).cast(_RAW))
    raw = pa.concat_tables(parts) if parts else _RAW.empty_table()
    dead = _in_span(lake, pipeline_id, "dead", first, last) if raw.num_rows < last - first + 1 else None
    if dead is not None and dead.num_rows:
        missing = dead.filter(pc.invert(pc.is_in(dead.column("seq"), value_set=raw.column("seq"))))
        raw = pa.concat_tables([raw, missing.select(list(_RAW.names)).cast(_RAW)])
    return raw.sort_by("seq")


def rewrite_span(lake: Lake, pipeline_id: str, span: tuple[int, int], *, mapping: CompiledMapping,
                 silver: LakeSilver, secondaries: Sequence[SilverStore] = (),
                 progress: ReplayProgress | None = None, today: Callable[[], dt.date] | None = None) -> ReplayProgress:
    """Map the span's raw records again and replace what it stored with them, keeping the
    stored rows of records without raw data; counts into `progress`. Blocking."""
    progress = progress if progress is not None else ReplayProgress()
    first, last = span
    raw = _raw(lake, pipeline_id, first, last)
    kept = _rows_without_raw(lake, pipeline_id, span, raw) if raw.num_rows < last - first + 1 else None
    progress.done += last - first + 1
    if not raw.num_rows:
        if kept is not None:
            progress.keep(kept.column("seq"))
        return progress
    result = mapping.apply(raw)
    rows = result.rows
    if kept is not None and kept.num_rows:
        try:
            rows = pa.concat_tables([rows, _conform(kept, rows.schema)], promote_options="permissive").sort_by("seq")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            progress.refused.append(f"seq {first}..{last} left as it was: {kept.num_rows} stored row(s) without "
                                    f"raw data do not fit the current mapping's types ({exc})"[:300])
            progress.keep(pa.concat_arrays([kept.column("seq").combine_chunks(), raw.column("seq").combine_chunks()]))
            return progress
    before = {f.path: f for area in ("silver", "dead", *lake.rollup_areas())
              for f in lake.files(area, pipeline_id, superseded=True) if first <= f.first_seq and f.last_seq <= last}
    written = set(silver.write(rows, first_seq=first, last_seq=last, replacing=True))
    if result.dead.num_rows:
        # The dead file keeps the (receive) day its range's bronze file has.
        dead_days = [f.day for f in before.values() if f.path.startswith(f"{lake.root}/dead/")]
        day = max(dead_days, default=None) or _bronze_day(lake, pipeline_id, first, last) \
            or (today or _utc_today)()
        written.add(lake.write("dead", pipeline_id, result.dead, first_seq=first, last_seq=last, day=day))
    stale = [f for path, f in before.items() if path not in written]
    for store in secondaries:
        store.write(rows, first_seq=first, last_seq=last)
    lake.delete(stale)
    progress.replayed += raw.num_rows
    if kept is not None:
        progress.keep(kept.column("seq"))
    return progress


def _conform(kept: pa.Table, schema: pa.Schema) -> pa.Table:
    """`kept` with each column the current mapping also has cast to its type now (a field
    widened since, int to double or anything to string); Arrow errors when one cannot be."""
    for i, name in enumerate(kept.column_names):
        if name in schema.names and kept.schema.field(name).type != schema.field(name).type:
            kept = kept.set_column(i, name, kept.column(name).cast(schema.field(name).type))
    return kept


def _rows_without_raw(lake: Lake, pipeline_id: str, span: tuple[int, int], raw: pa.Table) -> pa.Table | None:
    """The span's stored silver rows of records `raw` does not have (retention removed their
    bronze), as stored; None when there are none."""
    stored = _in_span(lake, pipeline_id, "silver", *span)
    if stored is None:
        return None
    return stored.filter(pc.invert(pc.is_in(stored.column("seq"), value_set=raw.column("seq"))))


def _bronze_day(lake: Lake, pipeline_id: str, first: int, last: int) -> dt.date | None:
    days = [f.day for f in lake.files("bronze", pipeline_id) if f.first_seq <= last and f.last_seq >= first]
    return max(days, default=None)


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def replay_spans(lake: Lake, pipeline_id: str, spans: Sequence[tuple[int, int]], *, mapping: CompiledMapping,
                 silver: LakeSilver, secondaries: Sequence[SilverStore] = (),
                 progress: ReplayProgress | None = None) -> ReplayProgress:
    """Rewrite each span in turn, counting records in `progress` as it goes."""
    progress = progress if progress is not None else ReplayProgress()
    for span in spans:
        rewrite_span(lake, pipeline_id, span, mapping=mapping, silver=silver, secondaries=secondaries,
                     progress=progress)
    return progress
