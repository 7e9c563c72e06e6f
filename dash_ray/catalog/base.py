"""What the catalog hands out (records, secret versions, token info) and the small Protocol a
database backend implements (`sqlite.py`, `postgres.py`); the catalog's logic, written once
over that Protocol, is in `store.py`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from dash_ray.auth.tokens import Scope
from dash_ray.spec import PipelineSpec

__all__ = [
    "Backend",
    "PipelineRecord",
    "PipelineStatus",
    "STATUSES",
    "SecretVersion",
    "TokenInfo",
    "Transaction",
]

PipelineStatus = Literal["starting", "running", "restarting", "failed", "stopped"]
STATUSES: tuple[PipelineStatus, ...] = ("starting", "running", "restarting", "failed", "stopped")

T = TypeVar("T")


@dataclass(frozen=True)
class SecretVersion:
    """One ingest secret: the current one has `valid_until` None; a previous one stays valid
    until `valid_until` (UTC), which verifiers must check."""

    secret: str = field(repr=False)
    valid_until: dt.datetime | None = None


@dataclass(frozen=True)
class PipelineRecord:
    """A pipeline as the catalog keeps it. `secrets` are decrypted, current first; `version`
    is 1 on create and goes up by one with each `put_pipeline`; `updated_at` is the time of
    the last `put_pipeline` (supervision state changes do not move it)."""

    spec: PipelineSpec
    secrets: tuple[SecretVersion, ...] = field(repr=False)
    status: PipelineStatus
    restarts: int
    last_error: str | None
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def id(self) -> str:
        return self.spec.id

    def valid_secrets(self, now: dt.datetime) -> tuple[str, ...]:
        """The secrets a request signed at `now` may use, current first."""
        return tuple(s.secret for s in self.secrets if s.valid_until is None or s.valid_until > now)


@dataclass(frozen=True)
class TokenInfo:
    """A bearer token as stored: never the token itself, which is shown once on creation."""

    id: str
    name: str
    scope: Scope
    created_at: dt.datetime


class Transaction(Protocol):
    """Statements inside one database transaction. SQL uses `?` placeholders and no literal
    `%`; parameters are str, int, bytes, None or UTC datetimes. Timestamps may come back as
    ISO text and JSON as text or parsed: the catalog normalises what it reads."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class Backend(Protocol):
    """One connection to one database, used by several threads (it serialises them)."""

    # migrations[n] holds the statements that bring the schema to version n + 1.
    # migrations[0] is the baseline: idempotent (`IF NOT EXISTS`), run on every open.
    migrations: tuple[tuple[str, ...], ...]

    def run(self, work: Callable[[Transaction], T], *, exclusive: bool = False) -> T:
        """Run `work` in one transaction and commit; roll back if it raises. `exclusive`
        also keeps other processes opening the same catalog out until the commit.

        May run `work` a second time on a new connection when the first one dropped before
        the commit. Raises UnavailableError when the database cannot be reached or is
        busy, InternalError once the backend is closed."""
        ...

    def close(self) -> None:
        """Close the connection. Idempotent."""
        ...
