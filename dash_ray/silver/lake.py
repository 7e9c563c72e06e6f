"""The embedded silver store: mapped rows as Parquet files in the lake's `silver` area, one
file per sequence range and *event* date (see `dash_ray.lake` for the layout), so a query on
a time range reads only the files of its days. Queried with DuckDB."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dash_ray.lake import Lake

__all__ = ["LakeSilver", "split_by_event_day"]

_US_PER_DAY = 86_400_000_000
_EPOCH = dt.date(1970, 1, 1)


def split_by_event_day(rows: pa.Table) -> list[tuple[dt.date, pa.Table]]:
    """`rows` grouped by the UTC date of their `time` column, days in order, rows in their
    input order within a day."""
    micros = pc.cast(rows.column("time"), pa.int64()).to_numpy(zero_copy_only=False)
    days = np.floor_divide(micros, _US_PER_DAY)
    unique = np.unique(days)
    if len(unique) == 1:
        return [(_EPOCH + dt.timedelta(days=int(unique[0])), rows)]
    return [(_EPOCH + dt.timedelta(days=int(day)), rows.filter(pa.array(days == day)))
            for day in unique]


class LakeSilver:
    """`SilverStore` over one pipeline's `silver` area of a lake."""

    def __init__(self, lake: Lake, pipeline_id: str) -> None:
        self.lake = lake
        self.pipeline_id = pipeline_id

    def __repr__(self) -> str:
        return f"LakeSilver({self.lake.url!r}, {self.pipeline_id!r})"

    def write(self, rows: pa.Table, *, first_seq: int, last_seq: int) -> None:
        """One file per event day of the range. Idempotent by range: the names depend only
        on the range and the rows, so a retry replaces them. An empty `rows` writes nothing."""
        if not rows.num_rows:
            return
        for day, part in split_by_event_day(rows):
            self.lake.write("silver", self.pipeline_id, part, first_seq=first_seq, last_seq=last_seq, day=day)

    def discard_after(self, seq: int) -> int:
        return self.lake.remove_after("silver", self.pipeline_id, seq)

    def stored_seq(self) -> int:
        return self.lake.last_seq("silver", self.pipeline_id)
