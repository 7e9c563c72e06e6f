"""The embedded query engine: DuckDB over a pipeline's silver Parquet files in the lake, with
no server. Files are chosen before DuckDB sees them: superseded ones (compaction) are left out
and only the event days the time range touches are read. A local lake is read by DuckDB's own
Parquet reader; any other (S3) through a pyarrow dataset over fsspec, since DuckDB's httpfs
extension cannot be installed offline."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any

import duckdb

from dash_ray.errors import QueryError, StorageError
from dash_ray.lake import Lake, LakeFile
from dash_ray.query.model import Column, Query
from dash_ray.query.result import aggregate_answer, raw_answer
from dash_ray.query.sql import Statement, after_time_sql, aggregate_sql, quote, raw_sql

__all__ = ["DuckDBEngine", "days_of"]

_TYPES = {"string": "VARCHAR", "int": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN",
          "timestamp": "TIMESTAMPTZ", "json": "VARCHAR"}
_EPOCH = dt.date(1970, 1, 1)


def days_of(query: Query) -> tuple[dt.date | None, dt.date | None]:
    """The first and last event day a query's time range can touch (None: unbounded)."""
    first = None if query.start_us is None else _EPOCH + dt.timedelta(microseconds=query.start_us)
    last = None if query.end_us is None else _EPOCH + dt.timedelta(microseconds=query.end_us - 1)
    return first, last


class DuckDBEngine:
    """Queries on one pipeline's silver area. Thread-safe: each query runs on its own cursor."""

    def __init__(self, lake: Lake, pipeline_id: str, *, memory_limit: str = "1GB", threads: int = 2) -> None:
        self.lake = lake
        self.pipeline_id = pipeline_id
        self._con = duckdb.connect(config={"memory_limit": memory_limit, "threads": threads})
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def run(self, query: Query) -> dict[str, Any]:
        """The answer to `query` (see dash_ray.query.model for its semantics). Blocking."""
        files = self._files(query)
        if not files:
            return {"rows": [], "next": None} if not query.aggregate else {"rows": []}
        with self._lock:
            cursor = self._con.cursor()
        try:
            source = self._source(cursor, files, query)
            if query.aggregate:
                return aggregate_answer(query, self._fetch(cursor, source, aggregate_sql("duckdb", query)))
            after_us = None
            if query.after is not None:
                found = self._fetch(cursor, source, after_time_sql("duckdb", query.after))
                if not found:
                    raise QueryError(f"'after': no row with seq {query.after}", where="after")
                after_us = found[0][0]
            return raw_answer(query, self._fetch(cursor, source, raw_sql("duckdb", query, after_time_us=after_us)))
        except duckdb.Error as exc:
            raise StorageError(f"query on {self.lake.url} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            cursor.close()

    def _files(self, query: Query) -> list[LakeFile]:
        first, last = days_of(query)
        return [f for f in self.lake.files("silver", self.pipeline_id)
                if (first is None or f.day >= first) and (last is None or f.day <= last)]

    def _source(self, cursor: duckdb.DuckDBPyConnection, files: list[LakeFile], query: Query) -> Statement:
        """The `silver` CTE: the chosen files with every column the query names (a field no
        file has yet, added by a later spec version, reads as null)."""
        wanted = {c.name: c for c in (*query.fields, *query.by, *(a.column for a in query.aggs if a.column))}
        if self.lake.is_local:
            paths = [f.path for f in files]
            relation = cursor.read_parquet(paths, union_by_name=True)
            present = set(relation.columns)
            scan, params = "read_parquet(?, union_by_name = true)", [paths]
        else:
            dataset = self.lake.dataset_of(files)
            cursor.register("silver_files", dataset)
            present = set(dataset.schema.names)
            scan, params = "silver_files", []
        columns = ["seq", "time", *(_select(c, c.name in present) for c in wanted.values())]
        return Statement("duckdb").add(f"WITH silver AS (SELECT {', '.join(columns)} FROM {scan})", *params)

    @staticmethod
    def _fetch(cursor: duckdb.DuckDBPyConnection, source: Statement, st: Statement) -> Sequence[Sequence[Any]]:
        return cursor.execute(f"{source.text} {st.text}", [*source.params, *st.params]).fetchall()


def _select(column: Column, present: bool) -> str:
    name = quote(column.name)
    return name if present else f"CAST(NULL AS {_TYPES[column.type]}) AS {name}"
