"""The registry: the Ray shell around the platform's one `Supervisor`, and the catalog's front
for tokens and ingest secrets.

A named, detached actor (`registry` in the platform's namespace) that Ray restarts when it
dies; a new one rebuilds from the catalog and adopts the pipeline actors still alive and
healthy. Supervision itself is plain Python (`dash_ray.supervision`), driven here over
`actors/runtime.py`. Answers are typed values (`PipelineView`, `Deployed`, `IngestAccess`,
`NewToken`); the web tier calls them through `serve_app/registry_client.py`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from actors.runtime import RayRuntime
from dash_ray.auth.secretbox import SecretBox
from dash_ray.auth.tokens import new_secret
from dash_ray.catalog import Catalog, PipelineStatus, TokenInfo, open_catalog
from dash_ray.errors import NotFoundError, SpecError
from dash_ray.lake_roots import LakeRoots
from dash_ray.settings import Settings
from dash_ray.spec import PipelineSpec
from dash_ray.supervision.supervisor import Supervisor
from dash_ray.supervision.view import Deployed, PipelineView

__all__ = ["REGISTRY_NAME", "IngestAccess", "NewToken", "Registry", "get_or_create_registry"]

REGISTRY_NAME = "registry"


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
        runtime = RayRuntime(settings)
        self._supervisor = Supervisor(
            _opener(settings), runtime, policy=settings.restart,
            lake_roots=LakeRoots(settings.lake_url, settings.lake_roots), purge=runtime.purge,
            has_database=settings.pg_dsn is not None, health_interval_s=settings.health_interval_s)
        self._supervisor.start()
        self._pg_dsn = settings.pg_dsn

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

    # -- tokens ----------------------------------------------------------------------------

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

    async def shutdown(self) -> None:
        """Stop every pipeline gracefully (flushing to the lake); for `dash-ray down`."""
        await self._supervisor.shutdown()


def get_or_create_registry(settings: Settings) -> Any:
    """The platform's registry actor, created when there is none."""
    return Registry.options(
        name=REGISTRY_NAME, namespace=settings.namespace, lifetime="detached", get_if_exists=True,
    ).remote(settings)
