"""What a pipeline needs of a write-ahead log, whatever keeps it: the `Log` Protocol, the
entries it holds and the figures it reports. `file.py` is the embedded backend (segment files
in a local folder); `jetstream.py` (a NATS JetStream stream) and `postgres.py` (rows in
PostgreSQL) are replicated backends for clusters, with the same four methods.

An entry is `(key, data)`: opaque bytes under a key that never decreases (the pipeline uses
the last sequence number an entry holds). Every backend guarantees:
- `append` resolves only once the entry is durable (for the file log: written and
  fdatasync'd); appends are durable and recovered in call order. An append whose future
  fails leaves nothing behind that `open` would return, and the log then refuses further
  appends until it is reopened.
- `open` returns every entry not yet trimmed, in order, exactly once, or raises
  WalCorruptError rather than silently drop an acknowledged entry.
- `trim(k)` removes entries with key <= k at the backend's granularity (whole segments for
  the file log, so some may survive until later); it never removes an entry with key > k.
  It is done by the log itself, ordered with the writes, never by the caller's thread.
- `close` finishes what is pending; it is idempotent, and after it appends are refused.
- One owner at a time: `open` takes a new owner epoch (`epoch`, higher than any before it on
  the same storage), and from then on an older instance's appends and trims fail (the log
  fails, as on a failed write) and nothing it writes appears in the newer owner's view. So a
  stale owner (a zombie on a partitioned or frozen node) can no longer acknowledge anything.
Tests: `tests/dash_ray/log/test_contract.py` runs these against every backend.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Entry", "Log", "LogStats"]


@dataclass(frozen=True, slots=True)
class Entry:
    key: int
    data: bytes


@dataclass
class LogStats:
    """Figures a log reports for health and metrics (memory, since it was opened)."""

    segments: int = 0
    bytes: int = 0
    appended: int = 0
    fsyncs: int = 0
    last_key: int = 0
    truncated_bytes: int = 0  # torn tail cut by open
    trimmed: int = 0  # storage units trim deleted (segments for the file log)


class Log(Protocol):
    """A pipeline's write-ahead log. One owner (the pipeline) on one event loop."""

    stats: LogStats
    epoch: int  # the owner epoch `open` took; 0 before

    def open(self) -> list[Entry]:
        """Take a new owner epoch (fencing older owners), recover every entry still in the log,
        in order; then accept appends. Blocking I/O: call it in a thread. Raises
        WalCorruptError when the log is damaged (and then changes nothing but the epoch),
        OSError when its storage cannot be reached, RuntimeError when called twice."""
        ...

    def append(self, key: int, data: bytes) -> asyncio.Future[None]:
        """Queue an entry now (so appends keep call order); the future resolves once it is
        durable and fails with OSError otherwise (a newer owner fenced this one, too). Raises
        RuntimeError when the log is not open (not yet, closed, or failed), ValueError when
        `key` is below the last key."""
        ...

    async def trim(self, through_key: int) -> None:
        """Drop entries with key <= `through_key` (their data is stored elsewhere) and return
        once done. Never blocks the event loop; safe while appends run and while other trims
        wait (the highest key wins). Does nothing when the log is not open."""
        ...

    async def close(self) -> None:
        """Finish pending appends and trims and release the log. Idempotent."""
        ...
