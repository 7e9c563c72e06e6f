"""What the web tier's typed actor clients (`registry_client.py`, `pipeline_client.py`) share:
the actor's handle, looked up by its name on first use and again once the actor became
unreachable, and the translation of what a Ray call fails with into the DashError it stands
for (`unwrap`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ray
from ray.exceptions import RayActorError, RayTaskError

from dash_ray.errors import DashError, InternalError, UnavailableError

__all__ = ["ActorClient", "unwrap"]

T = TypeVar("T")


def unwrap(exc: BaseException) -> DashError:
    """The DashError a Ray call failed with (the remote error itself when it was one)."""
    if isinstance(exc, DashError) and not isinstance(exc, RayTaskError):
        return exc
    cause = getattr(exc, "cause", None)
    if isinstance(cause, DashError):
        return cause
    if isinstance(exc, RayActorError):
        return UnavailableError(f"actor is not reachable: {type(exc).__name__}", retry_after=1.0)
    if isinstance(exc, RayTaskError):
        return InternalError(f"internal error: {type(cause or exc).__name__}: {cause or exc}"[:500])
    return InternalError(f"internal error: {type(exc).__name__}: {exc}"[:500])


class ActorClient:
    """One named actor of the platform's namespace, for one event loop. A subclass gives a
    typed method per call; each raises the DashError the actor raised, or UnavailableError
    when the actor cannot be reached (`absent` when none has the name); none retries."""

    def __init__(self, name: str, namespace: str, *, absent: str, retry_after_s: float,
                 handle: Any = None, locate: Callable[[], Any] | None = None) -> None:
        self._handle = handle
        self._absent, self._retry_after_s = absent, retry_after_s
        # How the handle is found (again): Ray's named-actor look-up unless a test says.
        self._locate = locate or (lambda: ray.get_actor(name, namespace=namespace))

    async def _actor(self) -> Any:
        if self._handle is None:
            try:
                self._handle = await asyncio.to_thread(self._locate)
            except ValueError:
                raise UnavailableError(self._absent, retry_after=self._retry_after_s) from None
        return self._handle

    async def _call(self, send: Callable[[Any], Awaitable[T]]) -> T:
        actor = await self._actor()
        try:
            return await send(actor)
        except Exception as exc:  # noqa: BLE001 - translated at the edge
            if isinstance(exc, RayActorError):
                self.forget()
            raise unwrap(exc) from None

    def forget(self) -> None:
        """Look the actor up again on the next call (it died, or was replaced)."""
        self._handle = None
