"""What the pipeline needs of a silver store: the `SilverStore` Protocol.

A silver store keeps a pipeline's mapped rows (columns `seq`, `time`, the mapping's fields)
by sequence range. Every store guarantees:
- `write(rows, first_seq=a, last_seq=b)` is idempotent by range: writing the same range again
  replaces what the first write left, so a retried or replayed commit never doubles a row.
- `discard_after(s)` removes every row with seq > s (what an unfinished commit left).
- `stored_seq()` is the highest `last_seq` of a range written (0 when none), so a store that
  follows the lake (a database catching up after an outage) knows where to resume.
The lake's bronze file of a range, written after silver, is what marks a range as stored:
the commit step (`dash_ray/pipeline/commit.py`) owns that order.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

__all__ = ["SilverStore"]


class SilverStore(Protocol):
    """One pipeline's silver rows. Methods block (call them in a thread); errors from the
    backend are StorageError with the cause chained."""

    def write(self, rows: pa.Table, *, first_seq: int, last_seq: int) -> None:
        """Store `rows` as the rows of `first_seq..last_seq`, replacing any earlier write of
        that range. `rows` may be empty (every record of the range was dead or filtered)."""
        ...

    def discard_after(self, seq: int) -> int:
        """Remove rows with seq > `seq`; returns how many ranges (files or batches) went."""
        ...

    def stored_seq(self) -> int:
        """The highest `last_seq` written, 0 when nothing was."""
        ...
