"""The catalog: pipeline specs, ingest secrets (encrypted), supervision state, API tokens and
dashboards, kept in SQLite (a file under `$DASH_HOME`, the default) or PostgreSQL
(`DASH_PG_DSN`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from dash_ray.auth.secretbox import SecretBox
from dash_ray.catalog.base import Backend, PipelineRecord, PipelineStatus, SecretVersion, TokenInfo
from dash_ray.catalog.dashboards import DashboardRecord
from dash_ray.catalog.named_secrets import SecretInfo
from dash_ray.catalog.store import MAX_RETIRED_SECRETS, Catalog

__all__ = [
    "MAX_RETIRED_SECRETS",
    "Catalog",
    "DashboardRecord",
    "PipelineRecord",
    "PipelineStatus",
    "SecretInfo",
    "SecretVersion",
    "TokenInfo",
    "open_catalog",
]

_PG_SCHEMES = ("postgresql://", "postgres://")


def open_catalog(
    url_or_path: str | Path,
    *,
    box: SecretBox,
    clock: Callable[[], dt.datetime] | None = None,
    pg_schema: str = "dash",
) -> Catalog:
    """Open (creating or migrating its tables) the catalog at `url_or_path`: a
    `postgresql://` URL, whose tables live in schema `pg_schema`, or a SQLite file path.

    `box` encrypts the ingest secrets; when the catalog holds secrets `box` cannot open,
    this raises SecretKeyError naming the key's source. `clock` gives the UTC time stamped
    on records (default: the system clock)."""
    target = str(url_or_path)
    backend: Backend
    if target.startswith(_PG_SCHEMES):
        # Imported here: a SQLite catalog does not need psycopg.
        from dash_ray.catalog.postgres import PostgresBackend

        backend = PostgresBackend(target, schema=pg_schema)
    elif "://" in target:
        scheme = target.split("://", 1)[0]
        raise ValueError(
            f"catalog URL scheme {scheme!r} is not supported; give a postgresql:// URL or a file path"
        )
    else:
        from dash_ray.catalog.sqlite import SqliteBackend

        backend = SqliteBackend(Path(target).expanduser())
    return Catalog(backend, box=box, clock=clock)
