"""The PostgreSQL query engine: the same SQL as DuckDB's (`sql.py`) on the pipeline's silver
table (`dash_ray.silver.pgschema`), over a few pooled connections. Each query is one
read-only transaction with a statement timeout (`timeout_s`): a query PostgreSQL stops for it
is a QueryLimitError (422), not a StorageError, so it is not run again on the lake. A query
that finds every pooled connection busy for `timeout_s` is an UnavailableError (503). Given
the lake's stored seq, it first checks that the table holds every row the lake holds
(`Behind` when not)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any, overload

import psycopg
from psycopg import sql

from dash_ray.errors import QueryError, QueryLimitError, StorageError, UnavailableError
from dash_ray.query.base import Behind
from dash_ray.query.dialect import POSTGRES
from dash_ray.query.model import Query
from dash_ray.query.result import aggregate_answer, raw_answer
from dash_ray.query.rollup_sql import granularity_for, middle_of, rollup_sql
from dash_ray.query.sql import Statement, after_time_sql, aggregate_sql, raw_sql
from dash_ray.silver import pgrollup, pgschema
from dash_ray.silver.rollup import RollupPlan
from dash_ray.silver.schema import Column

__all__ = ["PostgresEngine"]


class _Pool:
    """At most `size` connections to `dsn`, opened on demand; a broken one is dropped."""

    def __init__(self, dsn: str, size: int, connect_timeout_s: float) -> None:
        self._dsn = dsn
        self._timeout = connect_timeout_s
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._size = size
        self._slots = threading.BoundedSemaphore(size)
        self._closed = False

    def take(self, wait_s: float) -> psycopg.Connection[Any]:
        """A connection; UnavailableError when none is free within `wait_s`."""
        if not self._slots.acquire(timeout=wait_s):
            raise UnavailableError(f"all {self._size} PostgreSQL connections for queries are busy; try again",
                                   where="queries", retry_after=1.0)
        try:
            while True:
                try:
                    conn = self._idle.get_nowait()
                except queue.Empty:
                    return psycopg.connect(self._dsn, connect_timeout=int(self._timeout))
                if not conn.closed:
                    return conn
        except BaseException:
            self._slots.release()
            raise

    def give(self, conn: psycopg.Connection[Any]) -> None:
        if self._closed or conn.closed or conn.broken:
            conn.close()
        else:
            self._idle.put(conn)
        self._slots.release()

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class PostgresEngine:
    """Queries on one pipeline's silver table: a `FollowerEngine` (`base.py`). Thread-safe."""

    store = "postgres"
    dialect = POSTGRES

    def __init__(self, dsn: str, pipeline_id: str, *, plan: RollupPlan | None = None, pool_size: int = 4,
                 timeout_s: float = 15.0) -> None:
        self.pipeline_id = pipeline_id
        self.plan = plan
        self.timeout_s = timeout_s
        self._table = pgschema.table(pipeline_id)
        self._pool = _Pool(dsn, pool_size, connect_timeout_s=5.0)
        self._timeout_ms = max(1, int(timeout_s * 1000))

    def close(self) -> None:
        self._pool.close()

    @overload
    def run(self, query: Query) -> dict[str, Any]: ...

    @overload
    def run(self, query: Query, *, lake_seq: int | None) -> dict[str, Any] | Behind: ...

    def run(self, query: Query, *, lake_seq: int | None = None) -> dict[str, Any] | Behind:
        """The answer to `query`; StorageError when PostgreSQL cannot answer, QueryLimitError
        past the time limit, UnavailableError when every connection stays busy. With
        `lake_seq` (the highest seq of the lake's silver rows), `Behind` instead when the table
        holds fewer rows than the lake: PostgreSQL has not stored through `lake_seq` yet, or
        refused rows. Blocking."""
        try:
            conn = self._pool.take(self.timeout_s)
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL is not reachable for queries: {type(exc).__name__}") from exc
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION READ ONLY")
                conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(self._timeout_ms)))
                # Grouping tens of thousands of buckets spills to disk at the default 4 MB.
                conn.execute("SET LOCAL work_mem = '64MB'")
                return self._run(conn, query, lake_seq)
        except psycopg.errors.QueryCanceled:
            raise QueryLimitError(f"the query ran past the time limit of {self.timeout_s:g} s and was stopped; "
                                  "use a shorter range or a wider bucket", where="timeout") from None
        except psycopg.Error as exc:
            raise StorageError(f"query on PostgreSQL failed: {type(exc).__name__}: {exc}"[:500]) from exc
        finally:
            self._pool.give(conn)

    def _run(self, conn: psycopg.Connection[Any], query: Query, lake_seq: int | None) -> dict[str, Any] | Behind:
        present = {row[0] for row in conn.execute(pgschema.present_columns(), (pgschema.SCHEMA, self.pipeline_id))}
        if lake_seq is not None:
            # Before the rows: a write committing in between only adds rows.
            behind = self._behind(conn, lake_seq) if present else Behind(0, lake_seq, 0) if lake_seq > 0 else None
            if behind is not None:
                return behind
        if not present:
            return {"rows": []} if query.aggregate else {"rows": [], "next": None}
        if query.aggregate:
            return aggregate_answer(query, self._aggregate(conn, query, present))
        source = self._source(query, present)
        after_us = None
        if query.after is not None:
            found = self._fetch(conn, source, after_time_sql(self.dialect, query.after))
            if not found:
                raise QueryError(f"'after': no row with seq {query.after}", where="after")
            after_us = found[0][0]
        return raw_answer(query, self._fetch(conn, source, raw_sql(self.dialect, query, after_time_us=after_us)))

    def _behind(self, conn: psycopg.Connection[Any], lake_seq: int) -> Behind | None:
        # As JSON: a progress table from before `refused` was kept has no such column.
        row = conn.execute(sql.SQL("SELECT to_jsonb(p) FROM {} p WHERE pipeline = %s").format(pgschema.PROGRESS),
                           (self.pipeline_id,)).fetchone()
        progress = row[0] if row else {}
        stored, refused = int(progress.get("stored_seq", 0)), int(progress.get("refused", 0))
        if lake_seq > 0 and (stored < lake_seq or refused):
            return Behind(stored, lake_seq, refused)
        return None

    def _aggregate(self, conn: psycopg.Connection[Any], query: Query, present: set[str]) -> Sequence[Sequence[Any]]:
        """From the rollup table where it holds the current plan and can answer (with the
        raw edges), else from the raw rows."""
        plan = self.plan
        granularity = granularity_for(plan, query) if plan is not None else None
        if (plan is None or granularity is None or middle_of(query, granularity) is None
                or pgrollup.current_plan(conn, self.pipeline_id, granularity) != plan.key):
            return self._fetch(conn, self._source(query, present), aggregate_sql(self.dialect, query))
        wanted = {c.name: c for c in (*plan.by, *plan.fields)}
        source = sql.SQL("{}, rolled AS (SELECT * FROM {})").format(
            self._source(query, present, wanted), pgrollup.table(self.pipeline_id, granularity))
        return self._fetch(conn, source, rollup_sql(self.dialect, query, plan, granularity, has_unrolled=False))

    def _source(self, query: Query, present: set[str], wanted: dict[str, Column] | None = None) -> sql.Composed:
        if wanted is None:
            wanted = {c.name: c for c in (*query.fields, *query.by, *(a.column for a in query.aggs if a.column),
                                          *(f.column for f in query.filters))}
        columns = [sql.SQL("seq"), sql.SQL("time"), *(_select(c, c.name in present) for c in wanted.values())]
        return sql.SQL("WITH silver AS (SELECT {} FROM {})").format(sql.SQL(", ").join(columns), self._table)

    @staticmethod
    def _fetch(conn: psycopg.Connection[Any], source: sql.Composed, st: Statement) -> Sequence[Sequence[Any]]:
        text = sql.SQL(" ").join([source, sql.SQL(st.text)])
        # Binary results: no text parsing of every number on the way in.
        with conn.cursor(binary=True) as cursor:
            return cursor.execute(text, st.params).fetchall()


def _select(column: Column, present: bool) -> sql.Composable:
    name = sql.Identifier(column.name)
    if present:
        return name
    return sql.SQL("CAST(NULL AS {}) AS {}").format(sql.SQL(POSTGRES.type_of(column)), name)
