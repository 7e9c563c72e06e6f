"""The catalog's API tokens: made, checked by their hash, listed, revoked. A part of `Catalog`
(its methods run over the catalog's `Backend`); a token itself is returned only when made."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from dash_ray.auth.tokens import SCOPES, Scope, hash_token, new_token, token_id_of, token_matches
from dash_ray.catalog.base import Backend, TokenInfo, Transaction

__all__ = ["TokenTable", "utc"]

_MAX_TOKEN_NAME = 200
_MAX_TOKEN_CHARS = 200
_TOKEN_COLUMNS = "id, name, scope, created_at"


class TokenTable:
    """The token methods of `Catalog`, over its `_backend` and clock (`_now`)."""

    _backend: Backend

    def _now(self) -> dt.datetime:
        raise NotImplementedError

    def create_token(self, scope: Scope, *, name: str) -> tuple[str, str]:
        """A new bearer token: `(token_id, token)`. The token is returned only here; the
        catalog keeps its hash."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
        if not name or len(name) > _MAX_TOKEN_NAME:
            raise ValueError(f"a token name is 1 to {_MAX_TOKEN_NAME} characters")
        token_id, token = new_token()
        now = self._now()
        self._backend.run(
            lambda tx: tx.execute(
                "INSERT INTO tokens (id, name, scope, hash, created_at, revoked_at)"
                " VALUES (?, ?, ?, ?, ?, NULL)",
                (token_id, name, scope, hash_token(token), now),
            )
        )
        return token_id, token

    def check_token(self, token: str) -> TokenInfo | None:
        """The token's info when it is one this catalog made and has not revoked; else None."""
        token_id = token_id_of(token) if len(token) <= _MAX_TOKEN_CHARS else None
        if token_id is None:
            return None
        rows = self._backend.run(
            lambda tx: tx.execute(
                f"SELECT {_TOKEN_COLUMNS}, hash FROM tokens WHERE id = ? AND revoked_at IS NULL",
                (token_id,),
            )
        )
        if not rows or not token_matches(token, rows[0][4]):
            return None
        return _token_info(rows[0])

    def token_scopes(self) -> dict[str, Scope]:
        """The scope of every token not revoked, by its stored hash (`hash_token`)."""
        rows = self._backend.run(lambda tx: tx.execute("SELECT hash, scope FROM tokens WHERE revoked_at IS NULL"))
        return {row[0]: row[1] for row in rows}

    def list_tokens(self) -> list[TokenInfo]:
        """Tokens not revoked, oldest first."""
        rows = self._backend.run(
            lambda tx: tx.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE revoked_at IS NULL"
                " ORDER BY created_at, id"
            )
        )
        return [_token_info(row) for row in rows]

    def revoke_token(self, token_id: str) -> bool:
        """Revoke a token for good, and end every page session opened with it (in the same
        transaction); False when there was no such live token."""
        now = self._now()

        def work(tx: Transaction) -> list[tuple[Any, ...]]:
            rows = tx.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING id",
                              (now, token_id))
            tx.execute("DELETE FROM sessions WHERE token_id = ?", (token_id,))
            return rows

        return bool(self._backend.run(work))


def _token_info(row: Sequence[Any]) -> TokenInfo:
    return TokenInfo(id=row[0], name=row[1], scope=row[2], created_at=utc(row[3]))


def utc(value: Any) -> Any:
    """A stored timestamp (ISO text from SQLite, a datetime from PostgreSQL) as aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)
