"""Gather concurrent ingest requests for one pipeline into few actor calls.

A Ray actor call costs about a millisecond of CPU here, far more than a request's own work,
so one call per request caps ingest at a few hundred requests a second. The scheme is adaptive,
not a fixed window: a request that finds a free call slot goes at once (lowest latency when
idle); requests arriving while `max_inflight` calls are running wait and all go together in the
next call (largest batches when busy). Nothing waits on a timer.

Bounded: at most `max_waiting_records` records and `max_waiting_bytes` bytes of records wait
here, and at most `WaitingBytes.limit_bytes` across a replica's coalescers; past either a
request gets 429 at once (BackpressureError) without being sent. A request that finds nothing
waiting (in its coalescer, and in the replica for the replica's bound) always goes, so one
larger than a bound is not refused forever. A call that fails at the transport (actor died or
unreachable) fails each of its requests with UnavailableError (503); such requests may or may
not have been stored, which is what `Idempotency-Key` is for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from dash_ray.errors import BackpressureError, DashError, UnavailableError
from dash_ray.ingest.batch import Ack, RawBatch

__all__ = ["MAX_WAITING_BYTES", "Coalescer", "WaitingBytes"]

Call = Callable[[list[RawBatch]], Awaitable[Sequence[Ack | DashError]]]
MAX_WAITING_BYTES = 64 * 2**20


class WaitingBytes:
    """The bytes of records waiting in all of one replica's coalescers (one event loop)."""

    def __init__(self, limit_bytes: int = 256 * 2**20) -> None:
        self.limit_bytes = limit_bytes
        self.used = 0


class Coalescer:
    """Per-pipeline request coalescing in one web replica; one instance per event loop."""

    def __init__(
        self,
        call: Call,
        *,
        max_inflight: int = 2,
        max_call_records: int = 50_000,
        max_call_bytes: int = 32 * 2**20,
        max_waiting_records: int = 200_000,
        max_waiting_bytes: int = MAX_WAITING_BYTES,
        shared: WaitingBytes | None = None,
        on_transport_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._call = call
        self.max_inflight = max_inflight
        self.max_call_records = max_call_records
        self.max_call_bytes = max_call_bytes
        self.max_waiting_records = max_waiting_records
        self.max_waiting_bytes = max_waiting_bytes
        self._shared = shared or WaitingBytes(2**63)
        self._on_transport_error = on_transport_error
        self._waiting: list[tuple[RawBatch, asyncio.Future[Ack | DashError]]] = []
        self._waiting_records = 0
        self.waiting_bytes = 0
        self._inflight = 0
        self.calls = 0
        self.batches = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def submit(self, batch: RawBatch) -> Ack | DashError:
        """Send `batch` with whatever else is waiting; the pipeline's ack or error for it."""
        if self._waiting:
            if self._waiting_records + batch.count > self.max_waiting_records:
                return BackpressureError("too many records waiting for this pipeline", retry_after=1.0)
            if self.waiting_bytes + batch.nbytes > self.max_waiting_bytes:
                return BackpressureError("too many bytes of records waiting for this pipeline", retry_after=1.0)
        shared = self._shared
        if shared.used and shared.used + batch.nbytes > shared.limit_bytes:
            return BackpressureError("too many bytes of records waiting in this replica", retry_after=1.0)
        future: asyncio.Future[Ack | DashError] = asyncio.get_running_loop().create_future()
        self._waiting.append((batch, future))
        self._waiting_records += batch.count
        self.waiting_bytes += batch.nbytes
        shared.used += batch.nbytes
        if self._inflight < self.max_inflight:
            self._inflight += 1
            asyncio.create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[RawBatch, asyncio.Future[Ack | DashError]]]:
        taken, records, nbytes = 0, 0, 0
        for batch, _ in self._waiting:
            if taken and (records + batch.count > self.max_call_records
                          or nbytes + batch.nbytes > self.max_call_bytes):
                break
            taken += 1
            records += batch.count
            nbytes += batch.nbytes
        group, self._waiting = self._waiting[:taken], self._waiting[taken:]
        self._waiting_records -= records
        self.waiting_bytes -= nbytes
        self._shared.used -= nbytes
        return group

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group = self._take()
                self.calls += 1
                self.batches += len(group)
                try:
                    results = await self._call([batch for batch, _ in group])
                except DashError as exc:
                    results = [exc] * len(group)
                except Exception as exc:  # noqa: BLE001 - transport failure: report per request
                    if self._on_transport_error is not None:
                        self._on_transport_error(exc)
                    error = UnavailableError(f"pipeline is not reachable: {type(exc).__name__}", retry_after=1.0)
                    results = [error] * len(group)
                for (_, future), result in zip(group, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._inflight -= 1
