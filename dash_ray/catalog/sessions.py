"""The catalog's page sessions (`dash_ray.auth.sessions`): opened for a checked token, listed
live for the web replicas (each use pushing the idle deadline on), closed on sign-out, and
forgotten with their token when it is revoked (`TokenTable.revoke_token`). Only the hash of a
session id is stored, beside its token's id and hash; expired sessions are deleted as they are
met."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from typing import Any

from dash_ray.auth.sessions import SessionGrant, SessionPolicy
from dash_ray.catalog.base import Backend, Transaction
from dash_ray.catalog.tokens import utc

__all__ = ["SessionStore"]

_IN_CHUNK = 500  # ids per `IN (...)`: well under either database's parameter limit


class SessionStore:
    """`catalog.sessions`: the sessions table over the catalog's backend and clock."""

    def __init__(self, backend: Backend, now: Callable[[], dt.datetime]) -> None:
        self._backend = backend
        self._now = now

    def open(self, session_hash: str, *, token_id: str, token_hash: str, policy: SessionPolicy) -> SessionGrant:
        """Keep a new session of the token `token_id` (whose hash is `token_hash`, checked by
        the caller). Expired sessions go; past `policy.max_per_token` live sessions of the
        token, the least recently used go."""
        now = self._now()

        def work(tx: Transaction) -> None:
            _expire(tx, now, policy)
            rows = tx.execute("SELECT hash FROM sessions WHERE token_id = ? ORDER BY last_seen_at DESC, hash",
                              (token_id,))
            for (old,) in rows[policy.max_per_token - 1:]:
                tx.execute("DELETE FROM sessions WHERE hash = ?", (old,))
            tx.execute("INSERT INTO sessions (hash, token_id, token_hash, created_at, last_seen_at, expires_at)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       (session_hash, token_id, token_hash, now, now, now + dt.timedelta(seconds=policy.max_s)))

        self._backend.run(work)
        return SessionGrant(token_hash, (now + dt.timedelta(seconds=policy.idle_s)).timestamp(),
                            (now + dt.timedelta(seconds=policy.max_s)).timestamp())

    def grants(self, seen: Collection[str], policy: SessionPolicy) -> dict[str, SessionGrant]:
        """Every live session by its hash, after the sessions in `seen` (hashes used since the
        last call) were marked used now (at most once per `policy.touch_s` each)."""
        now = self._now()
        touched_before = now - dt.timedelta(seconds=policy.touch_s)

        def work(tx: Transaction) -> list[tuple[Any, ...]]:
            _expire(tx, now, policy)
            used = sorted(seen)
            for start in range(0, len(used), _IN_CHUNK):
                chunk = used[start:start + _IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                tx.execute(f"UPDATE sessions SET last_seen_at = ? WHERE last_seen_at < ? AND hash IN ({marks})",
                           (now, touched_before, *chunk))
            return tx.execute("SELECT hash, token_hash, last_seen_at, expires_at FROM sessions")

        rows = self._backend.run(work)
        return {row[0]: _grant(row, policy) for row in rows}

    def close(self, session_hash: str) -> bool:
        """Forget a session (sign-out); False when there was none."""
        rows = self._backend.run(
            lambda tx: tx.execute("DELETE FROM sessions WHERE hash = ? RETURNING hash", (session_hash,)))
        return bool(rows)


def _expire(tx: Transaction, now: dt.datetime, policy: SessionPolicy) -> None:
    tx.execute("DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at <= ?",
               (now, now - dt.timedelta(seconds=policy.idle_s)))


def _grant(row: Sequence[Any], policy: SessionPolicy) -> SessionGrant:
    return SessionGrant(row[1], utc(row[2]).timestamp() + policy.idle_s, utc(row[3]).timestamp())
