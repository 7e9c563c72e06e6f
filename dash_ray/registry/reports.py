"""The web replicas' own metric counts, pushed to the registry every few seconds
(`serve_app/metrics.py`) so that a scrape of any replica shows every replica's.

Memory only: after a registry restart the replicas' next pushes bring them back. Bounded: a
report is kept `ttl_s` (two minutes), and at most `max_replicas` replicas are kept; a new
replica past that first drops the reports gone stale, then is kept anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["WebReports"]


class WebReports:
    """The last report of each web replica heard from within `ttl_s`."""

    def __init__(self, *, ttl_s: float = 120.0, max_replicas: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_replicas = max_replicas
        self._clock = clock
        self._reports: dict[str, tuple[float, dict[str, Any]]] = {}

    def put(self, replica: str, report: dict[str, Any]) -> None:
        """Keep `report` as `replica`'s latest."""
        if replica not in self._reports and len(self._reports) >= self.max_replicas:
            self._drop_stale()
        self._reports[replica] = (self._clock(), report)

    def current(self) -> dict[str, dict[str, Any]]:
        """Every replica's last report, by replica, but those older than `ttl_s`."""
        self._drop_stale()
        return {replica: report for replica, (_, report) in self._reports.items()}

    def _drop_stale(self) -> None:
        oldest = self._clock() - self.ttl_s
        self._reports = {k: v for k, v in self._reports.items() if v[0] >= oldest}
