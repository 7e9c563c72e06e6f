"""A purge, the end of a pipeline deleted with `?purge=true`: its folders in its lake, what
PostgreSQL holds of it (whichever silver its spec chose: an earlier version may have used
PostgreSQL) and its write-ahead log are deleted, so an id created again starts empty."""

from __future__ import annotations

import asyncio

from dash_ray.lake_owner import forget_owner
from dash_ray.lake_roots import pipeline_lake
from dash_ray.log.choice import drop_log, log_name
from dash_ray.settings import Settings
from dash_ray.spec import PipelineSpec

__all__ = ["purge"]


async def purge(spec: PipelineSpec, settings: Settings) -> None:
    """Delete what the pipeline stored on the platform `settings` describe. Raises
    StorageError; a failed purge may be run again."""
    lake = pipeline_lake(spec, lake_url=settings.lake_url, lake_options=settings.lake_options)
    await asyncio.to_thread(lake.purge, spec.id)
    await asyncio.to_thread(forget_owner, lake, spec.id)
    if settings.pg_dsn is not None:
        from dash_ray.silver import pgpurge  # psycopg only where it is used

        await asyncio.to_thread(pgpurge.purge, settings.pg_dsn, spec.id)
    # Its state folder (keys, cursor, jobs; the log when it is a file) and its log wherever it is.
    await asyncio.to_thread(drop_log, settings.log, folder=settings.wal_dir(spec.id),
                            name=log_name(settings.namespace, spec.id), nats_url=settings.nats_url,
                            dsn=settings.pg_dsn)
