"""Named secrets: the values sources and sinks use (API keys, passwords, Slack URLs), put by
an admin (`PUT /v1/secrets/{name}`), kept encrypted with the catalog's `SecretBox`, referenced
from specs as `{"secret": "<name>"}` and never returned by any route: only a pipeline's own
process is handed the values its spec refers to, at its start."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dash_ray.auth.secretbox import SecretBox
from dash_ray.catalog.base import Backend, Transaction
from dash_ray.catalog.tokens import utc
from dash_ray.errors import NotFoundError

__all__ = ["SecretInfo", "NamedSecrets"]

# The largest value kept: a PEM key fits, a file does not.
MAX_SECRET_BYTES = 64 * 1024


@dataclass(frozen=True)
class SecretInfo:
    """A named secret as listed: never its value."""

    name: str
    created_at: dt.datetime
    updated_at: dt.datetime


class NamedSecrets:
    """Put, list, delete and open named secrets; each call one short transaction."""

    def __init__(self, backend: Backend, box: SecretBox, clock: Callable[[], dt.datetime]) -> None:
        self._backend = backend
        self._box = box
        self._clock = clock

    def put(self, name: str, value: str) -> bool:
        """Create or replace the secret `name`; True when it was created."""
        if len(value.encode()) > MAX_SECRET_BYTES:
            raise ValueError(f"a secret holds at most {MAX_SECRET_BYTES} bytes")
        now = self._clock()
        ciphertext = self._box.encrypt(value)

        def work(tx: Transaction) -> bool:
            inserted = tx.execute(
                "INSERT INTO named_secrets (name, ciphertext, created_at, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING RETURNING name", (name, ciphertext, now, now))
            if not inserted:
                tx.execute("UPDATE named_secrets SET ciphertext = ?, updated_at = ? WHERE name = ?",
                           (ciphertext, now, name))
            return bool(inserted)

        return self._backend.run(work)

    def list(self) -> list[SecretInfo]:
        """Every secret's name and times, by name."""
        rows = self._backend.run(lambda tx: tx.execute(
            "SELECT name, created_at, updated_at FROM named_secrets ORDER BY name"))
        return [SecretInfo(name, utc(created), utc(updated)) for name, created, updated in rows]

    def delete(self, name: str) -> bool:
        """Forget the secret; False when there was none."""
        return bool(self._backend.run(
            lambda tx: tx.execute("DELETE FROM named_secrets WHERE name = ? RETURNING name", (name,))))

    def values(self, names: Iterable[str]) -> dict[str, str]:
        """The values of `names`, decrypted; NotFoundError naming every one that is missing."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        marks = ", ".join("?" * len(wanted))
        rows: Sequence[Any] = self._backend.run(lambda tx: tx.execute(
            f"SELECT name, ciphertext FROM named_secrets WHERE name IN ({marks})", wanted))
        found = {name: self._box.decrypt(bytes(ciphertext), what=f"the secret {name!r}")
                 for name, ciphertext in rows}
        missing = [name for name in wanted if name not in found]
        if missing:
            raise NotFoundError(f"no secret named {', '.join(map(repr, missing))}; "
                                "put it with PUT /v1/secrets/{name} (dash-ray secrets set NAME)",
                                where=missing[0])
        return found

    def names(self) -> set[str]:
        return {info.name for info in self.list()}
