"""The embedded silver store: mapped rows as Parquet files in the lake's `silver` area, one
file per sequence range and *event* date (see `dash_ray.lake` for the layout), so a query on
a time range reads only the files of its days; beside them, per range and day, the rollup
plan's partial aggregates in `rollup-<granularity>-<plan>` areas. Queried with DuckDB."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.lake import Lake
from dash_ray.silver.partials import partials_of
from dash_ray.silver.rollup import RollupPlan

__all__ = ["LakeSilver", "rollup_area", "split_by_day"]

_US_PER_DAY = 86_400_000_000
_EPOCH = dt.date(1970, 1, 1)


def rollup_area(plan: RollupPlan, granularity: str) -> str:
    return f"rollup-{granularity}-{plan.key}"


def split_by_day(rows: pa.Table, column: str = "time") -> list[tuple[dt.date, pa.Table]]:
    """`rows` grouped by the UTC date of `column` (a timestamp, or epoch microseconds), days
    in order, rows in their input order within a day."""
    micros = pc.cast(rows.column(column), pa.int64()).to_numpy(zero_copy_only=False)
    days = np.floor_divide(micros, _US_PER_DAY)
    unique = np.unique(days)
    if len(unique) == 1:
        return [(_EPOCH + dt.timedelta(days=int(unique[0])), rows)]
    return [(_EPOCH + dt.timedelta(days=int(day)), rows.filter(pa.array(days == day)))
            for day in unique]


class LakeSilver:
    """`SilverStore` over one pipeline's `silver` area of a lake (and its rollup areas)."""

    def __init__(self, lake: Lake, pipeline_id: str, plan: RollupPlan | None = None) -> None:
        self.lake = lake
        self.pipeline_id = pipeline_id
        self.plan = plan

    def __repr__(self) -> str:
        return f"LakeSilver({self.lake.url!r}, {self.pipeline_id!r})"

    def write(self, rows: pa.Table, *, first_seq: int, last_seq: int, replacing: bool = False) -> list[str]:
        """One file per event day of the range and its partials per day and granularity;
        returns the paths written. Idempotent by range: the names depend only on the range
        and the rows, so a retry replaces them. An empty `rows` writes nothing.

        A new range's rows go first (a query counts them raw until their partials exist); a
        range `replacing` stored files of its span writes its partials first (they cover the
        old partials and rows at once, so nothing is counted twice meanwhile)."""
        if not rows.num_rows:
            return []
        silver = [("silver", day, part) for day, part in split_by_day(rows)]
        parts = [] if self.plan is None else [
            (rollup_area(self.plan, g), day, part)
            for g in self.plan.granularities
            for day, part in split_by_day(partials_of(rows, self.plan, g), self.plan.bucket)]
        return [self.lake.write(area, self.pipeline_id, part, first_seq=first_seq, last_seq=last_seq, day=day)
                for area, day, part in (parts + silver if replacing else silver + parts)]

    def discard_after(self, seq: int) -> int:
        removed = self.lake.remove_after("silver", self.pipeline_id, seq)
        for area in self.lake.rollup_areas():
            removed += self.lake.remove_after(area, self.pipeline_id, seq)
        return removed

    def stored_seq(self) -> int:
        return self.lake.last_seq("silver", self.pipeline_id)
