"""The supervisor's sense of time, injected so tests can move it: a monotonic clock for
back-off, the UTC wall clock for what it reports, and a sleep that goes with them."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (back-off, windows)."""
        ...

    def now(self) -> dt.datetime:
        """The wall-clock time, timezone-aware UTC (for what is reported)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once `monotonic()` has moved on by `seconds`."""
        ...


class SystemClock:
    """The real clocks and `asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
