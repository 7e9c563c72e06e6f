"""The `push` source: records sent to `POST /v1/pipelines/{id}/events`, signed with
`Dash-Signature` (see `dash_ray.ingest.signing` for what a replay can and cannot do)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dash_ray.ingest.signing import CLOCK_WINDOW_S, DashScheme
from dash_ray.sources.base import Ingest, Route
from dash_ray.spec import PushSource

__all__ = ["PushReceiver"]


@dataclass(frozen=True)
class PushReceiver:
    """Takes signed pushes; its signature carries a timestamp, so a replay is refused after
    300 s and a duplicate within them."""

    scheme: DashScheme = field(default_factory=DashScheme)
    route: Route | None = "events"
    idempotency_header: str | None = None

    @classmethod
    def from_spec(cls, spec: PushSource, *, clock: Callable[[], float] = time.time) -> PushReceiver:
        return cls(DashScheme(window_s=CLOCK_WINDOW_S, clock=clock))

    def precheck(self, headers: Mapping[str, str]) -> Any:
        return self.scheme.precheck(headers)

    def verify(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str],
               checked: Any = None) -> str | None:
        return self.scheme.verify(headers, body, secrets, checked)

    async def run(self, ingest: Ingest) -> None:
        return None
