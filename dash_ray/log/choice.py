"""Which write-ahead log a pipeline keeps, by its short name (`DASH_LOG`): `file` (the embedded
default: segment files in the pipeline's state folder), `jetstream` (a NATS JetStream stream)
or `postgres` (rows in the platform's PostgreSQL). On a cluster a pipeline restarted on another
node must find the log its last owner acknowledged into: use `jetstream` or `postgres`, or
`file` with the state folder (`DASH_STATE_DIR`) on a mount every ingestor node reaches.

A log's name is the platform's log namespace and the pipeline's id (`log_name`), so two
platforms sharing one NATS server or database keep apart: each platform has its own
(`dash_ray.log.namespace`, `Settings.log_prefix`).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

from dash_ray.log.base import Log
from dash_ray.settings import LOG_KINDS

__all__ = ["drop_log", "log_name", "make_log"]


def log_name(namespace: str, pipeline_id: str) -> str:
    """The log's name in a shared backend: `<namespace>_<id>` in letters, digits, '_' and '-'."""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', namespace)}_{pipeline_id}"


def make_log(kind: str, *, folder: Path, name: str, nats_url: str = "nats://127.0.0.1:4222",
             nats_replicas: int = 1, dsn: str | None = None) -> Log:
    """A new (not yet open) log of `kind`. `postgres` needs `dsn`. Raises ValueError naming
    the kinds there are; ImportError with the install hint when nats-py is missing (on open)."""
    if kind == "file":
        from dash_ray.log.file import WriteAheadLog

        return WriteAheadLog(folder)
    if kind == "jetstream":
        from dash_ray.log.jetstream import JetStreamLog

        return JetStreamLog(name, servers=[u.strip() for u in nats_url.split(",") if u.strip()],
                            replicas=nats_replicas)
    if kind == "postgres":
        if not dsn:
            raise ValueError("DASH_LOG=postgres keeps the write-ahead logs in the platform's PostgreSQL: "
                             "set DASH_PG_DSN")
        from dash_ray.log.postgres import PostgresLog

        return PostgresLog(dsn, name)
    raise ValueError(f"DASH_LOG must be one of {', '.join(LOG_KINDS)}, not {kind!r}")


def drop_log(kind: str, *, folder: Path, name: str, nats_url: str = "nats://127.0.0.1:4222",
             dsn: str | None = None) -> None:
    """Delete a log whole (a purged pipeline): its folder, its stream or its rows. Blocking.
    Idempotent; a log's owner must be stopped first."""
    shutil.rmtree(folder, ignore_errors=True)
    if kind == "jetstream":
        asyncio.run(_delete_stream(name, nats_url))
    elif kind == "postgres" and dsn:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=10) as conn:
            if conn.execute("SELECT to_regclass('dash_wal_entries')").fetchone() not in (None, (None,)):
                conn.execute("DELETE FROM dash_wal_entries WHERE log = %s", (name,))
                conn.execute("DELETE FROM dash_wal_owners WHERE log = %s", (name,))


async def _delete_stream(name: str, nats_url: str) -> None:
    from dash_ray.log.streams import Names, load_nats

    nats: Any = load_nats()
    from nats.js.errors import NotFoundError

    nc = await nats.connect(servers=[u.strip() for u in nats_url.split(",") if u.strip()], connect_timeout=10,
                            max_reconnect_attempts=0)
    try:
        try:
            await nc.jetstream().delete_stream(Names(name).stream)
        except NotFoundError:
            pass
    finally:
        await nc.close()
