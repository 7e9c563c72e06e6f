"""The threads a web replica reads its stores with (queries, live catch-up, dead letters),
apart from the event loop's default executor, which registry and actor look-ups use: a heavy
read cannot hold up ingest or a token check behind it.

Bounded: at most `threads` reads run and `queue` more wait; past that a read is refused at
once with UnavailableError (503, Retry-After) rather than queued without end. A read whose
caller went away still holds its place until its thread is done with it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from dash_ray.errors import UnavailableError

__all__ = ["ReadPool"]

T = TypeVar("T")


class ReadPool:
    """One per replica; `await pool.run(fn, *args)` runs `fn` in one of its threads."""

    def __init__(self, *, threads: int = 4, queue: int = 16) -> None:
        self.threads, self.queue = threads, queue
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="dash-read")
        self._lock = threading.Lock()
        self.active = 0  # running or waiting

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._lock:
            if self.active >= self.threads + self.queue:
                raise UnavailableError(
                    f"this replica is running as many reads as it may ({self.threads} running, {self.queue} "
                    "waiting); try again", where="reads", retry_after=1.0)
            self.active += 1
        # The request's context (its id for the log lines) goes with it into the thread.
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        try:
            future: Future[T] = self._executor.submit(call)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, _: Future[Any] | None) -> None:
        with self._lock:
            self.active -= 1

    def close(self) -> None:
        """Stop taking reads; those waiting are dropped, those running finish. Idempotent."""
        self._executor.shutdown(wait=False, cancel_futures=True)
