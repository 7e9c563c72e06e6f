"""What the supervisor drives: a `Runtime` that finds, starts, checks and stops one pipeline's
process (a Ray actor in `actors/runtime.py`, in-memory handles in the tests), and the typed
`Health` a running pipeline answers with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from dash_ray.spec import PipelineSpec

__all__ = ["Handle", "Health", "Runtime"]

Handle = TypeVar("Handle")


@dataclass(frozen=True)
class Health:
    """A pipeline's answer to a health check: the core's state (`running` when it takes
    ingest), its counters (`dash_ray.pipeline.core.Counters` as a dict), and the state of
    its source when it keeps one (a poller's `source_state`: `dash_ray.sources.polling`)."""

    state: str
    counters: Mapping[str, Any] = field(default_factory=dict)
    wal_bytes: int = 0
    source_state: Mapping[str, Any] | None = None
    node: str | None = None  # the id of the node it runs on, when the runtime says
    host: str | None = None  # the shared host actor it runs in (`placement: shared`), when it does

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def waiting_in_log(self) -> int:
        """Acknowledged records not yet stored in the lake (`last_seq - stored_seq`)."""
        last = int(self.counters.get("last_seq") or 0)
        stored = int(self.counters.get("stored_seq") or 0)
        return max(0, last - stored)

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any], *, host: str | None = None) -> Health:
        """From the dict `PipelineCore.health()` returns (with `node` when the runtime adds it);
        `host`: the shared host actor that answered."""
        return cls(state=str(answer.get("state", "unknown")), counters=dict(answer.get("counters") or {}),
                   wal_bytes=int(answer.get("wal_bytes") or 0), source_state=answer.get("source_state"),
                   node=answer.get("node") or None, host=host)


class Runtime(Protocol[Handle]):
    """Where pipelines run. Every method may raise; the supervisor treats any error of
    `start` or `health` as a crash of that pipeline. Handles are opaque to the supervisor."""

    async def find(self, pipeline_id: str) -> Handle | None:
        """The live process of `pipeline_id` left by an earlier supervisor, if any (to adopt
        it). Finding one says nothing of its health."""
        ...

    async def start(self, spec: PipelineSpec) -> tuple[Handle, Health]:
        """Create the pipeline's process and start it (it recovers from its log and lake);
        returns once it takes ingest. On failure it cleans up what it created, then raises."""
        ...

    async def health(self, handle: Handle) -> Health:
        """The pipeline's health; raises when it cannot go on. The supervisor bounds the
        wait with its own timeout."""
        ...

    async def stop(self, handle: Handle, *, graceful: bool) -> None:
        """End the process. `graceful`: ask it to flush and close first (what it could not
        flush stays in its log), then kill it; otherwise kill it at once. Idempotent; never
        raises for a process that is already gone."""
        ...
