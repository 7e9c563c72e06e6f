"""The schedule of a poller: a poll every `interval` seconds (spread by `jitter`), each bounded
by `poll_timeout`; after a failed poll the next waits longer each time (exponential back-off
with jitter, at most `max(backoff_max, interval)`), and at least what the server asked with
`Retry-After`. `PollStatus` is what the pipeline's status shows as `source_state`."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dash_ray.timeouts import timeout

__all__ = ["Backoff", "PollError", "PollStatus", "Poller"]

log = logging.getLogger(__name__)

_MAX_ERROR = 2000


class PollError(Exception):
    """A failed request or poll; `retry_after` (seconds) when the server said how long to wait."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Backoff:
    """`initial * 2**attempt` seconds, at most `cap`, times a random factor in [0.5, 1]."""

    initial: float
    cap: float

    def delay(self, attempt: int, rng: random.Random) -> float:
        return min(self.cap, self.initial * 2.0 ** min(attempt, 60)) * rng.uniform(0.5, 1.0)


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class PollStatus:
    """A poller's state. Times are epoch seconds here, ISO 8601 UTC in `as_dict`. `failures`
    counts the failed polls since the last good one; `records` the records ingested, `skipped`
    those fetched again (already ingested, or older than the cursor), `pages` the pages
    fetched, `not_modified` the polls answered 304, since the process started."""

    last_poll_at: float | None = None
    last_ok_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    next_poll_at: float | None = None
    cursor: Any = None
    polls: int = 0
    failures: int = 0
    records: int = 0
    skipped: int = 0
    pages: int = 0
    not_modified: int = 0
    seen_keys: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "last_poll_at": _iso(self.last_poll_at), "last_ok_at": _iso(self.last_ok_at),
            "last_error": self.last_error, "last_error_at": _iso(self.last_error_at),
            "next_poll_at": _iso(self.next_poll_at), "cursor": self.cursor, "polls": self.polls,
            "failures": self.failures, "records": self.records, "skipped": self.skipped, "pages": self.pages,
            "not_modified": self.not_modified, "seen_keys": self.seen_keys,
        }


class Poller:
    """Runs `poll(deadline)` on the schedule until cancelled, noting each outcome in `status`.
    `deadline` is on the event loop's clock; a poll still running at it is cancelled."""

    def __init__(self, *, interval: float, jitter: float, poll_timeout: float, backoff: Backoff,
                 status: PollStatus, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, rng: random.Random | None = None) -> None:
        self._interval = interval
        self._jitter = jitter
        self._poll_timeout = poll_timeout
        self._backoff = backoff
        self.status = status
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    def next_delay(self, error: PollError | None) -> float:
        """Seconds to the next poll after a good poll (`error` None) or a failed one."""
        if error is None:
            return self._interval * (1 + self._rng.uniform(-self._jitter, self._jitter))
        cap = max(self._backoff.cap, self._interval)
        delay = min(cap, self._interval * 2.0 ** min(self.status.failures - 1, 60)) * self._rng.uniform(0.5, 1.0)
        return max(delay, error.retry_after or 0.0)

    async def run(self, poll: Callable[[float], Awaitable[None]]) -> None:
        while True:
            delay = self.next_delay(await self.poll_once(poll))
            self.status.next_poll_at = self._clock() + delay
            await self._sleep(delay)

    async def poll_once(self, poll: Callable[[float], Awaitable[None]]) -> PollError | None:
        """One poll; returns its error (None when it succeeded)."""
        status = self.status
        status.last_poll_at, status.next_poll_at = self._clock(), None
        status.polls += 1
        error: PollError | None = None
        try:
            async with timeout(self._poll_timeout):
                await poll(asyncio.get_running_loop().time() + self._poll_timeout)
        except asyncio.TimeoutError:
            error = PollError(f"the poll did not finish within {self._poll_timeout:g} s (poll_timeout)")
        except PollError as exc:
            error = exc
        except Exception as exc:  # any failure of a poll is shown and retried
            log.warning("poll failed", exc_info=True)
            error = PollError(f"{type(exc).__name__}: {exc}")
        if error is None:
            status.last_ok_at, status.failures = self._clock(), 0
        else:
            status.failures += 1
            status.last_error, status.last_error_at = str(error)[:_MAX_ERROR], self._clock()
        return error
