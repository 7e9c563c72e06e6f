"""`GET /metrics`: the platform's numbers in the Prometheus text format (read scope), and the
counting the web tier does for them.

Where each number comes from (the web tier has several replicas; pipelines are actors):
- Per pipeline, from the pipeline itself: `dash_records_{received,accepted,duplicate,mapped,
  dead,filtered}_total`, `dash_wal_pending_records` (acknowledged, not yet stored in the lake),
  `dash_flush_seconds` (a summary: count and total time of the lake writes),
  `dash_flush_failures_total`. They are the pipeline's `counters` as of the registry's last
  health round (every `health_interval_s`, 1 s by default), fetched from the registry when
  `/metrics` is scraped, one call for every pipeline, kept `cache_s` (1 s) so scrapes from
  several Prometheus servers cost one call. They are memory of the pipeline's actor: they
  start again from zero when it restarts (Prometheus' `rate()` takes a reset in its stride).
- From the supervisor: `dash_pipeline_restarts_total` (restarts since the registry loaded the
  pipeline) and `dash_pipeline_status` (1 for the current status, 0 for the others).
- Per web replica, counted on the ingest path in `serve_app/ingress.py`: `dash_ingest_requests_total`
  (by status `code`) and `dash_ingest_latency_seconds` (a histogram, from the request's start to
  its answer), and `dash_live_clients` (a gauge the live fan-out moves, `live_clients()`).
  The hot path only adds to plain dicts (`ReplicaMetrics.observe`, well under a microsecond);
  prometheus_client objects are built at scrape time from them, in a `CollectorRegistry` of
  this replica (never the process-global one).
- `dash_sink_deliveries_total{pipeline, sink, result}`: from the pipeline's health counters,
  key `sink_deliveries` = `{sink name: {result: count}}` (result `delivered`, `retried` or
  `dead`; `dash_ray.pipeline.delivery`), counted since the pipeline's process started.

How replicas are combined: a scrape reaches one replica (they share the port), so each replica
pushes its own counts to the registry every `push_every_s` (5 s) once it has any, and the
replica that answers a scrape adds every other replica's last report (at most that old) to
its own current counts. Each replica's series carry its `replica` label (`host:pid`), so they
are never summed across a replica restart: sum them in the query (`sum without (replica)`).
A replica silent for `REPORT_TTL_S` (2 min, kept by the registry) drops out. When the
registry cannot be reached the scrape still answers, with this replica's counts only and
`dash_registry_up 0`.

Label bounds: a request for a pipeline id this replica has not answered other than 404 is
counted under `pipeline="_unknown"` (a flood of made-up ids cannot grow the series), and past
`max_pipelines` distinct ids under `pipeline="_other"`. A deleted pipeline's series go: a
replica forgets them when its gateway learns the pipeline is gone (`Gateway.on_gone`), and a
scrape shows no replica's series of a pipeline the registry no longer lists.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.supervision.view import PipelineView
from serve_app.gateway import Gateway
from serve_app.requests import requires

__all__ = ["LATENCY_BUCKETS", "REPORT_TTL_S", "LiveClients", "ReplicaMetrics", "metrics_routes"]

log = logging.getLogger(__name__)

LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REPORT_TTL_S = 120.0
_SPECIAL = frozenset({"_unknown", "_other"})  # labels that are not pipelines
_STATUSES = ("starting", "running", "restarting", "failed", "stopped")
# Pipeline counters shown as `dash_records_<name>_total`: the name in the metric, the key in
# the pipeline's counters, the help text.
_RECORD_COUNTERS = (
    ("received", "received", "records received by the pipeline (refused requests' records included)"),
    ("accepted", "accepted", "records acknowledged (durable in the pipeline's log)"),
    ("duplicate", "duplicates", "requests answered from the idempotency window, not stored again"),
    ("mapped", "mapped", "records mapped into silver rows"),
    ("dead", "dead", "records dead-lettered by the mapping"),
    ("filtered", "filtered", "records dropped by the mapping's filter"),
)


class LiveClients:
    """The number of live clients of one pipeline on this replica: `inc()` when a socket
    joins, `dec()` when it leaves (or `set`)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def dec(self, amount: int = 1) -> None:
        self.value = max(0, self.value - amount)

    def set(self, value: int) -> None:
        self.value = max(0, value)


@dataclass
class _Scrape:
    """What one scrape shows beyond this replica's own counts."""

    pipelines: list[PipelineView] = field(default_factory=list)
    others: dict[str, dict[str, Any]] = field(default_factory=dict)
    registry_up: bool = True


