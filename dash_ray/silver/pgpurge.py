"""Forgetting what PostgreSQL holds of a pipeline: on a purge, its silver table, every rollup
table, its progress row, its refused rows and its rollup plan rows, in one transaction, so an id created again
starts empty (it would otherwise inherit the old rows and, through the progress row, skip
ranges as if stored); and the rollup tables of granularities its plan no longer has."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from dash_ray.errors import StorageError
from dash_ray.silver import pgrollup, pgschema
from dash_ray.silver.rollup import GRANULARITIES

__all__ = ["drop_rollups", "purge"]


def drop_rollups(conn: psycopg.Connection[Any], pipeline_id: str, *, keep: Iterable[str] = ()) -> None:
    """Drop the pipeline's rollup tables but those of the granularities in `keep`, and their
    plan rows. In the caller's transaction."""
    kept = set(keep)
    for granularity in GRANULARITIES:
        if granularity not in kept:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(pgrollup.table(pipeline_id, granularity)))
    if conn.execute("SELECT to_regclass('dash_rollup.plans')").fetchone()[0] is not None:  # type: ignore[index]
        conn.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s AND NOT (granularity = ANY(%s))").format(
            pgrollup.PLANS), (pipeline_id, sorted(kept)))


def purge(dsn: str, pipeline_id: str, *, connect_timeout_s: float = 5.0) -> None:
    """Drop everything PostgreSQL holds of the pipeline. Idempotent; StorageError on failure
    (nothing changed then)."""
    try:
        with psycopg.connect(dsn, connect_timeout=int(connect_timeout_s)) as conn, conn.transaction():
            # The writers' lock (a stopped pipeline's last write is done) and the DDL lock.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('dash_silver:ddl'))")
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"dash_silver:{pipeline_id}",))
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(pgschema.table(pipeline_id)))
            drop_rollups(conn, pipeline_id)
            for name, table in (("_progress", pgschema.PROGRESS), ("_refused", pgschema.REFUSED)):
                found = conn.execute("SELECT to_regclass(%s)", (f"{pgschema.SCHEMA}.{name}",)).fetchone()
                if found is not None and found[0] is not None:
                    conn.execute(sql.SQL("DELETE FROM {} WHERE pipeline = %s").format(table), (pipeline_id,))
    except psycopg.Error as exc:
        raise StorageError(f"PostgreSQL silver for {pipeline_id}: purge failed: {type(exc).__name__}: "
                           f"{str(exc).strip()[:300]}") from exc
