"""`GET /v1/pipelines/{id}/query`: a pipeline's silver rows and aggregates (read scope).

Each web replica keeps one engine per pipeline and spec (`dash_ray.query.engines`): PostgreSQL
when the pipeline's silver is there, DuckDB over the pipeline's lake otherwise, and also when
PostgreSQL cannot answer or is behind the lake (`dash_ray.query.stores`: the lake always holds
every stored row). The answer's
`Dash-Query-Store` header says which store answered; `Dash-Query-Stale` (and the answer's
`stale` field) that it may miss stored rows.

Limits: queries (and the live catch-up and dead-letter reads) run in the replica's own read
threads (`serve_app.reads`: 503 when they are all taken and the queue is full), never in the
event loop's default executor, so ingest and token checks do not wait behind a heavy read.
Each query is stopped past `query_timeout_s` on either engine (422 `QueryLimitError`, where
`timeout`); one PostgreSQL stopped is not run again on the lake.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.live.fanout import StoredRead
from dash_ray.query import engines as query_engines
from dash_ray.settings import WebSettings
from dash_ray.spec import PipelineSpec
from serve_app.gateway import Gateway
from serve_app.reads import ReadPool
from serve_app.requests import requires
from serve_app.responses import json_response

__all__ = ["QueryEngines", "query_routes"]


class QueryEngines(query_engines.QueryEngines):
    """The replica's engines (`dash_ray.query.engines`) and the read threads they run in."""

    def __init__(self, settings: WebSettings) -> None:
        super().__init__(lake_url=settings.lake_url, lake_options=settings.lake_options, pg_dsn=settings.pg_dsn,
                         timeout_s=settings.query_timeout_s)
        self.reads = ReadPool(threads=settings.read_threads, queue=settings.read_queue)

    def records_after(self, spec: PipelineSpec, after: int, *, limit: int) -> StoredRead:
        """Stored records after a seq, for a live client catching up (`dash_ray.live.fanout`)."""
        return StoredRead(*self.stored_after(spec, after, limit=limit))

    def close(self) -> None:
        self.reads.close()
        super().close()


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
