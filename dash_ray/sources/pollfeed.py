"""What both polling kinds share, as a Feeder running in the pipeline actor: the durable store
in the pipeline's `state_dir`, the HTTP client with its auth, the schedule, the intake of
records, and the poll's frame (send what a kill left staged, ask from the durable cursor, and
advance the cursor only when the whole poll was ingested). A kind supplies `pages`: the
requests of one poll."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx

from dash_ray.sources.base import FeedContext, Ingest
from dash_ray.sources.cursor import PollStore
from dash_ray.sources.fetching import Fetcher, auth_parts
from dash_ray.sources.intake import Intake
from dash_ray.sources.locate import Locator
from dash_ray.sources.polling import Backoff, Poller, PollStatus
from dash_ray.spec import GraphqlPollSource, HttpPollSource

__all__ = ["PollFeed"]

STORE_FILE = "poll.sqlite3"


class PollFeed:
    """A poller of one pipeline. Subclasses implement `pages(deadline, ingest)`, one poll's
    requests, handing each page's records to `self.intake.take` and returning the values to
    keep once the poll completed (beside the cursor, which this class keeps)."""

    def __init__(self, spec: HttpPollSource | GraphqlPollSource, context: FeedContext) -> None:
        self.spec = spec
        self.context = context
        self.status = PollStatus()
        self.records = Locator(spec.records)
        self.auth_headers, self.auth_params, self._auth = auth_parts(spec.auth, context.secrets)
        self._rng = random.Random()
        self.backoff = Backoff(spec.backoff_initial, spec.backoff_max)
        self.store = PollStore(context.state_dir / STORE_FILE, max_keys=spec.dedup_keys)
        incremental = spec.incremental
        self.intake = Intake(self.store, self.status,
                             primary_key=Locator(spec.primary_key) if spec.primary_key else None,
                             cursor=Locator(incremental.cursor_path) if incremental else None, clock=context.clock)
        self.status.cursor = self.store.get("cursor", incremental.initial_value if incremental else None)
        self.status.seen_keys = self.store.seen_count()
        self.fetcher: Fetcher | None = None

    @classmethod
    def from_spec(cls, spec: Any, context: FeedContext) -> PollFeed:
        return cls(spec, context)

    def state(self) -> dict[str, Any] | None:
        return self.status.as_dict()

    async def run(self, ingest: Ingest) -> None:
        spec = self.spec
        poller = Poller(interval=spec.interval, jitter=spec.jitter, poll_timeout=spec.poll_timeout,
                        backoff=self.backoff, status=self.status, clock=self.context.clock, rng=self._rng)
        try:
            async with httpx.AsyncClient(follow_redirects=True) as client:
                self.fetcher = Fetcher(client, timeout=spec.timeout, retries=spec.retries, backoff=self.backoff,
                                       auth=self._auth, clock=self.context.clock, rng=self._rng)
                await poller.run(lambda deadline: self._poll(deadline, ingest))
        finally:
            await asyncio.shield(asyncio.to_thread(self.store.close))

    async def _poll(self, deadline: float, ingest: Ingest) -> None:
        await self.intake.drain(ingest)
        start = self.status.cursor
        self.intake.begin(start)
        keep = await self.pages(deadline, ingest, start)
        if self.spec.incremental is not None and self.intake.poll_max is not None:
            keep["cursor"] = self.intake.poll_max
        if keep:
            await asyncio.to_thread(self.store.finish_poll, keep)
        if "cursor" in keep:
            self.status.cursor = keep["cursor"]

    async def pages(self, deadline: float, ingest: Ingest, start: Any) -> dict[str, Any]:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        return {**self.spec.headers, **self.auth_headers}

    def page_records(self, body: Any) -> list[Any]:
        """The records of a page (values that are not objects are dead-lettered by the pipeline,
        as pushed ones are)."""
        self.status.pages += 1
        return self.records.records(body)
