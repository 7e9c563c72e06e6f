"""Replay and dead-letter routes: `POST /v1/pipelines/{id}/replay` and
`/dead/replay` start jobs on the pipeline's actor (admin), `GET /v1/jobs/{id}` reads one
(read), `GET /v1/pipelines/{id}/dead` lists the newest dead letters from the lake (read).

A replay's range is on the *event* time (`from`, `to`: ISO 8601 or epoch seconds, the query
API's rules and meaning), or on the receive time (`received_from`, `received_to`), or on
sequence numbers (`from_seq`, `to_seq`, both included); none replays everything
(`dash_ray.lifecycle.selection`). A job id names its pipeline (`<pipeline>.<n>`)."""

from __future__ import annotations

import re

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.errors import MalformedBodyError, NotFoundError
from dash_ray.lifecycle.selection import ReplayRequest
from dash_ray.spec import PIPELINE_ID_PATTERN
from serve_app.gateway import Gateway
from serve_app.ingress import read_body
from serve_app.query import QueryEngines
from serve_app.responses import json_response

__all__ = ["job_routes"]

_MAX_DEAD = 10_000
_PIPELINE = re.compile(PIPELINE_ID_PATTERN)


def job_routes(gateway: Gateway, engines: QueryEngines) -> list[Route]:
    async def replay(request: Request) -> Response:
        await gateway.authorize(request.headers.get("authorization"), "admin")
        pipeline_id = request.path_params["pipeline_id"]
        await gateway.info(pipeline_id)  # 404 for an unknown pipeline
        raw = await read_body(request, 64 * 1024)
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise MalformedBodyError(f"body is not valid JSON: {exc}", where="body") from None
        job = await gateway.replay(pipeline_id, ReplayRequest.from_body(body).as_dict())
        return json_response({"job": job["id"], **job}, 202)

    async def replay_dead(request: Request) -> Response:
        await gateway.authorize(request.headers.get("authorization"), "admin")
        pipeline_id = request.path_params["pipeline_id"]
        await gateway.info(pipeline_id)
        job = await gateway.replay_dead(pipeline_id)
        return json_response({"job": job["id"], **job}, 202)

    async def job(request: Request) -> Response:
        await gateway.authorize(request.headers.get("authorization"), "read")
        job_id = request.path_params["job_id"]
        pipeline_id, dot, number = job_id.rpartition(".")
        if not dot or not number.isdigit() or not _PIPELINE.match(pipeline_id):
            raise NotFoundError(f"no job {job_id[:80]!r}", where="job id")
        await gateway.info(pipeline_id)
        return json_response(await gateway.job(pipeline_id, job_id))

    async def dead(request: Request) -> Response:
        await gateway.authorize(request.headers.get("authorization"), "read")
        info = await gateway.info(request.path_params["pipeline_id"])
        raw_limit = request.query_params.get("limit", "100")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _MAX_DEAD:
            raise MalformedBodyError(f"'limit' must be between 1 and {_MAX_DEAD}", where="limit")
        rows = await engines.reads.run(engines.dead_letters, info.spec, int(raw_limit))
        return json_response({"dead": rows})

    return [
        Route("/v1/pipelines/{pipeline_id}/replay", replay, methods=["POST"]),
        Route("/v1/pipelines/{pipeline_id}/dead/replay", replay_dead, methods=["POST"]),
        Route("/v1/pipelines/{pipeline_id}/dead", dead, methods=["GET"]),
        Route("/v1/jobs/{job_id}", job, methods=["GET"]),
    ]
