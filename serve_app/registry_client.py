"""The web tier's one way to the registry actor: a typed method per registry call (the handle
and the translation of its errors are `actor_client.py`'s)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actors.names import REGISTRY_NAME
from dash_ray.auth.sessions import Credential, SessionGrant
from dash_ray.catalog import DashboardRecord, SecretInfo, TokenInfo
from dash_ray.registry.access import IngestAccess, NewToken
from dash_ray.supervision.view import Deployed, PipelineView
from serve_app.actor_client import ActorClient

__all__ = ["RegistryClient"]


class RegistryClient(ActorClient):
    """The registry of the platform in `namespace`, looked up on first use and again after
    it became unreachable. Every method raises the DashError the registry raised (NotFoundError,
    SpecError, ...), or UnavailableError when the registry cannot be reached; none retries."""

    def __init__(self, namespace: str, *, handle: Any = None,
                 locate: Callable[[], Any] | None = None) -> None:
        super().__init__(REGISTRY_NAME, namespace, absent="the registry is not running", retry_after_s=2.0,
                         handle=handle, locate=locate)

    async def ready(self, *, wait_s: float = 0.0) -> None:
        """Returns once the registry has booted; UnavailableError saying why while not."""
        await self._call(lambda r: r.ready.remote(wait_s))

    async def put(self, spec_data: dict[str, Any]) -> Deployed:
        """Create or update a pipeline from its spec (plain data, fields in their order)."""
        return await self._call(lambda r: r.put.remote(spec_data))

    async def get(self, pipeline_id: str) -> PipelineView:
        """The pipeline, its counters asked of it now (or the last known, see `counters_at`)."""
        return await self._call(lambda r: r.get.remote(pipeline_id))

    async def pipelines(self) -> list[PipelineView]:
        """Every pipeline by id, counters as of the last health round."""
        return await self._call(lambda r: r.pipelines.remote())

    async def delete(self, pipeline_id: str, *, purge: bool = False) -> None:
        await self._call(lambda r: r.delete.remote(pipeline_id, purge))

    async def restart(self, pipeline_id: str) -> PipelineView:
        return await self._call(lambda r: r.restart.remote(pipeline_id))

    async def rotate_secret(self, pipeline_id: str, *, grace_s: float) -> str:
        """A new current ingest secret; the previous one stays valid for `grace_s` seconds."""
        return await self._call(lambda r: r.rotate_secret.remote(pipeline_id, grace_s))

    async def ingest_info(self, pipeline_id: str) -> IngestAccess:
        return await self._call(lambda r: r.ingest_info.remote(pipeline_id))

    async def pipeline_ids(self) -> list[str]:
        """The id of every pipeline (from the registry's memory, not the catalog)."""
        return await self._call(lambda r: r.pipeline_ids.remote())

    async def token_scopes(self) -> dict[str, str]:
        """The scope of every live catalog token, by the token's hash (`hash_token`)."""
        return await self._call(lambda r: r.token_scopes.remote())

    async def check_token(self, token: str) -> str | None:
        """The scope of a catalog token, None when it is unknown or revoked."""
        return await self._call(lambda r: r.check_token.remote(token))

    async def create_token(self, scope: str, *, name: str) -> NewToken:
        return await self._call(lambda r: r.create_token.remote(scope, name))

    async def list_tokens(self) -> list[TokenInfo]:
        """The live tokens, oldest first; never a token or its hash."""
        return await self._call(lambda r: r.list_tokens.remote())

    async def revoke_token(self, token_id: str) -> None:
        await self._call(lambda r: r.revoke_token.remote(token_id))

    async def open_session(self, token_id: str, token_hash: str) -> tuple[str, SessionGrant]:
        """A new page session for a checked token: its id (shown once) and what it grants."""
        return await self._call(lambda r: r.open_session.remote(token_id, token_hash))

    async def sessions(self, seen: list[str]) -> dict[str, SessionGrant]:
        """Every live page session by the hash of its id, once those in `seen` are marked used."""
        return await self._call(lambda r: r.sessions.remote(seen))

    async def close_session(self, session_hash: str) -> None:
        """Forget a page session (sign-out)."""
        await self._call(lambda r: r.close_session.remote(session_hash))

    async def live_ticket(self, credential: Credential) -> str:
        """A single-use ticket standing for `credential` for one live socket (`dash_ray.auth.tickets`)."""
        return await self._call(lambda r: r.live_ticket.remote(credential))

    async def redeem_live_ticket(self, ticket: str) -> Credential | None:
        """The credential a live ticket stands for, once; None when unknown, used or expired."""
        return await self._call(lambda r: r.redeem_live_ticket.remote(ticket))

    async def report_web(self, replica: str, report: dict[str, Any]) -> None:
        """Keep a web replica's own metric counts where other replicas' scrapes find them."""
        await self._call(lambda r: r.report_web.remote(replica, report))

    async def web_reports(self) -> dict[str, dict[str, Any]]:
        """Every web replica's last metric report, by replica (see serve_app/metrics.py)."""
        return await self._call(lambda r: r.web_reports.remote())

    async def put_dashboard(self, data: dict[str, Any]) -> DashboardRecord:
        """Create or replace a dashboard (`created` says which); SpecError naming problems."""
        return await self._call(lambda r: r.put_dashboard.remote(data))

    async def dashboards(self) -> list[DashboardRecord]:
        return await self._call(lambda r: r.dashboards.remote())

    async def dashboard(self, dashboard_id: str) -> DashboardRecord:
        return await self._call(lambda r: r.dashboard.remote(dashboard_id))

    async def delete_dashboard(self, dashboard_id: str) -> None:
        await self._call(lambda r: r.delete_dashboard.remote(dashboard_id))

    async def put_secret(self, name: str, value: object) -> bool:
        """Create or replace a named secret (SpecError unless `value` is a non-empty string);
        True when created."""
        return await self._call(lambda r: r.put_secret.remote(name, value))

    async def list_secrets(self) -> list[SecretInfo]:
        """Every named secret's name and times; never a value."""
        return await self._call(lambda r: r.list_secrets.remote())

    async def delete_secret(self, name: str) -> None:
        await self._call(lambda r: r.delete_secret.remote(name))
