"""What the supervisor tells the world about a pipeline: `PipelineView` (its state, as one
value that crosses the actor boundary by pickling) and `Deployed` (the answer to a PUT)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from dash_ray.catalog import PipelineStatus
from dash_ray.spec import PipelineSpec

__all__ = ["Deployed", "PipelineView"]


@dataclass(frozen=True)
class PipelineView:
    """One pipeline as the supervisor sees it.

    `counters` are the pipeline's own (`dash_ray.pipeline.core.Counters`), as of
    `counters_at` (None before its first health answer); they restart from zero (but for
    `last_seq`, `stored_seq`) when the pipeline restarts. `waiting_in_log` counts the
    acknowledged records not yet stored in the lake (`last_seq - stored_seq`), as of the same
    answer: they are safe in the pipeline's log and are stored once it runs. `next_restart_at`
    is set while `status` is `restarting`. `source_state` is its source's state as of the
    same answer (a poller's last poll, last error, cursor, next poll), None for a source
    that keeps none. Times are UTC."""

    id: str
    status: PipelineStatus
    restarts: int
    last_error: str | None
    version: int
    spec: PipelineSpec
    counters: dict[str, Any] = field(default_factory=dict)
    counters_at: dt.datetime | None = None
    waiting_in_log: int = 0
    next_restart_at: dt.datetime | None = None
    source_state: dict[str, Any] | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    node: str | None = None  # the Ray node id it runs on, as of `counters_at`
    host: str | None = None  # the shared host actor it runs in (`placement: shared`), as of the same

    @property
    def placement(self) -> str:
        """`dedicated` (an actor of its own) or `shared` (in a host actor): its spec's."""
        return self.spec.placement


@dataclass(frozen=True)
class Deployed:
    """The answer to creating or updating a pipeline. `ingest_secret` is set only when this
    call created it: it is shown this once."""

    pipeline: PipelineView
    created: bool
    ingest_secret: str | None = field(default=None, repr=False)
