"""A purge, the end of a pipeline deleted with `?purge=true`: its folders in its lake, what
PostgreSQL holds of it (whichever silver its spec chose: an earlier version may have used
PostgreSQL), its write-ahead log and, for an `mqtt` source, its persistent session at the
broker are deleted, so an id created again starts empty."""

from __future__ import annotations

import asyncio

from dash_ray.catalog import Catalog
from dash_ray.lake_owner import forget_owner
from dash_ray.lake_roots import pipeline_lake
from dash_ray.log.choice import drop_log, log_name
from dash_ray.settings import Settings
from dash_ray.spec import MqttSource, PipelineSpec, secret_names

__all__ = ["purge"]


async def purge(spec: PipelineSpec, catalog: Catalog, *, settings: Settings) -> None:
    """Delete what the pipeline stored on the platform `settings` describe (`catalog` holds
    the secrets its source connects with). Raises StorageError, or aiomqtt.MqttError when its
    MQTT broker cannot be reached; a failed purge may be run again."""
    if isinstance(spec.source, MqttSource):  # first: a broker that cannot be reached fails it whole
        from dash_ray.sources.mqtt import end_session

        values = await asyncio.to_thread(catalog.secrets.values, secret_names(spec))
        await end_session(spec.source, spec.id, values)
    lake = pipeline_lake(spec, lake_url=settings.lake_url, lake_options=settings.lake_options)
    await asyncio.to_thread(lake.purge, spec.id)
    await asyncio.to_thread(forget_owner, lake, spec.id)
    if settings.pg_dsn is not None:
        from dash_ray.silver import pgpurge  # psycopg only where it is used

        await asyncio.to_thread(pgpurge.purge, settings.pg_dsn, spec.id)
    # Its state folder (keys, cursor, jobs; the log when it is a file) and its log wherever it is.
    await asyncio.to_thread(drop_log, settings.log, folder=settings.wal_dir(spec.id),
                            name=log_name(settings.log_prefix, spec.id), nats_url=settings.nats_url,
                            dsn=settings.pg_dsn)
