"""What the server answers, as the SDK hands it back: a pipeline (`Pipeline`), a dashboard
(`Dashboard`) and the result of an ingest (`IngestResult`). Plain frozen dataclasses built from
the JSON bodies; `dash_ray.client` re-exports them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Dashboard", "IngestResult", "Pipeline"]


@dataclass(frozen=True)
class Pipeline:
    """A pipeline as the server reports it. `ingest_secret` is set only in the answer to
    the request that created it (or rotated its secret); the server never shows it again."""

    id: str
    status: str
    restarts: int
    last_error: str | None
    counters: dict[str, Any]
    spec: dict[str, Any]
    version: int = 0
    ingest_secret: str | None = field(default=None, repr=False)
    # As of the pipeline's last health answer (ISO 8601 text): see docs/API.md.
    counters_at: str | None = None
    waiting_in_log: int = 0
    next_restart_at: str | None = None
    source_state: dict[str, Any] | None = None  # a feeding source's (mqtt, pipeline, a poller)
    node: str | None = None  # the Ray node id it runs on (None while it does not run)
    placement: str = "dedicated"  # `dedicated` (an actor of its own) or `shared` (in a host actor)
    host: str | None = None  # the shared host actor it runs in (None: dedicated, or not running)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Pipeline:
        return cls(
            id=body["id"],
            status=body["status"],
            restarts=body.get("restarts", 0),
            last_error=body.get("last_error"),
            counters=body.get("counters") or {},
            spec=body.get("spec") or {},
            version=body.get("version", 0),
            ingest_secret=body.get("ingest_secret"),
            counters_at=body.get("counters_at"),
            waiting_in_log=body.get("waiting_in_log", 0),
            next_restart_at=body.get("next_restart_at"),
            source_state=body.get("source_state"),
            node=body.get("node"),
            placement=body.get("placement") or "dedicated",
            host=body.get("host"),
        )


@dataclass(frozen=True)
class Dashboard:
    """A dashboard as the server reports it (`widgets` as plain dicts, defaults filled in)."""

    id: str
    title: str
    widgets: list[dict[str, Any]]
    description: str = ""
    version: int = 0

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Dashboard:
        return cls(id=body["id"], title=body["title"], widgets=list(body.get("widgets") or []),
                   description=body.get("description", ""), version=body.get("version", 0))


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    last_seq: int | None
    rejected: list[dict[str, Any]] = field(default_factory=list)
    duplicate: bool = False
