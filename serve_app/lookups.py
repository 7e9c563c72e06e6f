"""What a web replica remembers of the registry's answers: each answer is fresh for a while,
the entries are bounded (least recently used goes first), concurrent requests for one key
share one registry call, and while the registry cannot answer (it restarts, or its catalog's
PostgreSQL is down) the last answer stands in, for a bounded time.

What "cannot answer" means: the call raised UnavailableError (an actor that is not reachable,
a catalog that cannot be reached), or it did not answer within `wait_s`; the call then goes on
in the background and its answer, when it comes, is kept. Any other error is the answer's
(raised to the caller, never kept). While it cannot, a key is asked again at most every
`retry_s`, so a flood of requests during an outage does not become a flood of calls.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar

from dash_ray.errors import UnavailableError
from dash_ray.timeouts import timeout

__all__ = ["MISSING", "LookupCache"]

log = logging.getLogger(__name__)

V = TypeVar("V")


class _Missing(enum.Enum):
    MISSING = "MISSING"


MISSING: Final = _Missing.MISSING  # what `fresh` gives for a key with no fresh answer


@dataclass
class _Entry(Generic[V]):
    value: V
    at: float  # when the call that answered it started
    retry_at: float = 0.0  # while the registry cannot answer: not asked again before this


class LookupCache(Generic[V]):
    """Answers by key, for one event loop.

    - `fresh_s`: an answer this young is used without asking again;
    - `stale_s`: an older answer, up to this age, stands in while the registry cannot answer
      (0: never; the caller then gets the UnavailableError);
    - `max_entries`: past this many keys the least recently used is dropped;
    - `wait_s`: how long a caller holding a stand-in waits for a fresh answer;
    - `timeout_s`: how long a call may take (then UnavailableError, or the stand-in).
    """

    def __init__(self, what: str, *, fresh_s: float, stale_s: float = 0.0, max_entries: int = 10_000,
                 wait_s: float = 1.0, timeout_s: float = 10.0, retry_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.fresh_s, self.stale_s = fresh_s, stale_s
        self.max_entries = max_entries
        self.wait_s, self.timeout_s, self.retry_s = wait_s, timeout_s, retry_s
        self._clock = clock
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._asking: dict[str, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def fresh(self, key: str) -> V | Literal[_Missing.MISSING]:
        """The answer for `key` when it is fresh, else MISSING; no call (the hot path's check)."""
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.at < self.fresh_s:
            self._entries.move_to_end(key)
            return entry.value
        return MISSING

    def forget(self, key: str) -> None:
        """Drop the answer for `key`, and any being asked for now: it may predate what made the
        caller forget (a pipeline this replica just created), so the next `get` asks again."""
        self._entries.pop(key, None)
        self._asking.pop(key, None)

    def forget_all(self) -> None:
        self._entries.clear()

    async def get(self, key: str, ask: Callable[[], Awaitable[V]], *, max_age_s: float | None = None) -> V:
        """The answer for `key`: remembered when younger than `fresh_s` (and `max_age_s`),
        else `ask()`ed (one call for every concurrent caller), else the remembered one while
        the registry cannot answer and it is younger than `stale_s`."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            age = now - entry.at
            if age < (self.fresh_s if max_age_s is None else min(self.fresh_s, max_age_s)):
                return entry.value
            if age >= self.stale_s:
                entry = None  # too old to stand in: the caller waits for the registry
            elif now < entry.retry_at:
                return entry.value  # it could not answer moments ago: not asked again yet
        asking = self._asking.get(key)
        if asking is None:
            asking = self._asking[key] = asyncio.get_running_loop().create_task(self._ask(key, ask))
            asking.add_done_callback(_retrieve)
        elif entry is not None:
            return entry.value  # another caller is asking now; its answer will be kept
        if entry is None:
            return await asyncio.shield(asking)
        try:
            async with timeout(self.wait_s):
                return await asyncio.shield(asking)
        except (UnavailableError, asyncio.TimeoutError) as exc:
            if entry.retry_at == 0.0:
                log.warning("the registry cannot answer for %s %r (%s); the answer of %.0f s ago stands in "
                            "for up to %.0f s", self.what, key, _why(exc), now - entry.at, self.stale_s)
            entry.retry_at = self._clock() + self.retry_s
            return entry.value

    async def _ask(self, key: str, ask: Callable[[], Awaitable[V]]) -> V:
        started = self._clock()
        task = asyncio.current_task()
        current = False
        try:
            async with timeout(self.timeout_s):
                value = await ask()
        except asyncio.TimeoutError:
            raise UnavailableError(f"the registry did not answer for {self.what} {key!r} within "
                                   f"{self.timeout_s:g} s", retry_after=2.0) from None
        finally:
            if current := self._asking.get(key) is task:
                del self._asking[key]
        if not current:
            return value  # forgotten while asked: its callers get it, nobody else
        self._entries[key] = _Entry(value, started)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A call whose callers stopped waiting (a stand-in was served) may still fail: its error
    # was handled then, not lost.
    if not task.cancelled():
        task.exception()


def _why(exc: BaseException) -> str:
    return "no answer in time" if isinstance(exc, asyncio.TimeoutError) else str(exc)
