"""Answering a log's appenders: resolve or fail their futures on their own event loops, from
whichever thread or loop found the entries durable (or found that they could not be)."""

from __future__ import annotations

import asyncio

__all__ = ["Waiter", "failure", "settle_all"]

Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


def failure(error: BaseException) -> OSError:
    """The OSError an appender sees (the Protocol's promise), with the cause kept."""
    if isinstance(error, OSError):
        return error
    wrapped = OSError(f"write-ahead log failed: {error!r}")
    wrapped.__cause__ = error
    return wrapped


def settle_all(waiters: list[Waiter], error: BaseException | None) -> None:
    """Resolve every waiter (or fail it with `failure(error)`) on its own loop, thread-safely:
    one wake-up per loop, however many waiters it has."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for loop, future in waiters:
        by_loop.setdefault(loop, []).append(future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, futures, error)
        except RuntimeError:
            pass  # the loop is gone; nobody waits any more


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(failure(error))
