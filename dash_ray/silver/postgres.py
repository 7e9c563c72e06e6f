"""The PostgreSQL silver store: a pipeline's mapped rows COPY'd into its table
(`pgschema.py`), idempotent by seq.

`write(rows, first_seq=a, last_seq=b)` is one transaction, under the pipeline's advisory lock:
delete the rows of `a..b`; COPY the new ones (binary COPY built from the Arrow buffers,
`pgbinary.py`, the fastest path measured here, see benchmarks/silver.py; CSV written by Arrow
for a column whose type in the table is not one Dash creates); bring the rollups
(`pgrollup.py`) up to date; raise the pipeline's stored seq (`dash_silver._progress`) to `b`.
So a repeated or replayed range never doubles a row, the rollups never lag the rows, and
`stored_seq()` counts ranges that had no rows (all dead or filtered) as well. The table gains
a column when the spec gains a field (columns are never dropped or retyped here; the deploy
check refuses a type change that cannot be cast). The connection is opened on first use and
again after it breaks; every database error is a StorageError with its cause chained.
"""

from __future__ import annotations

import datetime as dt
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
from dash_ray.silver import pgbinary, pgrollup, pgschema

__all__ = ["PostgresSilver"]

_CSV = pacsv.WriteOptions(include_header=False, quoting_style="needed")
# The binary COPY needs each value in its column's exact type: the Dash type for each type
# a table column may have.
_KINDS = {"bigint": "int", "double precision": "double", "boolean": "bool", "timestamp with time zone": "timestamp",
          "text": "string", "jsonb": "json"}
