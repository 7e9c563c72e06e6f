"""What a pipeline needs of a write-ahead log, whatever keeps it: the `Log` Protocol, the
entries it holds and the figures it reports. `file.py` is the embedded backend (segment files
in a local folder); a replicated backend for clusters implements the same four methods.

An entry is `(key, data)`: opaque bytes under a key that never decreases (the pipeline uses
the last sequence number an entry holds). Every backend guarantees:
- `append` resolves only once the entry is durable (for the file log: written and
  fdatasync'd); appends are durable and recovered in call order; an append that fails
  leaves nothing behind that `open` would return.
- `open` returns every entry not yet trimmed, in order, exactly once, or raises
  WalCorruptError rather than silently drop an acknowledged entry.
- `trim(k)` removes entries with key <= k at the backend's granularity (whole segments for
  the file log, so some may survive until later); it never removes an entry with key > k.
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
    truncated_bytes: int = 0


class Log(Protocol):
    """A pipeline's write-ahead log. One owner (the pipeline) on one event loop."""

    stats: LogStats

    def open(self) -> list[Entry]:
        """Recover: every entry still in the log, in order; then accept appends. Blocking
        I/O: call it in a thread. Raises WalCorruptError when the log is damaged."""
        ...

    def append(self, key: int, data: bytes) -> asyncio.Future[None]:
        """Queue an entry now (so appends keep call order); the future resolves once it is
        durable and fails with the write error otherwise."""
        ...

    async def trim(self, through_key: int) -> None:
        """Drop entries with key <= `through_key` (their data is stored elsewhere). Never
        blocks the event loop; safe while appends run."""
        ...

    async def close(self) -> None:
        """Finish pending appends and release the log. Idempotent."""
        ...
