"""One pipeline in its own process, whatever runs it (a Ray actor: `actors/pipeline.py`): the
core with its lake and log, the ingest channel the web replicas send to, the feed of an active
source, the PostgreSQL follower its spec asks for; started, asked and stopped by the platform.

`start` admits the spec again on the platform as it is then (`spec_check.admit_spec`: a spec
asking for PostgreSQL on a platform started without a database is refused), so a spec the
supervisor admitted earlier, under other settings, does not run unchecked.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

from dash_ray.errors import NotFoundError, UnavailableError
from dash_ray.ingest.channel import ChannelServer, Endpoint
from dash_ray.lake_roots import pipeline_lake
from dash_ray.lifecycle.jobs import Replays
from dash_ray.lifecycle.selection import ReplayRequest
from dash_ray.live.feed import LiveRead
from dash_ray.log.choice import log_name, make_log
from dash_ray.pipeline.core import PipelineCore
from dash_ray.pipeline.sink_process import PipelineSinks, SinkProcess, SinkSetup
from dash_ray.settings import PipelineSettings
from dash_ray.silver.choice import postgres_follower, uses_postgres
from dash_ray.sinks.base import Sinks
from dash_ray.sources.base import FeedContext, Feeder
from dash_ray.sources.registry import feeder_for
from dash_ray.spec import parse_spec, secret_names
from dash_ray.spec_check import admit_spec

__all__ = ["PipelineHost"]

log = logging.getLogger(__name__)

_MAX_LIVE_WAIT_S = 30.0


class PipelineHost:
    """One pipeline's process: `await start(...)`, then the calls, then `await stop()`."""

    def __init__(self, spec_data: dict[str, Any], settings: PipelineSettings, *, address: str,
                 freeze_gc: bool = False) -> None:
        """`address`: where the ingest channel listens; `freeze_gc`: once started, keep what
        exists out of the collector's sight (for a process that hosts this pipeline alone)."""
        self._spec_data = spec_data
        self._freeze_gc = freeze_gc
        spec = parse_spec(spec_data)
        self._settings = settings
        self._hook = Sinks()
        self.sinks: PipelineSinks | None = None  # in the sink process (`sink_process.py`), when there are any
        self._log_name = log_name(settings.log_prefix, spec.id)
        # A `postgres` log is made at start, once the registry gave the database's DSN.
        wal = None if settings.log == "postgres" else make_log(
            settings.log, folder=settings.wal_dir(spec.id), name=self._log_name, nats_url=settings.nats_url,
            nats_replicas=settings.nats_replicas)
        self.core = PipelineCore(
            spec,
            wal_dir=settings.wal_dir(spec.id),
            log=wal,
            lake=pipeline_lake(spec, lake_url=settings.lake_url, lake_options=settings.lake_options),
            idempotency_window_s=settings.idempotency_window_s,
            idempotency_max_keys=settings.idempotency_max_keys,
            sinks=self._hook,
        )
        # The data path for ingest from web replicas (dash_ray.ingest.channel), on `address`:
        # the address the process is reached at (127.0.0.1 on a loopback instance).
        self.channel = ChannelServer(self.core.ingest, host=address)
        self._state_dir = settings.wal_dir(spec.id) / "source"
        self._feeder: Feeder | None = None
        self._feeding: asyncio.Task[None] | None = None

    async def start(self, silver_dsn: Callable[[], Awaitable[str | None]],
                    secrets: Callable[[], Awaitable[dict[str, str]]] | None = None,
                    upstream: Callable[[str], Any] | None = None) -> dict[str, Any]:
        """Admit the spec, recover and start taking ingest; returns the core's health.
        `silver_dsn` gives the platform's database (None: it has none), asked only when the
        spec may keep its silver in PostgreSQL; `secrets` the values of the named secrets the
        spec refers to, asked only when it refers to some; `upstream` how a `pipeline` source
        reaches the pipeline it follows (`dash_ray.sources.follow.Upstream` by id). Raises when the pipeline cannot
        run: SpecError, NotFoundError (a secret it refers to is gone), StorageError (the lake
        cannot be read), WalCorruptError."""
        core = self.core
        if core.state != "new":
            raise RuntimeError(f"pipeline {core.id} is {core.state}")
        await asyncio.to_thread(core.lake.check)
        dsn = await silver_dsn() if core.spec.storage.silver != "lake" or self._settings.log == "postgres" else None
        if self._settings.log == "postgres":
            core.use_log(make_log("postgres", folder=self._settings.wal_dir(core.id), name=self._log_name, dsn=dsn))
        admit_spec(self._spec_data, has_database=dsn is not None)
        if dsn is not None and uses_postgres(core.spec, has_dsn=True):
            core.followers.append(postgres_follower(core.spec, core.lake, dsn))
        values = await secrets() if secrets is not None and secret_names(core.spec) else {}
        context = FeedContext(core.id, self._state_dir, values, upstream=upstream)
        await asyncio.to_thread(self._forget_removed_sinks)
        await self._add_sinks(values)
        await core.start()
        if self.sinks is not None:
            await self.sinks.start()
        await self.channel.start()
        # A source that feeds records (the demo, a poller) runs from here; one that receives has none.
        if (feeder := feeder_for(core.spec.source, context)) is not None:
            self._feeder = feeder
            self._feeding = asyncio.get_running_loop().create_task(feeder.run(core.ingest))
        if self._freeze_gc:
            # What exists now (Ray, pyarrow, the spec, the recovered state) lives as long as
            # the process: out of the collector's sight, a full collection no longer walks it.
            gc.freeze()
        return self.health()

    def _forget_removed_sinks(self) -> None:
        """Delete the state of sinks the spec no longer has (cursor, waiting records, dead
        deliveries): a sink added again under an old name starts anew, after the stored
        records, as any new sink does, rather than sending all since it was removed."""
        folder = self._settings.wal_dir(self.core.id) / "sinks"
        if not folder.is_dir():
            return
        kept = {spec.name for spec in self.core.spec.sinks}
        for gone in folder.iterdir():
            if gone.is_dir() and gone.name not in kept:
                shutil.rmtree(gone)
                log.info("pipeline %s: sink %r is no longer in the spec; its state is deleted", self.core.id, gone.name)

    async def _add_sinks(self, secrets: dict[str, str]) -> None:
        """The spec's sinks (`dash_ray.pipeline.delivery`), each with its state in
        `<wal dir>/sinks/<name>`, on the hook the core hands mapped batches to; they run in a
        process of their own (`sink_process.py`), off the loop and the GIL ingest runs on."""
        core, settings = self.core, self._settings
        if not core.spec.sinks:
            return
        setup = SinkSetup(spec=self._spec_data, folder=str(settings.wal_dir(core.id) / "sinks"),
                          lake_url=settings.lake_url, lake_options=settings.lake_options, secrets=secrets,
                          queue_records=settings.sink_queue_records)
        process = SinkProcess.of_loop(nice=settings.sink_nice, log_format=settings.log_format)
        self.sinks = await process.open(core.id, setup, lambda: core.counters.stored_seq)
        self._hook.add(self.sinks)

    def health(self) -> dict[str, Any]:
        """The core's health, with the feeder's `source_state` when it keeps one and the
        sinks' deliveries (`counters.sink_deliveries`, for `/metrics`)."""
        health = self.core.health()
        if self._feeder is not None and (state := self._feeder.state()) is not None:
            health["source_state"] = state
        if self.sinks is not None:
            health["counters"]["sink_deliveries"] = self.sinks.deliveries()
        return health

    def sink_states(self) -> list[dict[str, Any]]:
        """Each sink's counters, breaker, last error and dead deliveries, in spec order, as
        the sink process last told them (it tells every change within `_STATUS_EVERY_S`)."""
        return self.sinks.status() if self.sinks is not None else []

    async def redeliver(self, name: str) -> dict[str, Any]:
        """Send a sink's dead deliveries again (and enable it after a 410); NotFoundError for
        a sink the spec does not have."""
        if self.sinks is None:
            raise NotFoundError(f"pipeline {self.core.id} has no sink {name[:80]!r}", where="sink")
        return {"sink": name, "redelivered": await self.sinks.redeliver(name)}

    def endpoint(self) -> Endpoint:
        """Where this pipeline takes ingest over its channel, with the token it wants."""
        if self.core.state != "running":
            raise UnavailableError(f"pipeline {self.core.id} is {self.core.state}", retry_after=1.0)
        return self.channel.endpoint

    async def records(self, after: int | None, limit: int) -> list[dict[str, Any]]:
        """The newest records after `after` (a backlog is mapped a chunk at a time first, so
        ingest goes on meanwhile)."""
        await self.core.catch_up()
        return self.core.records(after=after, limit=limit)

    async def live_read(self, after: int | None, wait_s: float, limit: int) -> LiveRead:
        """The live feed after `after` (a long poll of up to `wait_s`, at most 30 s);
        `after=None` asks only where the feed is (`dash_ray.live.feed`)."""
        feed = self.core.live
        if after is None:
            return LiveRead(last_seq=feed.last_seq, first_seq=feed.first_seq)
        return await feed.read(after, wait_s=min(wait_s, _MAX_LIVE_WAIT_S), limit=limit)

    def replay(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a replay job (`request`: a `ReplayRequest` as a dict; dash_ray.lifecycle.jobs)."""
        return self._replays().submit(ReplayRequest.of(request)).as_dict()

    def replay_dead(self) -> dict[str, Any]:
        return self._replays().replay_dead().as_dict()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._replays().get(job_id).as_dict()

    def _replays(self) -> Replays:
        if self.core.replays is None:
            raise UnavailableError(f"pipeline {self.core.id} is not running yet", retry_after=1.0)
        return self.core.replays

    async def stop(self, *, flush: bool = True) -> None:
        """Stop taking ingest, flush what is queued (unless not `flush`: a crashed pipeline
        taken out of a shared host) and close the log (what could not be stored stays in the
        log for the next start). Idempotent."""
        await self.channel.close(timeout_s=10.0 if flush else 1.0)
        if self._feeding is not None:
            self._feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feeding
        await self.core.close(flush=flush)  # with its sinks (`PipelineSinks.close`)