# A server that vanishes without closing the connection (a host lost, a cable cut) is noticed
# in about 20 s instead of the kernel's two hours.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 5, "keepalives_count": 3}


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
        self._kinds: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresSilver({self.pipeline_id!r})"

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._dsn, connect_timeout=self._timeout, autocommit=False,
                                         **_KEEPALIVES)
            self._ready = False
        if not self._ready:
            with self._conn.transaction():
                # Serialise DDL between processes sharing the database: concurrent CREATE ...
                # IF NOT EXISTS of the same object can fail, and the progress table is shared.
                self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('dash_silver:ddl'))")
                for statement in pgschema.create_table(self.pipeline_id, self.columns,
                                                       timescale=self._new_hypertable(self._conn)):
                    self._conn.execute(statement)
                if self.plan is not None:
                    pgrollup.ensure(self._conn, self.pipeline_id, self.plan)
                self._kinds = {name: _KINDS.get(type_) for name, type_ in self._conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = %s AND table_name = %s", (pgschema.SCHEMA, self.pipeline_id))}
            self._ready = True
        return self._conn

    def _new_hypertable(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether the table is to be created as a hypertable: TimescaleDB is installed in the
        database and the table does not exist yet (a plain table is not converted)."""
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),"
                           " to_regclass(%s) IS NULL", (f'{pgschema.SCHEMA}."{self.pipeline_id}"',)).fetchone()
        return bool(row and row[0] and row[1])

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

        def work(conn: psycopg.Connection[Any]) -> None:
            # One writer of the pipeline's rows at a time (an old and a new actor may overlap):
            # the rollups' merge-or-recompute choice depends on what the delete found.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dash_silver:{self.pipeline_id}",))
            replaced = self._delete(conn, sql.SQL("seq BETWEEN %s AND %s"), (first_seq, last_seq))
            if rows.num_rows:
                body, form = self._copy_body(rows.select(names))
                copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
                    self._table, sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(form))
                with conn.cursor() as cursor, cursor.copy(copy) as stream:
                    stream.write(body)
            conn.execute(sql.SQL("INSERT INTO {p} AS p VALUES (%s, %s) ON CONFLICT (pipeline) DO UPDATE"
                                 " SET stored_seq = greatest(p.stored_seq, excluded.stored_seq)").format(
                p=pgschema.PROGRESS), (self.pipeline_id, last_seq))
            if self.plan is None:
                return
            if replaced:
                # A range written again: its old partials cannot be taken out, so recompute.
                new = rows.column("time").cast(pa.int64()).to_pylist() if rows.num_rows else []
                pgrollup.recompute(conn, self.pipeline_id, self.plan, replaced + new)
            elif rows.num_rows:
                pgrollup.merge(conn, self.pipeline_id, self.plan, rows)

        self._run(f"writing seq {first_seq}..{last_seq}", work)

    def _copy_body(self, rows: pa.Table) -> tuple[bytes | memoryview, str]:
        """The COPY data for `rows` and its format: binary when every column's table type is
        known, else CSV (PostgreSQL then casts the text)."""
        kinds = [self._kinds.get(name) for name in rows.column_names]
        if None in kinds:
            body = io.BytesIO()
            pacsv.write_csv(rows, body, _CSV)
            return body.getbuffer(), "csv"
        try:
            return pgbinary.encode(rows, kinds), "binary"  # type: ignore[arg-type]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise StorageError(f"PostgreSQL silver for {self.pipeline_id}: rows do not fit the table's column "
                               f"types {dict(zip(rows.column_names, kinds))}: {exc}") from exc

    def _delete(self, conn: psycopg.Connection[Any], where: sql.Composable, params: tuple[Any, ...]) -> list[int]:
        """Delete silver rows; the instant (epoch us) of each row deleted."""
        cursor = conn.execute(sql.SQL("DELETE FROM {} WHERE {} RETURNING (extract(epoch from time) * 1000000)"
                                      "::bigint").format(self._table, where), params)
        return [row[0] for row in cursor.fetchall()]

    def discard_after(self, seq: int) -> int:
        def work(conn: psycopg.Connection[Any]) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dash_silver:{self.pipeline_id}",))
            gone = self._delete(conn, sql.SQL("seq > %s"), (seq,))
            conn.execute(sql.SQL("UPDATE {} SET stored_seq = least(stored_seq, %s) WHERE pipeline = %s").format(
                pgschema.PROGRESS), (seq, self.pipeline_id))
            if self.plan is not None:
                pgrollup.recompute(conn, self.pipeline_id, self.plan, gone)
            return len(gone)

        return self._run(f"discarding rows after seq {seq}", work)

    def expire(self, keep_from: dt.date) -> int:
        """Retention: delete rows whose event time is before `keep_from` (00:00 UTC), and the
        rollup buckets before it (buckets of a day or less are aligned to UTC midnights, so
        none straddles the cutoff). The number of rows deleted."""
        cut_us = int(dt.datetime.combine(keep_from, dt.time(), dt.timezone.utc).timestamp()) * 1_000_000

        def work(conn: psycopg.Connection[Any]) -> int:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dash_silver:{self.pipeline_id}",))
            gone = conn.execute(sql.SQL("DELETE FROM {} WHERE time < to_timestamp(%s / 1000000.0)").format(
                self._table), (cut_us,)).rowcount
            if self.plan is not None:
                for granularity in self.plan.granularities:
                    conn.execute(sql.SQL("DELETE FROM {} WHERE {} < %s").format(
                        pgrollup.table(self.pipeline_id, granularity), sql.Identifier(self.plan.bucket)), (cut_us,))
            return gone

        return self._run(f"expiring rows before {keep_from}", work)

    def stored_seq(self) -> int:
        """The pipeline's progress row; for a table written before progress was kept, its
        highest seq."""
        def work(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(sql.SQL("SELECT coalesce((SELECT stored_seq FROM {} WHERE pipeline = %s),"
                                       " (SELECT max(seq) FROM {}), 0)").format(pgschema.PROGRESS, self._table),
                               (self.pipeline_id,)).fetchone()
            return int(row[0]) if row else 0

        return self._run("reading the stored seq", work)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
