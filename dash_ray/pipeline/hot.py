"""The hot cache: a pipeline's newest mapped records, kept in memory in sequence order.

Bounded: holding `capacity` records, adding one drops the oldest. Only records that are
already durable are added, so what a reader sees here is never lost later. Records are in the
live feed's shape (`dash_ray.live.records`).
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Any

__all__ = ["HotBuffer"]

class HotBuffer:
    """The newest `capacity` records, oldest first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._records: deque[dict[str, Any]] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def last_seq(self) -> int:
        return self._records[-1]["seq"] if self._records else 0

    def extend(self, records: list[dict[str, Any]]) -> None:
        """Append records in ascending seq order (older ones are dropped past capacity)."""
        if len(records) > self.capacity:
            records = records[-self.capacity:]
        self._records.extend(records)

    def since(self, after: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Records with seq > `after` (all when None), oldest first, at most `limit` of them:
        the oldest `limit` after `after` when `after` is given (a reader catching up), else the
        newest `limit`."""
        records = list(self._records)
        if after is not None:
            start = bisect.bisect_right(records, after, key=lambda r: r["seq"])
            records = records[start:]
            return records if limit is None else records[:limit]
        if limit is None:
            return records
        return records[-limit:] if limit > 0 else []
