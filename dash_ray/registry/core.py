"""The registry's parts over one catalog, built from the platform's settings: the supervisor
of every pipeline (`dash_ray.supervision`), access (tokens, page sessions, ingest secrets, live tickets),
named secrets, dashboards, the web replicas' reports, and where PostgreSQL silver lives."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dash_ray.auth.secretbox import SecretBox
from dash_ray.auth.sessions import SessionPolicy
from dash_ray.catalog import Catalog, open_catalog
from dash_ray.lake_roots import LakeRoots
from dash_ray.lifecycle.purge import purge
from dash_ray.registry.access import Access
from dash_ray.registry.dashboards import Dashboards
from dash_ray.registry.reports import WebReports
from dash_ray.registry.secrets import Secrets
from dash_ray.settings import Settings
from dash_ray.supervision.runtime import Runtime
from dash_ray.supervision.supervisor import Supervisor

__all__ = ["RegistryCore", "catalog_opener"]


def catalog_opener(settings: Settings) -> Callable[[], Catalog]:
    """How the supervisor opens the platform's catalog (and tries again while it cannot)."""
    def open_it() -> Catalog:
        # Read again on each attempt, so a key file fixed by the operator is picked up.
        box = SecretBox.from_env_or_file(settings.secret_key, Path(settings.home) / "secret.key")
        return open_catalog(settings.catalog_url, box=box)
    return open_it


class RegistryCore:
    """The registry: `start()` inside a running event loop (the supervisor boots, then
    watches), the parts' calls, then `await shutdown()`."""

    def __init__(self, supervisor: Supervisor, *, silver_dsn: str | None = None,
                 web_reports: WebReports | None = None, sessions: SessionPolicy | None = None) -> None:
        self.supervisor = supervisor
        self.access = Access(lambda: supervisor.catalog, status=supervisor.status, sessions=sessions)
        self.dashboards = Dashboards(lambda: supervisor.catalog, supervisor.specs)
        self.secrets = Secrets(lambda: supervisor.catalog, supervisor.specs)
        self.web_reports = web_reports or WebReports()
        # The database a pipeline keeps its PostgreSQL silver in (None: the platform has
        # none), asked by each pipeline at its start, so it is in no process's arguments.
        self.silver_dsn = silver_dsn

    @classmethod
    def from_settings(cls, settings: Settings, runtime: Runtime[Any]) -> RegistryCore:
        supervisor = Supervisor(
            catalog_opener(settings), runtime, policy=settings.restart,
            lake_roots=LakeRoots(settings.lake_url, settings.lake_roots),
            purge=functools.partial(purge, settings=settings),
            has_database=settings.pg_dsn is not None, health_interval_s=settings.health_interval_s)
        return cls(supervisor, silver_dsn=settings.pg_dsn, sessions=settings.session)

    def start(self) -> None:
        self.supervisor.start()

    async def shutdown(self) -> None:
        """Stop every pipeline gracefully (flushing to the lake) and close the catalog."""
        await self.supervisor.shutdown()
