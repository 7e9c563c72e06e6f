"""Live sockets outlive the check of their token: a socket opened with a token that is then
revoked must not go on streaming. Each web replica's `TokenGuard` checks the credential of
its live sockets again every `every_s` seconds, once per distinct credential however many
sockets share it, and closes the sockets of one that no longer reads: 4401 when it is unknown
or revoked, 4403 when its scope no longer allows reading. A check that cannot be made (the
registry is away) keeps the sockets: it is tried again next round.

With the default 5 s, a revoked token's sockets close within about 5 s of the revocation
(plus one check's time), inside the 10 s a revoked token may still be used anywhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

from dash_ray.errors import AuthError, ForbiddenError

__all__ = ["TokenGuard"]

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN = 4401, 4403

C = TypeVar("C", bound=Hashable)  # a credential: a token, a page session


class Closable(Protocol):
    def close(self, code: int | None = None) -> None: ...


class TokenGuard(Generic[C]):
    """The live sockets of one replica by credential; runs while it has any."""

    def __init__(self, check: Callable[[C], Awaitable[object]], *, every_s: float = 5.0) -> None:
        self._check = check  # raises AuthError or ForbiddenError when the credential may not read
        self.every_s = every_s
        self._sockets: dict[C, set[Closable]] = {}
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0

    def add(self, credential: C, socket: Closable) -> None:
        self._sockets.setdefault(credential, set()).add(socket)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, credential: C, socket: Closable) -> None:
        sockets = self._sockets.get(credential)
        if sockets is None:
            return
        sockets.discard(socket)
        if not sockets:
            del self._sockets[credential]
        if not self._sockets and self._task is not None:
            self._task.cancel()
            self._task = None

    def __len__(self) -> int:
        return sum(len(s) for s in self._sockets.values())

    async def check_now(self) -> None:
        """One round: check every credential, close the sockets of those refused."""
        for credential in list(self._sockets):
            try:
                await self._check(credential)
            except AuthError:
                self._close(credential, CLOSE_UNAUTHORIZED)
            except ForbiddenError:
                self._close(credential, CLOSE_FORBIDDEN)
            except Exception as exc:  # noqa: BLE001 - not known now: keep them, ask next round
                log.info("live: a token check could not be made (%s); next round", type(exc).__name__)
        self.rounds += 1

    def _close(self, credential: C, code: int) -> None:
        for socket in list(self._sockets.pop(credential, ())):
            socket.close(code)

    async def _run(self) -> None:
        while self._sockets:
            await asyncio.sleep(self.every_s)
            await self.check_now()
        self._task = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
