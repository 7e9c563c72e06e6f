"""The registry: the Ray shell around the platform's `RegistryCore` (`dash_ray.registry`), the
supervisor of every pipeline and the catalog's front for tokens, ingest secrets, named secrets and dashboards.

A named, detached actor (`registry` in the platform's namespace) that Ray restarts when it
dies (`max_restarts=-1`); a new one rebuilds from the catalog and adopts the pipeline actors
still alive and healthy. Answers are typed values (`PipelineView`, `Deployed`, `IngestAccess`,
`NewToken`); the web tier calls them through `serve_app/registry_client.py`.
"""

from __future__ import annotations

from typing import Any

import ray

from actors.names import REGISTRY_NAME
from actors.runtime import RayRuntime
from dash_ray.auth.sessions import Credential, SessionGrant
from dash_ray.auth.tokens import Scope
from dash_ray.catalog import DashboardRecord, SecretInfo, TokenInfo
from dash_ray.process_logging import setup_logging
from dash_ray.registry.access import IngestAccess, NewToken
from dash_ray.registry.core import RegistryCore
from dash_ray.settings import Settings
from dash_ray.supervision.view import Deployed, PipelineView

__all__ = ["REGISTRY_NAME", "Registry", "get_or_create_registry", "registry_options"]

HEAD_NODE_RESOURCE_NAME = "node:__internal_head__"  # ray._common.constants, on the head node only


# As PipelineActor's (actors/pipeline.py): ray.remote's overloads lack max_concurrency.
@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)  # type: ignore[call-overload]
class Registry:
    def __init__(self, settings: Settings) -> None:
        setup_logging(settings.log_format)
        core = RegistryCore.from_settings(settings, runtime := RayRuntime(settings))
        core.start()
        self._core, self._supervisor, self._access, self._runtime = core, core.supervisor, core.access, runtime

    async def silver_dsn(self) -> str | None:
        return self._core.silver_dsn

    async def ready(self, wait_s: float = 0.0) -> None:
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

    async def pipeline_ids(self) -> list[str]:
        return sorted(self._supervisor.specs())

    async def locate(self, pipeline_id: str) -> str | None:
        """The name of the shared host actor running the pipeline (None: it runs in an actor
        of its own, `pipeline:<id>`, or not at all)."""
        return self._runtime.shared.host_of(pipeline_id)

    async def hosts(self) -> dict[str, int]:
        """Each shared host actor's number of pipelines."""
        return self._runtime.shared.hosts()

    # -- access: ingest secrets, tokens, page sessions, live tickets --------------------------------------

    async def rotate_secret(self, pipeline_id: str, grace_s: float) -> str:
        return await self._access.rotate_secret(pipeline_id, grace_s)

    async def ingest_info(self, pipeline_id: str) -> IngestAccess:
        return await self._access.ingest_info(pipeline_id)

    async def token_scopes(self) -> dict[str, Scope]:
        return await self._access.token_scopes()

    async def check_token(self, token: str) -> str | None:
        return await self._access.check_token(token)

    async def create_token(self, scope: str, name: str) -> NewToken:
        return await self._access.create_token(scope, name=name)

    async def list_tokens(self) -> list[TokenInfo]:
        return await self._access.list_tokens()

    async def revoke_token(self, token_id: str) -> None:
        await self._access.revoke_token(token_id)

    async def open_session(self, token_id: str, token_hash: str) -> tuple[str, SessionGrant]:
        return await self._access.open_session(token_id, token_hash)

    async def sessions(self, seen: list[str]) -> dict[str, SessionGrant]:
        return await self._access.sessions(seen)

    async def close_session(self, session_hash: str) -> None:
        await self._access.close_session(session_hash)

    async def live_ticket(self, credential: Credential) -> str:
        return self._access.live_ticket(credential)

    async def redeem_live_ticket(self, ticket: str) -> Credential | None:
        return self._access.redeem_live_ticket(ticket)

    # -- the web replicas' metric reports --------------------------------------------------

    async def report_web(self, replica: str, report: dict[str, Any]) -> None:
        self._core.web_reports.put(replica, report)

    async def web_reports(self) -> dict[str, dict[str, Any]]:
        return self._core.web_reports.current()

    # -- dashboards ------------------------------------------------------------------------

    async def put_dashboard(self, data: dict[str, Any]) -> DashboardRecord:
        return await self._core.dashboards.put(data)

    async def dashboards(self) -> list[DashboardRecord]:
        return await self._core.dashboards.list()

    async def dashboard(self, dashboard_id: str) -> DashboardRecord:
        return await self._core.dashboards.get(dashboard_id)

    async def delete_dashboard(self, dashboard_id: str) -> None:
        await self._core.dashboards.delete(dashboard_id)

    # -- named secrets ---------------------------------------------------------------------

    async def put_secret(self, name: str, value: object) -> bool:
        return await self._core.secrets.put(name, value)

    async def list_secrets(self) -> list[SecretInfo]:
        return await self._core.secrets.infos()

    async def delete_secret(self, name: str) -> None:
        await self._core.secrets.delete(name)

    async def secrets_for(self, pipeline_id: str) -> dict[str, str]:
        """The values of the named secrets `pipeline_id`'s spec refers to, for its process."""
        return await self._core.secrets.for_pipeline(pipeline_id)

    async def shutdown(self) -> None:
        """Stop every pipeline gracefully (flushing to the lake); for `dash-ray down`."""
        await self._core.shutdown()


def registry_options(settings: Settings) -> dict[str, Any]:
    """How the registry actor is made, beside its class's options: by name in the platform's
    namespace, detached, and found rather than made again when it exists; on the head node
    (Ray's own resource of the head, as Ray Train's state actor asks), so losing any other
    node does not take the supervisor with it."""
    return {"name": REGISTRY_NAME, "namespace": settings.namespace, "lifetime": "detached", "get_if_exists": True,
            "resources": {HEAD_NODE_RESOURCE_NAME: 0.001}}


def get_or_create_registry(settings: Settings) -> Any:
    """The platform's registry actor, created when there is none."""
    return Registry.options(**registry_options(settings)).remote(settings)  # type: ignore[attr-defined]
