"""`GET /v1/pipelines/{id}/query`: a pipeline's silver rows and aggregates (read scope).

Each web replica keeps one engine per pipeline and spec: PostgreSQL when the pipeline's
silver is there (the spec says `postgres`, or says nothing on a platform with a database),
DuckDB over the pipeline's lake otherwise, and also when PostgreSQL cannot answer or is behind
the lake (`dash_ray.query.stores`: the lake always holds every stored row). The answer's
`Dash-Query-Store` header says which store answered; `Dash-Query-Stale` (and the answer's
`stale` field) that it may miss stored rows.

Limits: queries (and the live catch-up and dead-letter reads) run in the replica's own read
threads (`serve_app.reads`: 503 when they are all taken and the queue is full), never in the
event loop's default executor, so ingest and token checks do not wait behind a heavy read.
Each query is stopped past `query_timeout_s` on either engine (422 `QueryLimitError`, where
`timeout`); one PostgreSQL stopped is not run again on the lake.
"""

from __future__ import annotations

import threading

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.lake import Lake
from dash_ray.lake_roots import pipeline_lake
from dash_ray.live.fanout import StoredRead
from dash_ray.query.duckdb import DuckDBEngine
from dash_ray.query.model import parse_query, spec_schema
from dash_ray.query.postgres import PostgresEngine
from dash_ray.query.rollup import spec_plan
from dash_ray.query.stores import Answered, answer
from dash_ray.settings import WebSettings
from dash_ray.spec import PipelineSpec
from serve_app.gateway import Gateway
from serve_app.reads import ReadPool
from serve_app.requests import requires
from serve_app.responses import json_response

__all__ = ["QueryEngines", "query_routes"]

_MAX_ENGINES = 256


class QueryEngines:
    """The engines of one replica, by pipeline; rebuilt when a pipeline's spec changes."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.reads = ReadPool(threads=settings.read_threads, queue=settings.read_queue)
        self._engines: dict[str, tuple[str, DuckDBEngine, PostgresEngine | None]] = {}
        self._lock = threading.Lock()

    def _for(self, spec: PipelineSpec) -> tuple[DuckDBEngine, PostgresEngine | None]:
        with self._lock:
            return self._locked_for(spec)

    def _locked_for(self, spec: PipelineSpec) -> tuple[DuckDBEngine, PostgresEngine | None]:
        key = spec.model_dump_json()
        cached = self._engines.get(spec.id)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        if cached is not None:
            self._close(cached)
        if len(self._engines) >= _MAX_ENGINES:
            for old in list(self._engines.values())[: _MAX_ENGINES // 4]:
                self._close(old)
            self._engines = dict(list(self._engines.items())[_MAX_ENGINES // 4:])
        plan = spec_plan(spec)
        lake = self.lake(spec)
        timeout_s = self.settings.query_timeout_s
        duck = DuckDBEngine(lake, spec.id, plan=plan, timeout_s=timeout_s)
        silver = spec.storage.silver or ("postgres" if self.settings.pg_dsn else "lake")
        pg = (PostgresEngine(self.settings.pg_dsn, spec.id, plan=plan, timeout_s=timeout_s)
              if silver == "postgres" and self.settings.pg_dsn else None)
        self._engines[spec.id] = (key, duck, pg)
        return duck, pg

    def lake(self, spec: PipelineSpec) -> Lake:
        return pipeline_lake(spec, lake_url=self.settings.lake_url, lake_options=self.settings.lake_options)

    @staticmethod
    def _close(entry: tuple[str, DuckDBEngine, PostgresEngine | None]) -> None:
        entry[1].close()
        if entry[2] is not None:
            entry[2].close()

    def run(self, spec: PipelineSpec, params: dict[str, str]) -> Answered:
        """The answer and the store that made it. Blocking: call it in a thread."""
        query = parse_query(params, spec_schema(spec))
        duck, pg = self._for(spec)
        return answer(query, duck, pg)

    def records_after(self, spec: PipelineSpec, after: int, *, limit: int) -> StoredRead:
        """Stored records after a seq, for a live client catching up (`dash_ray.live.fanout`).
        From the lake's silver, which every stored row reaches first. Blocking."""
        duck, _ = self._for(spec)
        records, reached, first = duck.records_after(after, spec_schema(spec).columns, limit=limit)
        return StoredRead(records, reached, first)

    def close(self) -> None:
        self.reads.close()
        for entry in self._engines.values():
            self._close(entry)
        self._engines.clear()


def query_routes(gateway: Gateway, engines: QueryEngines) -> list[Route]:
    @requires("read")
    async def query(request: Request) -> Response:
        info = await gateway.info(request.path_params["pipeline_id"])
        params = dict(request.query_params)
        answered = await engines.reads.run(engines.run, info.spec, params)
        headers = {"Dash-Query-Store": answered.store}
        if answered.stale is not None:
            headers["Dash-Query-Stale"] = answered.stale
        return json_response(answered.body, headers=headers)

    return [Route("/v1/pipelines/{pipeline_id}/query", query, methods=["GET"])]
