"""The PostgreSQL silver store: a pipeline's mapped rows COPY'd into its table
(`pgschema.py`), idempotent by seq.

`write(rows, first_seq=a, last_seq=b)` is one transaction: delete the rows of `a..b`, COPY
the new ones (CSV written by Arrow, the fastest path measured here; see
benchmarks/silver.py), and bring the rollups (`pgrollup.py`) up to date, so a repeated or
replayed range never doubles a row and the rollups never lag the rows. The table gains
a column when the spec gains a field (columns are never dropped or retyped here; the deploy
check refuses a type change that cannot be cast). The connection is opened on first use and
again after it breaks; every database error is a StorageError with its cause chained.
"""

from __future__ import annotations

import io
import threading
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from dash_ray.errors import StorageError
from dash_ray.query.model import Column
from dash_ray.query.rollup import RollupPlan
from dash_ray.silver import pgrollup, pgschema

__all__ = ["PostgresSilver"]

_CSV = pacsv.WriteOptions(include_header=False, quoting_style="needed")


class PostgresSilver:
    """`SilverStore` over one pipeline's table in PostgreSQL. Thread-safe (one connection,
    used by one call at a time)."""

    def __init__(self, dsn: str, pipeline_id: str, columns: list[Column], *, plan: RollupPlan | None = None,
                 connect_timeout_s: float = 5.0) -> None:
        self.pipeline_id = pipeline_id
        self.columns = list(columns)
        self.plan = plan
        self._dsn = dsn
        self._timeout = connect_timeout_s
        self._table = pgschema.table(pipeline_id)
        self._conn: psycopg.Connection[Any] | None = None
        self._ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresSilver({self.pipeline_id!r})"

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._dsn, connect_timeout=self._timeout, autocommit=False)
            self._ready = False
        if not self._ready:
            with self._conn.transaction():
                # Serialise DDL between processes sharing the database.
                self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dash_silver:{self.pipeline_id}",))
                for statement in pgschema.create_table(self.pipeline_id, self.columns):
                    self._conn.execute(statement)
                if self.plan is not None:
                    pgrollup.ensure(self._conn, self.pipeline_id, self.plan)
            self._ready = True
        return self._conn

    def _run(self, what: str, work: Any) -> Any:
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction():
                    return work(conn)
            except psycopg.Error as exc:
                if self._conn is not None and (self._conn.broken or self._conn.closed):
                    self._conn = None
                raise StorageError(f"PostgreSQL silver for {self.pipeline_id}: {what} failed: "
                                   f"{type(exc).__name__}: {str(exc).strip()[:300]}") from exc

    def write(self, rows: pa.Table, *, first_seq: int, last_seq: int) -> None:
        names = ["seq", "time", *(c.name for c in self.columns if c.name in rows.column_names)]
        body = io.BytesIO()
        if rows.num_rows:
            pacsv.write_csv(rows.select(names), body, _CSV)

        def work(conn: psycopg.Connection[Any]) -> None:
            replaced = self._delete(conn, sql.SQL("seq BETWEEN %s AND %s"), (first_seq, last_seq))
            if rows.num_rows:
                copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                    self._table, sql.SQL(", ").join(map(sql.Identifier, names)))
                with conn.cursor() as cursor, cursor.copy(copy) as stream:
                    stream.write(body.getbuffer())
            if self.plan is None:
                return
            if replaced:
                # A range written again: its old partials cannot be taken out, so recompute.
                new = rows.column("time").cast(pa.int64()).to_pylist() if rows.num_rows else []
                pgrollup.recompute(conn, self.pipeline_id, self.plan, replaced + new)
            elif rows.num_rows:
                pgrollup.merge(conn, self.pipeline_id, self.plan, rows)

        self._run(f"writing seq {first_seq}..{last_seq}", work)

    def _delete(self, conn: psycopg.Connection[Any], where: sql.Composable, params: tuple[Any, ...]) -> list[int]:
        """Delete silver rows; the instant (epoch us) of each row deleted."""
        cursor = conn.execute(sql.SQL("DELETE FROM {} WHERE {} RETURNING (extract(epoch from time) * 1000000)"
                                      "::bigint").format(self._table, where), params)
        return [row[0] for row in cursor.fetchall()]

    def discard_after(self, seq: int) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            gone = self._delete(conn, sql.SQL("seq > %s"), (seq,))
            if self.plan is not None:
                pgrollup.recompute(conn, self.pipeline_id, self.plan, gone)
            return len(gone)

        return self._run(f"discarding rows after seq {seq}", work)

    def stored_seq(self) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(sql.SQL("SELECT max(seq) FROM {}").format(self._table)).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        return self._run("reading the stored seq", work)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