class ReplicaMetrics:
    """The metrics of one web replica (one event loop): its ingest counts, its live clients,
    and the `/metrics` answer built from them, the other replicas' reports and the pipelines'."""

    def __init__(self, gateway: Gateway, *, replica: str | None = None, cache_s: float = 1.0,
                 push_every_s: float = 5.0, max_pipelines: int = 1000) -> None:
        self.gateway = gateway
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}"
        self.cache_s = cache_s
        self.push_every_s = push_every_s
        self.max_pipelines = max_pipelines
        # (pipeline, code) -> count; pipeline -> [count per bucket, +Inf last]; pipeline -> sum.
        self._requests: dict[tuple[str, int], int] = {}
        self._buckets: dict[str, list[int]] = {}
        self._seconds: dict[str, float] = {}
        self._live: dict[str, LiveClients] = {}
        self._pusher: asyncio.TimerHandle | None = None
        self._pushing: asyncio.Task[None] | None = None
        self._scrape = _Scrape()
        self._scraped_at = -float("inf")
        self._refreshing: asyncio.Future[None] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        gateway.on_gone.append(self.forget)

    # -- counting (the ingest path) ------------------------------------------------------------

    def observe(self, pipeline_id: str, status: int, seconds: float) -> None:
        """Count one ingest request and its latency. Cheap: dict updates only."""
        if pipeline_id not in self._buckets:
            pipeline_id = self._label(pipeline_id, status)
        key = (pipeline_id, status)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        self._buckets[pipeline_id][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._seconds[pipeline_id] += seconds
        if self._pusher is None:
            self._start_pushing()

    def _label(self, pipeline_id: str, status: int) -> str:
        if status == 404:
            pipeline_id = "_unknown"
        elif len(self._buckets) >= self.max_pipelines:
            pipeline_id = "_other"
        if pipeline_id not in self._buckets:
            self._buckets[pipeline_id] = [0] * (len(LATENCY_BUCKETS) + 1)
            self._seconds[pipeline_id] = 0.0
        return pipeline_id

    def live_clients(self, pipeline_id: str) -> LiveClients:
        """The gauge of `pipeline_id`'s live clients on this replica, for the fan-out to move."""
        gauge = self._live.get(pipeline_id)
        if gauge is None:
            gauge = self._live[pipeline_id] = LiveClients()
            if self._pusher is None:
                self._start_pushing()
        return gauge

    def forget(self, pipeline_id: str) -> None:
        """Drop this replica's series of a pipeline that is gone."""
        if self._buckets.pop(pipeline_id, None) is not None:
            self._seconds.pop(pipeline_id, None)
            self._requests = {k: n for k, n in self._requests.items() if k[0] != pipeline_id}
        self._live.pop(pipeline_id, None)

    def report(self) -> dict[str, Any]:
        """This replica's counts as plain data (what it pushes to the registry)."""
        return {
            "requests": dict(self._requests),
            "latency": {p: (list(b), self._seconds[p]) for p, b in self._buckets.items()},
            "live": {p: g.value for p, g in self._live.items()},
        }

    # -- pushing to the registry ------------------------------------------------------------

    def _start_pushing(self) -> None:
        # A chain of timers, not a task that lives forever: a loop that ends leaves nothing
        # pending behind (one replica's loop lives as long as the replica).
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # counted outside an event loop (a unit test): nothing to push to
        self._pusher = loop.call_later(self.push_every_s, self._push)

    def _push(self) -> None:
        loop = asyncio.get_running_loop()
        if self._pushing is None or self._pushing.done():
            self._pushing = loop.create_task(self._push_once())
        self._pusher = loop.call_later(self.push_every_s, self._push)

    async def _push_once(self) -> None:
        try:
            await self.gateway.registry.report_web(self.replica, self.report())
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.debug("metrics: report to the registry failed: %s: %s", type(exc).__name__, exc)

    def close(self) -> None:
        """Stop pushing reports. Idempotent."""
        if self._pusher is not None:
            self._pusher.cancel()
        if self._pushing is not None:
            self._pushing.cancel()

    # -- scraping ----------------------------------------------------------------------------

    async def scrape(self) -> bytes:
        """The Prometheus text of this replica, the other replicas and every pipeline."""
        await self._refresh()
        return generate_latest(self.registry)

    async def _refresh(self) -> None:
        if time.monotonic() - self._scraped_at < self.cache_s:
            return
        if self._refreshing is not None:  # a concurrent scrape is fetching: share its answer
            await asyncio.shield(self._refreshing)
            return
        self._refreshing = asyncio.get_running_loop().create_future()
        try:
            self._scrape = await self._fetch()
            self._scraped_at = time.monotonic()
        finally:
            self._refreshing.set_result(None)
            self._refreshing = None

    async def _fetch(self) -> _Scrape:
        registry = self.gateway.registry
        try:
            pipelines, reports = await asyncio.gather(registry.pipelines(), registry.web_reports())
        except Exception as exc:  # noqa: BLE001 - still show this replica's own counts
            log.warning("metrics: the registry did not answer a scrape: %s: %s", type(exc).__name__, exc)
            return _Scrape(registry_up=False)
        reports.pop(self.replica, None)  # this replica's own counts are current, not reported
        listed = {view.id for view in pipelines}
        self.gateway.known(listed)  # the gateway forgets the gone ones (and tells `forget`)
        for pipeline_id in (set(self._buckets) | set(self._live)) - listed - _SPECIAL:
            self.forget(pipeline_id)
        return _Scrape(pipelines=pipelines, others=reports)

    def collect(self) -> Iterator[Metric]:
        """The metric families, from the last fetch and this replica's counts now."""
        scrape = self._scrape
        yield from _pipeline_families(scrape.pipelines)
        reports = {self.replica: self.report(), **scrape.others}
        if scrape.registry_up:
            listed = {view.id for view in scrape.pipelines} | _SPECIAL
            reports = {replica: _only(report, listed) for replica, report in reports.items()}
        yield from _replica_families(reports)
        up = GaugeMetricFamily("dash_registry_up", "1 when the registry answered this scrape")
        up.add_metric([], 1.0 if scrape.registry_up else 0.0)
        yield up


def _only(report: dict[str, Any], pipelines: set[str]) -> dict[str, Any]:
    """A replica's report without the series of pipelines not in `pipelines`."""
    return {
        "requests": {k: n for k, n in report.get("requests", {}).items() if k[0] in pipelines},
        "latency": {p: v for p, v in report.get("latency", {}).items() if p in pipelines},
        "live": {p: n for p, n in report.get("live", {}).items() if p in pipelines},
    }


class _Collector:
    """The custom collector `ReplicaMetrics` registers in its own CollectorRegistry."""

    def __init__(self, metrics: ReplicaMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.collect()


def _count(counters: dict[str, Any], key: str) -> float:
    value = counters.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def _pipeline_families(views: list[PipelineView]) -> Iterator[Metric]:
    records = {name: CounterMetricFamily(f"dash_records_{name}", doc, labels=["pipeline"])
               for name, _, doc in _RECORD_COUNTERS}
    pending = GaugeMetricFamily("dash_wal_pending_records",
                                "records acknowledged (in the log) and not yet stored in the lake",
                                labels=["pipeline"])
    flush = SummaryMetricFamily("dash_flush_seconds", "lake writes of acknowledged records: count and time",
                                labels=["pipeline"])
    failures = CounterMetricFamily("dash_flush_failures", "lake writes that failed (and are retried)",
                                   labels=["pipeline"])
    restarts = CounterMetricFamily("dash_pipeline_restarts", "restarts by the supervisor", labels=["pipeline"])
    status = GaugeMetricFamily("dash_pipeline_status", "1 for the pipeline's current status",
                               labels=["pipeline", "status"])
    sinks = CounterMetricFamily("dash_sink_deliveries", "deliveries to a pipeline's sinks, by result",
                                labels=["pipeline", "sink", "result"])
    for view in views:
        counters = view.counters
        for name, key, _ in _RECORD_COUNTERS:
            records[name].add_metric([view.id], _count(counters, key))
        pending.add_metric([view.id], float(view.waiting_in_log))
        flush.add_metric([view.id], int(_count(counters, "flushes")), _count(counters, "flush_seconds"))
        failures.add_metric([view.id], _count(counters, "flush_failures"))
        restarts.add_metric([view.id], float(view.restarts))
        for name in _STATUSES:
            status.add_metric([view.id, name], 1.0 if view.status == name else 0.0)
        deliveries = counters.get("sink_deliveries")
        if isinstance(deliveries, dict):
            for sink, results in sorted(deliveries.items()):
                for result, n in sorted(dict(results).items()):
                    sinks.add_metric([view.id, str(sink), str(result)], float(n))
    yield from records.values()
    yield from (pending, flush, failures, restarts, status, sinks)


def _replica_families(reports: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    requests = CounterMetricFamily("dash_ingest_requests", "ingest requests answered, by HTTP status",
                                   labels=["pipeline", "code", "replica"])
    latency = HistogramMetricFamily("dash_ingest_latency_seconds", "ingest requests: time to the answer",
                                    labels=["pipeline", "replica"])
    live = GaugeMetricFamily("dash_live_clients", "live (WebSocket) clients connected",
                             labels=["pipeline", "replica"])
    bounds = [*(repr(b) for b in LATENCY_BUCKETS), "+Inf"]
    for replica, report in sorted(reports.items()):
        for (pipeline, code), n in sorted(report.get("requests", {}).items()):
            requests.add_metric([pipeline, str(code), replica], float(n))
        for pipeline, (counts, total) in sorted(report.get("latency", {}).items()):
            cumulative, running = [], 0
            for bound, n in zip(bounds, counts, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            latency.add_metric([pipeline, replica], cumulative, total)
        for pipeline, n in sorted(report.get("live", {}).items()):
            live.add_metric([pipeline, replica], float(n))
    yield from (requests, latency, live)


def metrics_routes(gateway: Gateway, metrics: ReplicaMetrics) -> list[Route]:
    @requires("read")
    async def scrape(request: Request) -> Response:
        return Response(await metrics.scrape(), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return [Route("/metrics", scrape, methods=["GET"])]
