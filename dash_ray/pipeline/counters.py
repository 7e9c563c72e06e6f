"""What a pipeline reports about itself: `Counters`, as `GET /v1/pipelines/{id}` shows them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Counters"]


@dataclass
class Counters:
    """What a pipeline has done since it (re)started at `since` (ISO 8601 UTC); `last_seq` and
    `stored_seq` are durable facts, the rest are memory (`totals.py` keeps what outlives a restart).

    `pending` counts records acknowledged but not yet stored in the lake (they are in the log),
    `pending_bytes` their raw size; `mapping_backlog` the part of them not yet mapped (after a
    restart, the log is mapped in the background while ingest goes on). `flush_seconds` is the
    time the `flushes` took, in total (for the mean: divide the two)."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected_requests: int = 0
    mapped: int = 0
    dead: int = 0
    filtered: int = 0
    flushes: int = 0
    flush_failures: int = 0
    flush_seconds: float = 0.0
    last_seq: int = 0
    stored_seq: int = 0
    pending: int = 0
    pending_bytes: int = 0
    mapping_backlog: int = 0
    replayed: int = 0
    last_flush_at: str | None = None
    last_error: str | None = None
    since: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
