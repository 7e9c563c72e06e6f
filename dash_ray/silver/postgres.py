"""The PostgreSQL silver store: a pipeline's mapped rows COPY'd into its table
(`pgschema.py`), idempotent by seq.

`write(rows, first_seq=a, last_seq=b)` is one transaction, under the pipeline's advisory lock:
delete the rows of `a..b`; COPY the new ones (binary COPY built from the Arrow buffers,
`pgbinary.py`, the fastest path measured here, see benchmarks/silver.py; CSV written by Arrow
for a column whose type in the table is not one Dash creates); bring the rollups
(`pgrollup.py`) up to date; raise the pipeline's stored seq (`dash_silver._progress`) to `b`.
So a repeated or replayed range never doubles a row, the rollups never lag the rows, and
`stored_seq()` counts ranges that had no rows (all dead or filtered) as well. The table gains
a column when the spec gains a field, and a column is retyped when the spec widens its field
(columns are never dropped; the deploy check refuses a type change that is not a widening).
Values PostgreSQL cannot hold are made to fit (`pgvalues.py`), and a row it refuses anyway is
left out with its reason, never stopping the range. The connection is opened on first use and
again after it breaks; every database error is a StorageError with its cause chained.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from dash_ray.errors import StorageError
from dash_ray.silver import pgbinary, pgpurge, pgretype, pgrollup, pgschema, pgvalues
from dash_ray.silver.rollup import RollupPlan
from dash_ray.silver.schema import Column

__all__ = ["PostgresSilver"]

log = logging.getLogger(__name__)

_CSV = pacsv.WriteOptions(include_header=False, quoting_style="needed")
# The binary COPY needs each value in its column's exact type: the Dash type for each type
# a table column may have.
_KINDS = {"bigint": "int", "double precision": "double", "boolean": "bool", "timestamp with time zone": "timestamp",
          "text": "string", "jsonb": "json"}
# What a row's values can make PostgreSQL (or the binary encoding) refuse. A seq twice in one
# range (a unique violation) is no value's fault: that write fails and is retried.
_REFUSALS = (psycopg.errors.DataError, psycopg.errors.CheckViolation, psycopg.errors.NotNullViolation,
             pa.ArrowInvalid, pa.ArrowNotImplementedError)
# A server that vanishes without closing the connection (a host lost, a cable cut) is noticed
# in about 20 s instead of the kernel's two hours.
_T = TypeVar("_T")
_KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 5, "keepalives_count": 3}


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
        self.refused = 0  # rows of the pipeline PostgreSQL refused, as of the last write

    def __repr__(self) -> str:
        return f"PostgresSilver({self.pipeline_id!r})"

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self._dsn, connect_timeout=int(self._timeout), autocommit=False,
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
                # A field the spec widened (int to double, a scalar to string): its column too.
                if retypes := pgretype.retype_columns(self.pipeline_id, self.columns, self._column_types()):
                    for setup in pgretype.SETUP:
                        self._conn.execute(setup)
                    for statement in retypes:
                        self._conn.execute(statement)
                if self.plan is not None:
                    pgrollup.ensure(self._conn, self.pipeline_id, self.plan)
                # Tables of granularities the plan no longer has would only grow stale.
                pgpurge.drop_rollups(self._conn, self.pipeline_id, keep=self.plan.granularities if self.plan else ())
                self._kinds = {name: _KINDS.get(type_) for name, type_ in self._column_types().items()}
                row = self._conn.execute(sql.SQL("SELECT refused FROM {} WHERE pipeline = %s").format(
                    pgschema.PROGRESS), (self.pipeline_id,)).fetchone()
                self.refused = int(row[0]) if row else 0
            self._ready = True
        return self._conn

    def _column_types(self) -> dict[str, str]:
        assert self._conn is not None
        return dict(self._conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s", (pgschema.SCHEMA, self.pipeline_id)).fetchall())

    def _new_hypertable(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether the table is to be created as a hypertable: TimescaleDB is installed in the
        database and the table does not exist yet (a plain table is not converted)."""
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'),"
                           " to_regclass(%s) IS NULL", (f'{pgschema.SCHEMA}."{self.pipeline_id}"',)).fetchone()
        return bool(row and row[0] and row[1])

    def _run(self, what: str, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
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
        """Store `rows` as the range `first_seq..last_seq` (see the module's docstring). Values
        PostgreSQL cannot hold are made to fit (`pgvalues.py`); a row it refuses anyway is left
        out, its seq and reason kept in `dash_silver._refused` and counted in `refused`, and
        the range is written without it: a refused value never stops the range."""
        names = ["seq", "time", *(c.name for c in self.columns if c.name in rows.column_names)]

        def work(conn: psycopg.Connection[Any]) -> int | None:
            # One writer of the pipeline's rows at a time (an old and a new actor may overlap):
            # the rollups' merge-or-recompute choice depends on what the delete found.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dash_silver:{self.pipeline_id}",))
            replaced = self._delete(conn, sql.SQL("seq BETWEEN %s AND %s"), (first_seq, last_seq))
            kept, refused = pgvalues.fit_rows(pgvalues.fit_types(rows, self.columns), self._kinds), []
            if kept.num_rows:
                refused = self._copy(conn, kept.select(names))
                if refused:
                    gone = pa.array([seq for seq, _, _ in refused], pa.int64())
                    kept = kept.filter(pc.invert(pc.is_in(kept.column("seq"), value_set=gone)))
            conn.execute(sql.SQL("INSERT INTO {p} AS p VALUES (%s, %s) ON CONFLICT (pipeline) DO UPDATE"
                                 " SET stored_seq = greatest(p.stored_seq, excluded.stored_seq)").format(
                p=pgschema.PROGRESS), (self.pipeline_id, last_seq))
            count = self._note_refused(conn, sql.SQL("seq BETWEEN %s AND %s"), (first_seq, last_seq), refused)
            if self.plan is None:
                return count
            if replaced:
                # A range written again: its old partials cannot be taken out, so recompute.
                new = kept.column("time").cast(pa.int64()).to_pylist() if kept.num_rows else []
                pgrollup.recompute(conn, self.pipeline_id, self.plan, replaced + new)
            elif kept.num_rows:
                pgrollup.merge(conn, self.pipeline_id, self.plan, kept)
            return count

        self._counted(self._run(f"writing seq {first_seq}..{last_seq}", work))

    def _copy(self, conn: psycopg.Connection[Any], rows: pa.Table) -> list[tuple[int, int, str]]:
        """COPY `rows` into the table; the (seq, time in epoch us, reason) of each row refused.
        A refused COPY is tried again in halves, each under a savepoint, until every refused
        row stands alone (a few COPYs per refused row)."""
        try:
            with conn.transaction():
                body, form = self._copy_body(rows)
                copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
                    self._table, sql.SQL(", ").join(map(sql.Identifier, rows.column_names)), sql.SQL(form))
                with conn.cursor() as cursor, cursor.copy(copy) as stream:
                    stream.write(body)
            return []
        except _REFUSALS as exc:
            if rows.num_rows > 1:
                half = rows.num_rows // 2
                return self._copy(conn, rows.slice(0, half)) + self._copy(conn, rows.slice(half))
            seq, micros = rows.column("seq")[0].as_py(), rows.column("time").cast(pa.int64())[0].as_py()
            reason = f"{type(exc).__name__}: {str(exc).strip()}"[:500]
            log.warning("PostgreSQL silver for %s refused seq %d, left out (the lake keeps it): %s",
                        self.pipeline_id, seq, reason)
            return [(seq, micros, reason)]

    def _note_refused(self, conn: psycopg.Connection[Any], where: sql.Composable, params: tuple[Any, ...],
                      refused: list[tuple[int, int, str]]) -> int | None:
        """Forget the refusals `where` matches, keep `refused`; the pipeline's count of refused
        rows when it may have changed (None: unchanged)."""
        forgotten = conn.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND {}").format(pgschema.REFUSED, where),
                                 (self.pipeline_id, *params)).rowcount
        if refused:
            with conn.cursor() as cursor:
                cursor.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, to_timestamp(%s / 1000000.0), %s)").format(
                    pgschema.REFUSED), [(self.pipeline_id, seq, micros, reason) for seq, micros, reason in refused])
        if not forgotten and not refused:
            return None
        row = conn.execute(sql.SQL("UPDATE {p} SET refused = (SELECT count(*) FROM {r} WHERE pipeline = %s)"
                                   " WHERE pipeline = %s RETURNING refused").format(
            p=pgschema.PROGRESS, r=pgschema.REFUSED), (self.pipeline_id, self.pipeline_id)).fetchone()
        return int(row[0]) if row else 0

    def _counted(self, count: int | None) -> None:
        if count is not None:
            self.refused = count

    def _copy_body(self, rows: pa.Table) -> tuple[bytes | memoryview, str]:
        """The COPY data for `rows` and its format: binary when every column's table type is
        known, else CSV (PostgreSQL then casts the text). Arrow errors when a value does not
        fit its column's type."""
        kinds = [self._kinds.get(name) for name in rows.column_names]
        if None in kinds:
            body = io.BytesIO()
            pacsv.write_csv(rows, body, _CSV)
            return body.getbuffer(), "csv"
        return pgbinary.encode(rows, kinds), "binary"  # type: ignore[arg-type]

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
            self._counted(self._note_refused(conn, sql.SQL("seq > %s"), (seq,), []))
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
            self._counted(self._note_refused(conn, sql.SQL("time < to_timestamp(%s / 1000000.0)"), (cut_us,), []))
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
