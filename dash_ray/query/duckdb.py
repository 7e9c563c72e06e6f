"""The embedded query engine: DuckDB over a pipeline's silver Parquet files in the lake, with
no server. Files are chosen before DuckDB sees them: superseded ones (compaction) are left out
and only the event days the time range touches are read. A local lake is read by DuckDB's own
Parquet reader; any other (S3) through a pyarrow dataset over fsspec, since DuckDB's httpfs
extension cannot be installed offline.

Each query has a time limit (`timeout_s`): past it the running statement is interrupted and
the query answers QueryLimitError (422) saying so."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Sequence
from typing import Any

import duckdb

from dash_ray.errors import QueryError, QueryLimitError, StorageError
from dash_ray.lake import Lake, LakeFile
from dash_ray.query.dialect import DUCKDB
from dash_ray.query.model import Query
from dash_ray.query.result import aggregate_answer, live_records, raw_answer
from dash_ray.query.rollup_sql import edges_of, granularity_for, middle_of, rollup_sql
from dash_ray.query.sql import Statement, after_time_sql, aggregate_sql, raw_sql
from dash_ray.silver.lake import rollup_area
from dash_ray.silver.rollup import RollupPlan
from dash_ray.silver.schema import Column, quote

__all__ = ["DuckDBEngine", "days_of", "lost_ranges"]

_EPOCH = dt.date(1970, 1, 1)


def days_of(query: Query) -> tuple[dt.date | None, dt.date | None]:
    """The first and last event day a query's time range can touch (None: unbounded)."""
    first = None if query.start_us is None else _EPOCH + dt.timedelta(microseconds=query.start_us)
    last = None if query.end_us is None else _EPOCH + dt.timedelta(microseconds=query.end_us - 1)
    return first, last


