"""The event loop a pipeline's sinks run on: `SinkLoop`, one thread of the pipeline's process
with an asyncio loop of its own, and `OnSinkLoop`, a sink as the pipeline's hook sees it.

Why a thread: ingest, the mapping and the flushes run on the pipeline's event loop, which is
what limits a pipeline's ingest. The sinks' loops (`delivery.py`) woke there for each take, each
trip to their database's thread and each POST, and took a tenth and more of that loop's time
with three sinks on (`benchmarks/sinks.py`, py-spy). On a loop of their own they cost the
pipeline's loop one `call_soon_threadsafe` per mapped batch and sink; what they do runs beside
it (the GIL is shared, but the pipeline's loop leaves it free a third of the time: pyarrow,
the log's syncs and the lake's writes release it).

Nothing of a sink's guarantees changes: its records, cursor, outbox and state are the same,
only the loop its two tasks run on is another. Calls from the pipeline's loop cross over
(`call`, `run`); `status` and `deliveries` read plain attributes, as they did.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from dash_ray.pipeline.delivery import DeliverySink
from dash_ray.sinks.base import MappedBatch

__all__ = ["OnSinkLoop", "SinkLoop"]

T = TypeVar("T")


class SinkLoop:
    """An asyncio loop in a daemon thread, from `SinkLoop(name)` until `await stop()`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"sinks:{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call `fn(*args)` on the sinks' loop, in call order, without waiting."""
        self.loop.call_soon_threadsafe(fn, *args)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the sinks' loop; its result here."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call `fn(*args)` on the sinks' loop; its result here."""
        async def call() -> T:
            return fn(*args)
        return await self.run(call())

    async def stop(self) -> None:
        """Stop the loop (its sinks closed first) and wait for the thread. Idempotent."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            await asyncio.to_thread(self._thread.join)


class OnSinkLoop:
    """A `DeliverySink` on a `SinkLoop`, as the pipeline's hook (`sinks.base.Sinks`) sees it."""

    def __init__(self, sink: DeliverySink, on: SinkLoop) -> None:
        self.sink = sink
        self.name = sink.name
        self._on = on

    def offer(self, batch: MappedBatch) -> None:
        self._on.soon(self.sink.offer, batch)

    async def close(self) -> None:
        await self._on.run(self.sink.close())
