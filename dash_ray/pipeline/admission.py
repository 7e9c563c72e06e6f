"""Admission of one pipeline's ingest calls: for each batch, whether it is a duplicate
(answered with the first ack), the twin of a request still being logged (answered when that
one is), larger than the whole queue (413), past the queue's room (429), or to be stored.

Bounds: the queue holds the records acknowledged but not yet stored, counted in records and in
raw bytes; records of calls still waiting for their log sync count too (they are reserved when
admitted), so concurrent calls cannot together pass the bound. Refused batches cost nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from dash_ray.errors import BackpressureError, DashError, PayloadTooLargeError, UnavailableError
from dash_ray.ingest.batch import Ack, RawBatch
from dash_ray.ingest.idempotency import IdempotencyIndex
from dash_ray.pipeline.counters import Counters
from dash_ray.spec import PipelineSpec

__all__ = ["Admission", "Plan"]


@dataclass
class Plan:
    """How one call's batches are answered: `results[i]` is set for those answered at once;
    `fresh` are to be logged; `waits` wait for a twin in flight."""

    results: list[Ack | DashError | None]
    fresh: list[tuple[int, RawBatch]] = field(default_factory=list)
    waits: list[tuple[int, asyncio.Future[Ack]]] = field(default_factory=list)
    # The fresh batches' dedupe keys (in `fresh` order), records and bytes.
    keys: list[tuple[str, ...]] = field(default_factory=list)
    records: int = 0
    nbytes: int = 0


class Admission:
    """One pipeline's admission: its idempotency window and the keys in flight."""

    def __init__(self, spec: PipelineSpec, counters: Counters) -> None:
        self.spec = spec
        self.counters = counters
        self.keys = IdempotencyIndex(None)  # the pipeline swaps in its persistent index on start (recovery.py)
        self._inflight: dict[str, asyncio.Future[Ack]] = {}
        self.reserved_records = 0
        self.reserved_bytes = 0

    def plan(self, batches: Sequence[RawBatch], *, queued_records: int, queued_bytes: int,
             storage_error: str | None = None) -> Plan:
        """Sort a call's batches; reserves room for the fresh ones until `settle`. Past the
        queue's room a batch gets 429, or 503 when `storage_error` says storing is failing."""
        limits = self.spec.limits
        plan = Plan([None] * len(batches))
        room, room_bytes = self.room(queued_records=queued_records, queued_bytes=queued_bytes)
        loop = asyncio.get_running_loop()
        inflight = self._inflight
        for i, batch in enumerate(batches):
            count, nbytes = batch.count, len(batch.payload)
            self.counters.received += count
            keys = batch.dedupe_keys
            if keys:
                prior = next((a for a in map(self.keys.get, keys) if a is not None), None)
                if prior is not None:
                    plan.results[i] = prior
                    self.counters.duplicates += 1
                    continue
                twin = next((inflight[k] for k in keys if k in inflight), None)
                if twin is not None:
                    plan.waits.append((i, twin))
                    continue
            if count > limits.queue_records or nbytes > limits.queue_bytes:
                self.counters.rejected_requests += 1
                plan.results[i] = PayloadTooLargeError(
                    f"a request of {batch.count} records and {batch.nbytes} bytes is larger than pipeline "
                    f"{self.spec.id}'s whole queue ({limits.queue_records} records, {limits.queue_bytes} bytes)")
                continue
            if count > room or nbytes > room_bytes:
                self.counters.rejected_requests += 1
                if storage_error is not None:
                    # Not busy but blocked: the backlog cannot drain until storage is back.
                    plan.results[i] = UnavailableError(
                        f"pipeline {self.spec.id} cannot store: {storage_error}; its backlog of "
                        f"{queued_records} records ({queued_bytes} bytes) is full", retry_after=5.0)
                    continue
                plan.results[i] = BackpressureError(
                    f"pipeline {self.spec.id} has {queued_records} records ({queued_bytes} bytes) waiting "
                    f"for the lake (limits {limits.queue_records} records, {limits.queue_bytes} bytes)",
                    retry_after=max(1.0, self.spec.flush.seconds))
                continue
            room -= count
            room_bytes -= nbytes
            plan.fresh.append((i, batch))
            plan.keys.append(keys)
            plan.records += count
            plan.nbytes += nbytes
            if keys:
                future = loop.create_future()
                for key in keys:
                    inflight[key] = future
        self.reserved_records += plan.records
        self.reserved_bytes += plan.nbytes
        return plan

    def room(self, *, queued_records: int, queued_bytes: int) -> tuple[int, int]:
        """The records and bytes the queue has room for now, besides what is reserved."""
        limits = self.spec.limits
        return (limits.queue_records - queued_records - self.reserved_records,
                limits.queue_bytes - queued_bytes - self.reserved_bytes)

    def settle(self, plan: Plan, acks: Sequence[Ack], error: DashError | None) -> list[str]:
        """The fresh batches were logged (or failed with `error`): answer them and their
        twins, release the reservation; returns the keys now remembered."""
        self.reserved_records -= plan.records
        self.reserved_bytes -= plan.nbytes
        remembered = []
        for (i, _), keys, ack in zip(plan.fresh, plan.keys, acks, strict=True):
            future = None
            for key in keys:
                future = self._inflight.pop(key, None) or future
            if error is not None:
                plan.results[i] = error
                if future is not None:
                    future.set_exception(error)
                    future.exception()  # retrieved: a twin may not exist
                continue
            plan.results[i] = ack
            self.counters.accepted += ack.accepted
            for key in keys:
                self.keys.remember(key, ack)
                remembered.append(key)
            if future is not None:
                future.set_result(ack)
        return remembered

    async def answer_twins(self, plan: Plan) -> None:
        """Answer each batch that waited for its twin with the twin's ack, as a duplicate."""
        for i, future in plan.waits:
            try:
                ack = await asyncio.shield(future)
            except DashError as exc:
                plan.results[i] = exc
            else:
                self.counters.duplicates += 1
                plan.results[i] = Ack(ack.accepted, ack.first_seq, ack.last_seq, ack.rejected, duplicate=True)
