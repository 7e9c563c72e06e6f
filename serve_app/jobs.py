"""Replay and dead-letter routes: `POST /v1/pipelines/{id}/replay` and
`/dead/replay` start jobs on the pipeline's actor (admin), `GET /v1/jobs/{id}` reads one
(read), `GET /v1/pipelines/{id}/dead` lists the newest dead letters from the lake (read).

A replay's range is on the *event* time (`from`, `to`: ISO 8601 or epoch seconds, the query
API's rules and meaning), or on the receive time (`received_from`, `received_to`), or on
sequence numbers (`from_seq`, `to_seq`, both included); none replays everything
(`dash_ray.lifecycle.selection`). A job id names its pipeline (`<pipeline>.<n>`)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.errors import NotFoundError
from dash_ray.lifecycle.selection import ReplayRequest
from dash_ray.spec import PIPELINE_ID_PATTERN
from serve_app.bodies import job_body
from serve_app.gateway import Gateway
from serve_app.query import QueryEngines
from serve_app.requests import int_param, json_body, requires
from serve_app.responses import json_response

__all__ = ["job_routes"]

_MAX_DEAD = 10_000
_PIPELINE = re.compile(PIPELINE_ID_PATTERN)


def job_routes(gateway: Gateway, engines: QueryEngines) -> list[Route]:
    @requires("admin")
    async def replay(request: Request) -> Response:
        pipeline_id = request.path_params["pipeline_id"]
        await gateway.info(pipeline_id)  # 404 for an unknown pipeline
        body = await json_body(request, 64 * 1024, empty={})
        job = await gateway.pipeline(pipeline_id).replay(ReplayRequest.from_body(body))
        return json_response(job_body(job), 202)

    @requires("admin")
    async def replay_dead(request: Request) -> Response:
        pipeline_id = request.path_params["pipeline_id"]
        await gateway.info(pipeline_id)
        job = await gateway.pipeline(pipeline_id).replay_dead()
        return json_response(job_body(job), 202)

    @requires("read")
    async def job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        pipeline_id, dot, number = job_id.rpartition(".")
        if not dot or not number.isdigit() or not _PIPELINE.match(pipeline_id):
            raise NotFoundError(f"no job {job_id[:80]!r}", where="job id")
        await gateway.info(pipeline_id)
        return json_response(job_body(await gateway.pipeline(pipeline_id).job(job_id)))

    @requires("read")
    async def dead(request: Request) -> Response:
        info = await gateway.info(request.path_params["pipeline_id"])
        limit = int_param(request, "limit", 100, low=1, high=_MAX_DEAD)
        rows = await engines.reads.run(engines.dead_letters, info.spec, limit)
        return json_response({"dead": rows})

    return [
        Route("/v1/pipelines/{pipeline_id}/replay", replay, methods=["POST"]),
        Route("/v1/pipelines/{pipeline_id}/dead/replay", replay_dead, methods=["POST"]),
        Route("/v1/pipelines/{pipeline_id}/dead", dead, methods=["GET"]),
        Route("/v1/jobs/{job_id}", job, methods=["GET"]),
    ]