class _TimedCursor:
    """A cursor whose statements stop once `timeout_s` has passed since it was made: one
    running then is interrupted, one starting later is refused. DuckDB forgets an interrupt
    that comes while no statement runs, so a watchdog interrupts again every 50 ms until the
    cursor is closed."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, timeout_s: float) -> None:
        self._cursor = cursor
        self.timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s
        self._closed = threading.Event()
        self.expired = False
        self._watchdog = threading.Timer(timeout_s, self._interrupt)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _interrupt(self) -> None:
        self.expired = True
        while not self._closed.is_set():
            self._cursor.interrupt()
            self._closed.wait(0.05)

    def _check(self) -> None:
        if self.expired or time.monotonic() >= self._deadline:
            self.expired = True
            raise duckdb.InterruptException("the query's time is up")

    def execute(self, *args: Any) -> duckdb.DuckDBPyConnection:
        self._check()
        return self._cursor.execute(*args)

    def read_parquet(self, *args: Any, **kwargs: Any) -> duckdb.DuckDBPyRelation:
        self._check()
        return self._cursor.read_parquet(*args, **kwargs)

    def register(self, *args: Any) -> Any:
        return self._cursor.register(*args)

    def close(self) -> None:
        self._closed.set()
        self._watchdog.cancel()
        self._cursor.close()


class DuckDBEngine:
    """Queries on one pipeline's silver area: a `LakeEngine` (`base.py`). Thread-safe: each
    query runs on its own cursor."""

    store = "lake"
    dialect = DUCKDB

    def __init__(self, lake: Lake, pipeline_id: str, *, plan: RollupPlan | None = None,
                 memory_limit: str = "1GB", threads: int = 2, timeout_s: float = 15.0) -> None:
        self.lake = lake
        self.pipeline_id = pipeline_id
        self.plan = plan
        self.timeout_s = timeout_s
        self._con = duckdb.connect(config={"memory_limit": memory_limit, "threads": threads})
        with contextlib.suppress(duckdb.Error):
            # A timestamp read as text (a field widened to string) in UTC, as PostgreSQL shows
            # it, whatever the machine's zone. Without the ICU extension it is UTC already.
            self._con.execute("SET TimeZone = 'UTC'")
        self._lock = threading.Lock()
        self._stored: tuple[int, float | None] = (0, None)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def stored_seq(self, *, max_age_s: float = 0.0) -> int:
        """The highest seq of the lake's silver rows, from a listing at most `max_age_s` old
        (0: list now). StorageError when the lake cannot be listed. Blocking."""
        now = time.monotonic()
        seq, at = self._stored
        if at is None or now - at > max_age_s:
            seq = self.lake.last_seq("silver", self.pipeline_id)
            self._stored = (seq, now)
        return seq

    def run(self, query: Query) -> dict[str, Any]:
        """The answer to `query` (see dash_ray.query.model for its semantics); QueryLimitError
        past `timeout_s`. Blocking."""
        files = self._files("silver", query)
        if not files:
            return {"rows": [], "next": None} if not query.aggregate else {"rows": []}
        with self._lock:
            cursor: Any = _TimedCursor(self._con.cursor(), self.timeout_s)
        try:
            if query.aggregate:
                return aggregate_answer(query, self._aggregate(cursor, files, query))
            return raw_answer(query, self._raw(cursor, files, query))
        except duckdb.Error as exc:
            if isinstance(exc, duckdb.InterruptException) and cursor.expired:
                raise QueryLimitError(
                    f"the query ran past the time limit of {self.timeout_s:g} s and was stopped; "
                    "use a shorter range or a wider bucket", where="timeout") from None
            raise StorageError(f"query on {self.lake.url} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            cursor.close()

    def records_after(self, after: int, columns: tuple[Column, ...], *,
                      limit: int) -> tuple[list[dict[str, Any]], int, int]:
        """Stored records with seq > `after` in seq order, as the live feed shows them
        (`{"seq", "time", "data"}`): (records, the seq read up to, the first seq from `after`
        on that the store can answer for). Every row up to the seq read up to is in the
        records, or never was one (dead or filtered); when the rows right after `after` were
        removed by retention, no records come and the third value is past them (a gap).
        Blocking.

        The stored seq (the newest bronze file) is read before the silver files are listed,
        and only files and rows at or below it are read: a range's silver file is written
        before its bronze file, so the listing holds every row up to that seq, and a flush in
        between only adds ranges past it, left to the next read (listed first, such a flush
        moved the seq read up to past rows never read: issue 21). What retention removed is
        read after the listing, since retention notes a range before it deletes its files."""
        bronze = self.lake.files("bronze", self.pipeline_id)
        stored = max((f.last_seq for f in bronze), default=0)
        silver = [f for f in self.lake.files("silver", self.pipeline_id) if f.first_seq <= stored]
        dead = [f for f in self.lake.files("dead", self.pipeline_id) if f.first_seq <= stored]
        removed = self.lake.expired(self.pipeline_id)
        # Seqs older than anything the lake still knows of were removed too (all its areas
        # expired, or retention ran before it noted what it removed).
        known = min((f.first_seq for f in (*bronze, *silver, *dead)), default=stored + 1)
        if known > 1:
            removed.append((1, known - 1))
        start, end = after + 1, stored
        for first, last in lost_ranges(removed, silver, stored):
            if last < start:
                continue
            if first <= start:
                return [], after, last + 1
            end = first - 1  # read up to the next removed range; the next read tells of it
            break
        files = [f for f in silver if f.last_seq >= start and f.first_seq <= end]
        if not files:
            return [], max(after, end), start
        files, end = _first_page(files, end, limit)
        with self._lock:
            cursor = self._con.cursor()
        try:
            wanted = {c.name: c for c in columns}
            source = self._source(cursor, {"silver": files}, wanted)
            names = ", ".join(quote(c.name) for c in columns)
            st = Statement(self.dialect).add(
                f"SELECT seq, {self.dialect.epoch_us()}{', ' + names if names else ''} FROM silver"
                " WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?", after, end, limit)
            rows = self._fetch(cursor, source, st)
        except duckdb.Error as exc:
            raise StorageError(f"reading {self.lake.url} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            cursor.close()
        records = live_records(columns, rows)
        reached = records[-1]["seq"] if len(records) >= limit else max(after, end)
        return records, reached, start

    def _raw(self, cursor: duckdb.DuckDBPyConnection, files: list[LakeFile], query: Query) -> Sequence[Any]:
        """Raw rows in (time, seq) order from the files of as few event days as answer them:
        the first day in the query's order, then four times as many, until a page and one
        more row are found (every row of a day not read lies past those of the days read).
        The row `after` names is looked up in the files whose seq range holds it."""
        wanted = _wanted(query)
        after_us = None
        if query.after is not None:
            holding = [f for f in files if f.first_seq <= query.after <= f.last_seq]
            found = self._fetch(cursor, self._source(cursor, {"silver": holding}, wanted),
                                after_time_sql(self.dialect, query.after)) if holding else []
            if not found:
                raise QueryError(f"'after': no row with seq {query.after}", where="after")
            after_us = found[0][0]
        st = raw_sql(self.dialect, query, after_time_us=after_us)
        days = sorted({f.day for f in files}, reverse=query.order == "desc")
        taken = 1
        while True:
            read = set(days[:taken])
            source = self._source(cursor, {"silver": [f for f in files if f.day in read]}, wanted)
            rows = self._fetch(cursor, source, st)
            if len(rows) > query.limit or taken >= len(days):
                return rows
            taken *= 4

    def _aggregate(self, cursor: duckdb.DuckDBPyConnection, files: list[LakeFile], query: Query) -> Sequence[Any]:
        """From rollups where they can answer (merged with the raw edges and with ranges not
        rolled up yet), else from the raw rows."""
        plan = self.plan
        granularity = granularity_for(plan, query) if plan is not None else None
        if plan is None or granularity is None or middle_of(query, granularity) is None:
            return self._fetch(cursor, self._source(cursor, {"silver": files}, _wanted(query)),
                               aggregate_sql(self.dialect, query))
        rolled = self._files(rollup_area(plan, granularity), query)
        if not rolled:
            return self._fetch(cursor, self._source(cursor, {"silver": files}, _wanted(query)),
                               aggregate_sql(self.dialect, query))
        covered: dict[dt.date, list[LakeFile]] = {}
        for f in rolled:
            covered.setdefault(f.day, []).append(f)
        unrolled = [f for f in files if not any(r.first_seq <= f.first_seq and f.last_seq <= r.last_seq
                                                for r in covered.get(f.day, ()))]
        # Each raw edge reads only the files of its own days, once (a CTE read twice is
        # materialized whole: every file of the range, every column).
        relations: dict[str, list[LakeFile]] = {"rolled": rolled}
        names: list[str | None] = []
        for name, edge in zip(("head", "tail"), edges_of(query, granularity), strict=True):
            edge_files = [] if edge is None else _on_days(files, *_days_between(*edge))
            if edge_files:
                relations[name] = edge_files
            names.append(name if edge_files else None)
        if unrolled:
            relations["unrolled"] = unrolled
        columns = {c.name: c for c in (*plan.by, *plan.fields)}
        source = self._source(cursor, relations, columns)
        return self._fetch(cursor, source, rollup_sql(self.dialect, query, plan, granularity,
                                                      has_unrolled=bool(unrolled), edges=(names[0], names[1])))

    def _files(self, area: str, query: Query) -> list[LakeFile]:
        listed = self.lake.files(area, self.pipeline_id)
        if area == "silver":
            self._stored = (max((f.last_seq for f in listed), default=0), time.monotonic())
        return _on_days(listed, *days_of(query))

    def _source(self, cursor: duckdb.DuckDBPyConnection, relations: dict[str, list[LakeFile]],
                wanted: dict[str, Column]) -> Statement:
        """`WITH name AS (...)` for each relation: its files, with every column of `wanted`
        for silver ones (a field no file has yet, added by a later spec version, reads as
        null); rollup relations keep their own columns."""
        st = Statement(self.dialect)
        parts = []
        for name, files in relations.items():
            if self.lake.is_local and name == "rolled":
                # Partials of one plan all have the plan's columns (its key names them).
                scan, params, present = "read_parquet(?, hive_partitioning = false)", [[f.path for f in files]], set()
            elif self.lake.is_local:
                # The folders' `date=` names are the lake's layout, not a column: a field
                # named `date` is the file's own.
                paths = [f.path for f in files]
                present = set(cursor.read_parquet(paths, union_by_name=True, hive_partitioning=False).columns)
                scan, params = "read_parquet(?, union_by_name = true, hive_partitioning = false)", [paths]
            else:
                datasets = self.lake.datasets_of(files)
                for i, dataset in enumerate(datasets):
                    cursor.register(f"{name}_files{i}", dataset)
                present = {n for dataset in datasets for n in dataset.schema.names}
                # Files of a field retyped by a spec update: unified as read_parquet does.
                scan = " UNION ALL BY NAME ".join(f"SELECT * FROM {name}_files{i}" for i in range(len(datasets)))
                scan, params = f"({scan})", []
            if name == "rolled":
                columns = ["*"]
            else:
                columns = ["seq", "time", *(_select(c, c.name in present) for c in wanted.values())]
            parts.append(f"{name} AS (SELECT {', '.join(columns)} FROM {scan})")
            st.params.extend(params)
        st.parts.append("WITH " + ", ".join(parts))
        return st

    @staticmethod
    def _fetch(cursor: duckdb.DuckDBPyConnection, source: Statement, st: Statement) -> Sequence[Sequence[Any]]:
        return cursor.execute(f"{source.text} {st.text}", [*source.params, *st.params]).fetchall()


def lost_ranges(removed: list[tuple[int, int]], kept: list[LakeFile], stored: int) -> list[tuple[int, int]]:
    """The seq ranges up to `stored` whose rows are gone: `removed` ranges (retention) less
    those a `kept` silver file still holds rows of (another day of the same range, a replay
    that rebuilt it), merged and in order."""
    pieces = [(first, min(last, stored)) for first, last in removed]
    for a, b in ((f.first_seq, f.last_seq) for f in kept):
        pieces = [p for lo, hi in pieces for p in ((lo, min(hi, a - 1)), (max(lo, b + 1), hi)) if p[0] <= p[1]]
    lost: list[tuple[int, int]] = []
    for lo, hi in sorted(pieces):
        if lost and lo <= lost[-1][1] + 1:
            lost[-1] = (lost[-1][0], max(lost[-1][1], hi))
        else:
            lost.append((lo, hi))
    return lost


def _days_between(start_us: int, end_us: int) -> tuple[dt.date, dt.date]:
    """The first and last event day of `[start_us, end_us)`."""
    return (_EPOCH + dt.timedelta(microseconds=start_us), _EPOCH + dt.timedelta(microseconds=end_us - 1))


def _on_days(files: list[LakeFile], first: dt.date | None, last: dt.date | None) -> list[LakeFile]:
    """The files of the event days `first` to `last` (None: unbounded)."""
    return [f for f in files if (first is None or f.day >= first) and (last is None or f.day <= last)]


def _wanted(query: Query) -> dict[str, Column]:
    return {c.name: c for c in (*query.fields, *query.by, *(a.column for a in query.aggs if a.column),
                                 *(f.column for f in query.filters))}


def _select(column: Column, present: bool) -> str:
    name = quote(column.name)
    return name if present else f"CAST(NULL AS {DUCKDB.type_of(column)}) AS {name}"


def _first_page(files: list[LakeFile], end: int, limit: int) -> tuple[list[LakeFile], int]:
    """The first of `files` (ascending seq ranges) that hold at least `limit` seqs, and the
    seq the read may go up to: a reader far behind reads one page of files, not every file
    after its seq (issue 21). Files past the page start after its end (ranges are disjoint)."""
    files = sorted(files, key=lambda f: f.first_seq)
    spanned = 0
    for k, f in enumerate(files):
        spanned += f.last_seq - f.first_seq + 1
        if spanned >= limit:
            return files[: k + 1], min(end, f.last_seq)
    return files, end
