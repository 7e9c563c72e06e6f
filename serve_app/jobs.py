"""Replay and dead-letter routes: `POST /v1/pipelines/{id}/replay` and
`/dead/replay` start jobs on the pipeline's actor (admin), `GET /v1/jobs/{id}` reads one
(read), `GET /v1/pipelines/{id}/dead` lists the newest dead letters from the lake (read).

A replay's range is on the *event* time (`from`, `to`: ISO 8601 or epoch seconds, the query
API's rules and meaning), or on the receive time (`received_from`, `received_to`), or on
sequence numbers (`from_seq`, `to_seq`, both included); none replays everything
(`dash_ray.lifecycle.selection`). A job id names its pipeline (`<pipeline>.<n>`)."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.errors import MalformedBodyError, NotFoundError, QueryError
from dash_ray.lifecycle.selection import ReplayRequest
from dash_ray.query.model import Schema, iso, parse_query
from dash_ray.spec import PIPELINE_ID_PATTERN
from serve_app.bodies import job_body
from serve_app.gateway import Gateway
from serve_app.query import QueryEngines
from serve_app.requests import int_param, json_body, requires
from serve_app.responses import json_response

__all__ = ["job_routes"]

_MAX_DEAD = 10_000
_PIPELINE = re.compile(PIPELINE_ID_PATTERN)
_NO_COLUMNS = Schema(())


def _replay_request(body: Any) -> ReplayRequest:
    if not isinstance(body, dict):
        raise MalformedBodyError('give {"from": ..., "to": ...} (event times), {"received_from": ..., "received_to":'
                                 ' ...} or {"from_seq": ..., "to_seq": ...}', where="body")
    unknown = set(body) - {"from", "to", "received_from", "received_to", "from_seq", "to_seq"}
    if unknown:
        raise MalformedBodyError(f"unknown field {sorted(unknown)[0]!r} in the replay request", where=sorted(unknown)[0])
    event = _times(body, "from", "to")
    received = _times(body, "received_from", "received_to")
    seqs = {}
    for name in ("from_seq", "to_seq"):
        value = body.get(name)
        if value is not None and (type(value) is not int or value < 1):
            raise MalformedBodyError(f"{name!r} must be a positive integer", where=name)
        seqs[name] = value
    return ReplayRequest(start_us=event[0], end_us=event[1], received_start_us=received[0],
                         received_end_us=received[1], first_seq=seqs["from_seq"], last_seq=seqs["to_seq"])


def _times(body: dict[str, Any], start: str, end: str) -> tuple[int | None, int | None]:
    """Two of the body's times, by the query API's rules and messages."""
    given = {new: str(body[old]) for old, new in ((start, "from"), (end, "to")) if body.get(old) is not None}
    try:
        checked = parse_query(given, _NO_COLUMNS)
    except QueryError as exc:
        where = {"from": start, "to": end}.get(exc.where or "", exc.where)
        message = exc.message.replace("'from'", repr(start)).replace("'to'", repr(end))
        raise MalformedBodyError(message, where=where) from None
    return checked.start_us, checked.end_us


def _dead_rows(engines: QueryEngines, spec: Any, limit: int) -> list[dict[str, Any]]:
    table = engines.lake(spec).tail("dead", spec.id, limit)
    if table is None:
        return []
    rows = table.sort_by([("seq", "descending")]).to_pylist()
    out = []
    for row in rows:
        raw = row.get("raw")
        try:
            record = orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError:
            record = raw  # not JSON at all: shown as received
        received = row.get("received_at")
        out.append({"seq": row["seq"], "received_at": iso(int(received.timestamp() * 1_000_000)) if received else None,
                    "field": row.get("field"), "rule": row.get("rule"), "value": row.get("value"),
                    "reason": row.get("reason"), "record": record})
    return out


def job_routes(gateway: Gateway, engines: QueryEngines) -> list[Route]:
    @requires("admin")
    async def replay(request: Request) -> Response:
        pipeline_id = request.path_params["pipeline_id"]
        await gateway.info(pipeline_id)  # 404 for an unknown pipeline
        body = await json_body(request, 64 * 1024, empty={})
        job = await gateway.pipeline(pipeline_id).replay(_replay_request(body))
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
        rows = await engines.reads.run(_dead_rows, engines, info.spec, limit)
        return json_response({"dead": rows})

    return [
        Route("/v1/pipelines/{pipeline_id}/replay", replay, methods=["POST"]),
        Route("/v1/pipelines/{pipeline_id}/dead/replay", replay_dead, methods=["POST"]),
        Route("/v1/pipelines/{pipeline_id}/dead", dead, methods=["GET"]),
        Route("/v1/jobs/{job_id}", job, methods=["GET"]),
    ]
