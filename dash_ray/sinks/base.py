"""Where a pipeline's mapped records go after they are durable: the `Sink` Protocol and the
hook in the flow (`Sinks`) that hands each mapped batch to every sink of the pipeline.

The hook is called by the pipeline core right after a batch is mapped, on its event loop,
with records that are already durable (they were acknowledged from the log). A sink must not
block or raise there: it takes the batch into its own bounded queue and delivers off the
ingest path (retries, back-off, breaker and dead deliveries: `dash_ray.pipeline.delivery`).
A sink that is slow or down never slows ingestion or other sinks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

__all__ = ["MappedBatch", "Sink", "Sinks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MappedBatch:
    """Consecutive durable records after mapping: rows carry `seq` and `time` columns;
    `first_seq..last_seq` is the input range (filtered and dead records included)."""

    pipeline_id: str
    first_seq: int
    last_seq: int
    rows: pa.Table


class Sink(Protocol):
    name: str

    def offer(self, batch: MappedBatch) -> None:
        """Take `batch` for delivery without blocking; never raises."""
        ...

    async def close(self) -> None:
        """Stop delivering; what is queued is kept or reported as the sink documents.
        Idempotent."""
        ...


class Sinks:
    """The hook: every sink of one pipeline, in spec order."""

    def __init__(self, sinks: list[Sink] | None = None) -> None:
        self._sinks = list(sinks or [])

    def __len__(self) -> int:
        return len(self._sinks)

    def add(self, sink: Sink) -> None:
        self._sinks.append(sink)

    def offer(self, batch: MappedBatch) -> None:
        for sink in self._sinks:
            try:
                sink.offer(batch)
            except Exception:  # a faulty sink must not reach the ingest path
                log.exception("sink %s of pipeline %s refused a batch", sink.name, batch.pipeline_id)

    async def close(self) -> None:
        for sink in self._sinks:
            try:
                await sink.close()
            except Exception:  # close the others all the same
                log.exception("sink %s failed to close", sink.name)
