"""Waiting in tests: poll a check until it holds or a deadline passes, never a bare sleep.

`wait_for` blocks (threads, subprocesses, a platform over HTTP); `until` is the same inside an
event loop, letting the loop run between checks. Both return the check's first truthy result.
An exception raised by the check counts as "not yet" (a server still starting refuses
connections); at the deadline the AssertionError names what was awaited and the last result,
and is raised from the last exception, so its traceback shows too.

A sleep that stays in a test is a deliberate delay that is itself the behaviour under test
(a clock passing a TTL, a window in which something must NOT happen, a client's pace), and
says so in a comment.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

__all__ = ["until", "wait_for"]

T = TypeVar("T")


def _timed_out(what: str, timeout: float, last: Any) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


def wait_for(check: Callable[[], T], *, timeout: float = 60.0, every: float = 0.2,
             what: str = "condition") -> T:
    """Call `check` every `every` seconds until it returns something truthy, and return that;
    AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except Exception as exc:  # noqa: BLE001 - not yet; reported if it is the last one
            last = exc
        else:
            if last:
                return cast(T, last)
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last) from (last if isinstance(last, Exception) else None)
        time.sleep(every)


async def until(check: Callable[[], T | Awaitable[T]], *, timeout: float = 10.0, every: float = 0.01,
                what: str = "condition") -> T:
    """`wait_for` in an event loop: the loop runs between checks. `check` may return an
    awaitable (an async function, `asyncio.to_thread(...)`), which is awaited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = check()
            last = await result if inspect.isawaitable(result) else result
        except Exception as exc:  # noqa: BLE001 - not yet; reported if it is the last one
            last = exc
        else:
            if last:
                return cast(T, last)
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last) from (last if isinstance(last, Exception) else None)
        await asyncio.sleep(every)
