"""What the pipeline needs of a silver store: the `SilverStore` Protocol.

A silver store keeps a pipeline's mapped rows (columns `seq`, `time`, the mapping's fields)
by sequence range, and its rollup partials beside them. Every store guarantees (the contract
suite, tests/dash_ray/silver/test_contract.py, checks each one):
- `write(rows, first_seq=a, last_seq=b)` is idempotent by range: writing a range again (a
  retried commit, a replay) replaces the rows of the first write, so a row is never doubled.
  The lake replaces them per event day (one file per range and day): rows of a day the new
  write has none in stay until the replay that wrote it deletes their files
  (`dash_ray.lifecycle.replay`); PostgreSQL replaces the whole range.
- `discard_after(s)`, `s` the end of a range written (or 0), removes every range after it
  (what an unfinished commit left); the ranges can then be written again.
- `stored_seq()` is the highest `last_seq` of a range written with rows (0 when none); a
  rewrite of an earlier range never lowers it. A store that follows the lake (a database
  catching up after an outage, `dash_ray.silver.follower`) counts ranges without rows too, so
  it knows where to resume; the lake's silver has no file for such a range.
The lake's bronze file of a range, written after silver, is what marks a range as stored:
the commit step (`dash_ray/pipeline/commit.py`) owns that order.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import pyarrow as pa

__all__ = ["FollowingStore", "SilverStore"]


class SilverStore(Protocol):
    """One pipeline's silver rows. Methods block (call them in a thread); errors from the
    backend are StorageError with the cause chained."""

    def write(self, rows: pa.Table, *, first_seq: int, last_seq: int) -> object:
        """Store `rows` as the rows of `first_seq..last_seq`, replacing any earlier write of
        that range. `rows` may be empty (every record of the range was dead or filtered)."""
        ...

    def discard_after(self, seq: int) -> int:
        """Remove the ranges after `seq`; returns how much went, in the store's own unit (the
        lake's files, PostgreSQL's rows), 0 when nothing did."""
        ...

    def stored_seq(self) -> int:
        """The highest `last_seq` written (see the module's docstring for ranges without
        rows), 0 when nothing was."""
        ...


class FollowingStore(SilverStore, Protocol):
    """A store that follows the lake (`dash_ray.silver.follower`): it also applies the silver
    retention itself (`expire`; the lake's own is done by removing its files)."""

    def expire(self, keep_from: dt.date) -> int:
        """Delete the rows whose event time is before `keep_from`; the number deleted."""
        ...
