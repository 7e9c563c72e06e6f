"""Who may do what, as the registry answers it: bearer tokens (made, listed, checked by hash,
revoked), the page sessions opened with them (`dash_ray.auth.sessions`), each pipeline's
ingest secrets (rotated with a grace period; those valid now, for an ingress) and the
single-use tickets a live socket opens with (`dash_ray.auth.tickets`).

Tokens, sessions and secrets live in the catalog (its blocking calls run in threads), so a
session outlives a restart of the registry or of any web replica; tickets live in memory
only, so after a registry restart a client asks for a new one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from dash_ray.auth.sessions import Credential, SessionGrant, SessionPolicy, hash_session, new_session_id
from dash_ray.auth.tickets import LiveTickets
from dash_ray.auth.tokens import Scope, new_secret
from dash_ray.catalog import Catalog, PipelineStatus, TokenInfo
from dash_ray.errors import NotFoundError, SpecError
from dash_ray.spec import PipelineSpec

__all__ = ["Access", "IngestAccess", "NewToken"]


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


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Access:
    """Tokens, ingest secrets and live tickets over the catalog `catalog()` gives (it raises
    UnavailableError while the catalog is not open). `status` is a pipeline's status as the
    supervisor knows it now (None: it knows none), fresher than the catalog's."""

    def __init__(self, catalog: Callable[[], Catalog], *, status: Callable[[str], PipelineStatus | None],
                 tickets: LiveTickets | None = None, make_secret: Callable[[], str] = new_secret,
                 sessions: SessionPolicy | None = None, now: Callable[[], dt.datetime] = _utc_now) -> None:
        self._catalog = catalog
        self.session_policy = sessions or SessionPolicy()
        self._status = status
        self._tickets = tickets or LiveTickets()
        self._make_secret = make_secret
        self._now = now

    # -- ingest secrets --------------------------------------------------------------------

    async def rotate_secret(self, pipeline_id: str, grace_s: float) -> str:
        """A new current ingest secret; the one it replaces stays valid for `grace_s` seconds."""
        secret = self._make_secret()
        await asyncio.to_thread(self._catalog().rotate_secret, pipeline_id, secret, grace_seconds=grace_s,
                                now=self._now())
        return secret

    async def ingest_info(self, pipeline_id: str) -> IngestAccess:
        """The pipeline's spec, ingest secrets valid now and status; NotFoundError."""
        record = await asyncio.to_thread(self._catalog().get_pipeline, pipeline_id)
        if record is None:
            raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)
        status = self._status(pipeline_id) or record.status
        return IngestAccess(record.spec, record.valid_secrets(self._now()), status)

    # -- tokens ----------------------------------------------------------------------------

    async def token_scopes(self) -> dict[str, Scope]:
        """The scope of every live token by its hash: web replicas check tokens against it
        without a call per request (a hash of a 32-byte random secret reveals nothing)."""
        return await asyncio.to_thread(self._catalog().token_scopes)

    async def check_token(self, token: str) -> str | None:
        """The token's scope; None when it is unknown or revoked."""
        info = await asyncio.to_thread(self._catalog().check_token, token)
        return None if info is None else info.scope

    async def create_token(self, scope: str, *, name: str) -> NewToken:
        """A new token; SpecError (where `scope`) for an unknown scope or a bad name."""
        try:
            token_id, token = await asyncio.to_thread(self._catalog().create_token, scope, name=name)  # type: ignore[arg-type]
        except ValueError as exc:
            raise SpecError(str(exc), where="scope") from None
        return NewToken(token_id, token, scope, name)

    async def list_tokens(self) -> list[TokenInfo]:
        """The live tokens, oldest first: ids, names, scopes, creation times (no hashes)."""
        return await asyncio.to_thread(self._catalog().list_tokens)

    async def revoke_token(self, token_id: str) -> None:
        """Revoke a live token for good; NotFoundError when there is none by that id."""
        if not await asyncio.to_thread(self._catalog().revoke_token, token_id):
            raise NotFoundError(f"no token {token_id!r}", where=token_id)

    # -- page sessions ---------------------------------------------------------------------

    async def open_session(self, token_id: str, token_hash: str) -> tuple[str, SessionGrant]:
        """A new page session standing for the token `token_id` (`"admin"` for the admin
        token) whose hash is `token_hash`, checked by the web replica asking: its id, shown
        this once (the catalog keeps its hash), and what it grants."""
        session_id = new_session_id()
        grant = await asyncio.to_thread(self._catalog().sessions.open, hash_session(session_id), token_id=token_id,
                                        token_hash=token_hash, policy=self.session_policy)
        return session_id, grant

    async def sessions(self, seen: list[str]) -> dict[str, SessionGrant]:
        """Every live session by the hash of its id, after those in `seen` (hashes a web
        replica saw used) were marked used: web replicas check cookies against it without a
        call per request."""
        return await asyncio.to_thread(self._catalog().sessions.grants, seen, self.session_policy)

    async def close_session(self, session_hash: str) -> None:
        """Forget a session (sign-out); nothing happens for one that is not there."""
        await asyncio.to_thread(self._catalog().sessions.close, session_hash)

    # -- live tickets ----------------------------------------------------------------------

    def live_ticket(self, credential: Credential) -> str:
        """A single-use ticket for one live socket, standing for `credential` (checked by the
        web replica asking: a token, or a page session as `serve_app` writes it) for 30 s."""
        return self._tickets.issue(credential)

    def redeem_live_ticket(self, ticket: str) -> Credential | None:
        """The credential a live ticket stands for, once; None when unknown, used or expired."""
        return self._tickets.redeem(ticket)
