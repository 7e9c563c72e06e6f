"""Many pipelines in one process (`placement: shared`; the Ray shell is `actors/host.py`): a
`PipelineHost` per pipeline, keyed by its id, all on one event loop.

Isolation: each pipeline keeps its own core, log, lake writer, ingest channel and tasks, so an
exception in one pipeline's work fails only that pipeline (its core goes `failed`, its health
says so); the supervisor then removes it and starts it again here or in another host, with its
own back-off, while its neighbours go on. What they do share: the process (a crash of the
whole process restarts each of its pipelines elsewhere), the event loop and the GIL (a
pipeline busy on the CPU slows its neighbours: heavy pipelines belong on `dedicated`).

Plain Python: tested without Ray (tests/dash_ray/pipeline/test_shared.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dash_ray.errors import DashError, UnavailableError
from dash_ray.pipeline.host import PipelineHost
from dash_ray.settings import PipelineSettings

__all__ = ["SharedHost"]

log = logging.getLogger(__name__)

SilverDsn = Callable[[], Awaitable[str | None]]
Secrets = Callable[[str], Awaitable[dict[str, str]]]


class SharedHost:
    """Up to `capacity` pipelines in this process: `add`, the per-pipeline calls through
    `get(pipeline_id)`, `remove`. Adding and removing one never touches another."""

    def __init__(self, settings: PipelineSettings, *, address: str, capacity: int) -> None:
        self._settings = settings
        self._address = address
        self.capacity = capacity
        self._hosts: dict[str, PipelineHost] = {}
        self._starting: set[str] = set()

    @property
    def ids(self) -> list[str]:
        """The pipelines here (running or failed, not those still starting)."""
        return sorted(self._hosts)

    @property
    def load(self) -> int:
        """How many pipelines are here or starting here."""
        return len(self._hosts) + len(self._starting)

    async def add(self, spec_data: dict[str, Any], silver_dsn: SilverDsn, secrets: Secrets,
                  upstream: Callable[[str], Any] | None = None) -> dict[str, Any]:
        """Start the pipeline here; its health. Raises what `PipelineHost.start` raises (the
        pipeline is then not here), or UnavailableError when the host is full or already
        has that pipeline."""
        pipeline_id = str(spec_data.get("id"))
        if pipeline_id in self._hosts or pipeline_id in self._starting:
            raise UnavailableError(f"pipeline {pipeline_id} is already in this host", retry_after=1.0)
        if self.load >= self.capacity:
            raise UnavailableError(f"this host already runs {self.capacity} pipelines", retry_after=1.0)
        self._starting.add(pipeline_id)
        try:
            host = PipelineHost(spec_data, self._settings, address=self._address)
            try:
                health = await host.start(silver_dsn, lambda: secrets(pipeline_id), upstream=upstream)
            except BaseException:
                with contextlib.suppress(Exception):
                    await host.stop()
                raise
            self._hosts[pipeline_id] = host
            return health
        finally:
            self._starting.discard(pipeline_id)

    def get(self, pipeline_id: str) -> PipelineHost:
        """The pipeline's host; UnavailableError when it is not here (moved, or gone)."""
        host = self._hosts.get(pipeline_id)
        if host is None:
            raise UnavailableError(f"pipeline {pipeline_id} is not running in this host", retry_after=1.0)
        return host

    def health(self, pipeline_id: str) -> dict[str, Any]:
        return self.get(pipeline_id).health()

    def health_many(self, pipeline_ids: list[str]) -> dict[str, dict[str, Any] | str]:
        """Each pipeline's health, or the error text it answers with instead (one call for a
        whole health round of this host)."""
        answers: dict[str, dict[str, Any] | str] = {}
        for pipeline_id in pipeline_ids:
            try:
                answers[pipeline_id] = self.health(pipeline_id)
            except Exception as exc:  # noqa: BLE001 - this pipeline's answer, not the call's
                text = str(exc) if isinstance(exc, DashError) else f"{type(exc).__name__}: {exc}"
                answers[pipeline_id] = text[:500]
        return answers

    async def remove(self, pipeline_id: str, *, graceful: bool) -> None:
        """Take the pipeline out of this host. `graceful`: flush what is queued first (what
        could not be stored stays in its log); otherwise only close its channel and log
        without flushing. Idempotent."""
        host = self._hosts.pop(pipeline_id, None)
        if host is None:
            return
        try:
            await host.stop(flush=graceful)
        except Exception:
            log.exception("shared host: stopping pipeline %s failed", pipeline_id)

    async def close(self) -> None:
        """Stop every pipeline here gracefully (for a host being shut down)."""
        await asyncio.gather(*(self.remove(pid, graceful=True) for pid in list(self._hosts)))
