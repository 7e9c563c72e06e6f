"""The registry: the Ray shell around the platform's one `Supervisor`, and the catalog's front
for tokens, ingest secrets and dashboards.

A named, detached actor (`registry` in the platform's namespace) that Ray restarts when it
dies; a new one rebuilds from the catalog and adopts the pipeline actors still alive and
healthy. Supervision itself is plain Python (`dash_ray.supervision`), driven here over
`actors/runtime.py`. Answers are typed values (`PipelineView`, `Deployed`, `IngestAccess`,
`NewToken`); the web tier calls them through `serve_app/registry_client.py`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from actors.names import REGISTRY_NAME
from actors.runtime import RayRuntime
from dash_ray.auth.secretbox import SecretBox
from dash_ray.auth.tickets import LiveTickets
from dash_ray.auth.tokens import new_secret
from dash_ray.catalog import Catalog, DashboardRecord, PipelineStatus, TokenInfo, open_catalog
from dash_ray.dashboards import check_dashboard, parse_dashboard
from dash_ray.errors import NotFoundError, SpecError
from dash_ray.lake_roots import LakeRoots
from dash_ray.process_logging import setup_logging
from dash_ray.settings import Settings
from dash_ray.spec import PipelineSpec
from dash_ray.supervision.supervisor import Supervisor
from dash_ray.supervision.view import Deployed, PipelineView

__all__ = ["REGISTRY_NAME", "IngestAccess", "NewToken", "Registry", "get_or_create_registry"]

# Web replicas' metric reports (serve_app/metrics.py): kept this long, at most this many.
_WEB_REPORT_TTL_S = 120.0
_MAX_WEB_REPORTS = 1000


@dataclass(frozen=True)
class IngestAccess:
    """What an ingress needs to take a pipeline's requests: its spec, the ingest secrets
    valid now (current first), and its status."""

    spec: PipelineSpec
    secrets: tuple[str, ...] = field(repr=False)
    status: PipelineStatus


@dataclass(frozen=True)
class NewToken:
    """A bearer token just made; `token` is shown this once."""

    id: str
    token: str = field(repr=False)
    scope: str
    name: str


def _opener(settings: Settings) -> Any:
    def open_it() -> Catalog:
        # Read again on each attempt, so a key file fixed by the operator is picked up.
        box = SecretBox.from_env_or_file(settings.secret_key, Path(settings.home) / "secret.key")
        return open_catalog(settings.catalog_url, box=box)
    return open_it


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)
class Registry:
    def __init__(self, settings: Settings) -> None:
        setup_logging(settings.log_format)
        runtime = RayRuntime(settings)
        self._supervisor = Supervisor(
            _opener(settings), runtime, policy=settings.restart,
            lake_roots=LakeRoots(settings.lake_url, settings.lake_roots), purge=runtime.purge,
            has_database=settings.pg_dsn is not None, health_interval_s=settings.health_interval_s)
        self._supervisor.start()
        self._pg_dsn = settings.pg_dsn
        self._web_reports: dict[str, tuple[float, dict[str, Any]]] = {}
        self._tickets = LiveTickets()

    async def silver_dsn(self) -> str | None:
        """The database a pipeline actor keeps its PostgreSQL silver in, asked at its start
        (so the DSN is not in any actor's creation arguments), or None."""
        return self._pg_dsn

    async def ready(self, wait_s: float = 0.0) -> None:
        """Returns once every pipeline was adopted or started; UnavailableError saying why
        while not (waiting up to `wait_s` first), or the OperatorError that stops the boot."""
        await self._supervisor.ready(wait_s)

    # -- pipelines -------------------------------------------------------------------------

    async def put(self, spec_data: dict[str, Any]) -> Deployed:
        return await self._supervisor.put(spec_data)

    async def get(self, pipeline_id: str) -> PipelineView:
        return await self._supervisor.get(pipeline_id)

    async def pipelines(self) -> list[PipelineView]:
        return await self._supervisor.list()

    async def delete(self, pipeline_id: str, purge: bool) -> None:
        await self._supervisor.delete(pipeline_id, purge=purge)

    async def restart(self, pipeline_id: str) -> PipelineView:
        return await self._supervisor.restart(pipeline_id)

    async def rotate_secret(self, pipeline_id: str, grace_s: float) -> str:
        secret = new_secret()
        await asyncio.to_thread(self._supervisor.catalog.rotate_secret, pipeline_id, secret,
                                grace_seconds=grace_s, now=dt.datetime.now(dt.timezone.utc))
        return secret

    async def ingest_info(self, pipeline_id: str) -> IngestAccess:
        record = await asyncio.to_thread(self._supervisor.catalog.get_pipeline, pipeline_id)
        if record is None:
            raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)
        status = self._supervisor.status(pipeline_id) or record.status
        return IngestAccess(record.spec, record.valid_secrets(dt.datetime.now(dt.timezone.utc)), status)

    async def pipeline_ids(self) -> list[str]:
        """Every pipeline's id, from memory (a web replica's answer to made-up ids)."""
        return sorted(self._supervisor.specs())

    # -- tokens ----------------------------------------------------------------------------

    async def token_scopes(self) -> dict[str, str]:
        """The scope of every live token by its hash: web replicas check tokens against it
        without a call per request (a hash of a 32-byte random secret reveals nothing)."""
        return await asyncio.to_thread(self._supervisor.catalog.token_scopes)

    async def check_token(self, token: str) -> str | None:
        info = await asyncio.to_thread(self._supervisor.catalog.check_token, token)
        return None if info is None else info.scope

    async def create_token(self, scope: str, name: str) -> NewToken:
        try:
            token_id, token = await asyncio.to_thread(
                self._supervisor.catalog.create_token, scope, name=name)  # type: ignore[arg-type]
        except ValueError as exc:
            raise SpecError(str(exc), where="scope") from None
        return NewToken(token_id, token, scope, name)

    async def list_tokens(self) -> list[TokenInfo]:
        """The live tokens, oldest first: ids, names, scopes, creation times (no hashes)."""
        return await asyncio.to_thread(self._supervisor.catalog.list_tokens)

    async def revoke_token(self, token_id: str) -> None:
        if not await asyncio.to_thread(self._supervisor.catalog.revoke_token, token_id):
            raise NotFoundError(f"no token {token_id!r}", where=token_id)

    async def live_ticket(self, token: str) -> str:
        """A single-use ticket for one live socket, standing for `token` (checked by the
        web replica asking) for 30 s (`dash_ray.auth.tickets`)."""
        return self._tickets.issue(token)

    async def redeem_live_ticket(self, ticket: str) -> str | None:
        """The token a live ticket stands for, once; None when unknown, used or expired."""
        return self._tickets.redeem(ticket)

    # -- metrics ---------------------------------------------------------------------------

    async def report_web(self, replica: str, report: dict[str, Any]) -> None:
        """A web replica's own metric counts, pushed every few seconds (memory only: after a
        registry restart the replicas' next pushes bring them back)."""
        if replica not in self._web_reports and len(self._web_reports) >= _MAX_WEB_REPORTS:
            self._drop_old_reports()
        self._web_reports[replica] = (time.monotonic(), report)

    async def web_reports(self) -> dict[str, dict[str, Any]]:
        """The last report of every web replica heard from within the last two minutes."""
        self._drop_old_reports()
        return {replica: report for replica, (_, report) in self._web_reports.items()}

    def _drop_old_reports(self) -> None:
        oldest = time.monotonic() - _WEB_REPORT_TTL_S
        self._web_reports = {k: v for k, v in self._web_reports.items() if v[0] >= oldest}

    # -- dashboards ------------------------------------------------------------------------

    async def put_dashboard(self, data: dict[str, Any]) -> DashboardRecord:
        """Create or replace a dashboard; SpecError (422) naming each problem, including
        widgets over pipelines or fields there are not."""
        dashboard = parse_dashboard(data)
        check_dashboard(dashboard, self._supervisor.specs())
        return await asyncio.to_thread(self._supervisor.catalog.dashboards.put, dashboard)

    async def dashboards(self) -> list[DashboardRecord]:
        return await asyncio.to_thread(self._supervisor.catalog.dashboards.list)

    async def dashboard(self, dashboard_id: str) -> DashboardRecord:
        record = await asyncio.to_thread(self._supervisor.catalog.dashboards.get, dashboard_id)
        if record is None:
            raise NotFoundError(f"no dashboard {dashboard_id!r}", where=dashboard_id)
        return record

    async def delete_dashboard(self, dashboard_id: str) -> None:
        if not await asyncio.to_thread(self._supervisor.catalog.dashboards.delete, dashboard_id):
            raise NotFoundError(f"no dashboard {dashboard_id!r}", where=dashboard_id)

    async def shutdown(self) -> None:
        """Stop every pipeline gracefully (flushing to the lake); for `dash-ray down`."""
        await self._supervisor.shutdown()


def get_or_create_registry(settings: Settings) -> Any:
    """The platform's registry actor, created when there is none."""
    return Registry.options(
        name=REGISTRY_NAME, namespace=settings.namespace, lifetime="detached", get_if_exists=True,
    ).remote(settings)
