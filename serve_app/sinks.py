"""Sink routes: `GET /v1/pipelines/{id}/sinks` (read) answers each sink's counters, breaker
state, last error, last delivered seq and dead deliveries; `POST
/v1/pipelines/{id}/sinks/{name}/redeliver` (admin) queues a sink's dead deliveries again, with
their ids, and enables a sink a 410 disabled (`dash_ray.pipeline.delivery`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serve_app.gateway import Gateway
from serve_app.requests import requires
from serve_app.responses import json_response

__all__ = ["sink_routes"]


def sink_routes(gateway: Gateway) -> list[Route]:
    @requires("read")
    async def sinks(request: Request) -> Response:
        pipeline_id = request.path_params["pipeline_id"]
        await gateway.info(pipeline_id)  # 404 for an unknown pipeline
        return json_response({"sinks": await gateway.pipeline(pipeline_id).sinks()})

    @requires("admin")
    async def redeliver(request: Request) -> Response:
        pipeline_id = request.path_params["pipeline_id"]
        await gateway.info(pipeline_id)
        return json_response(await gateway.pipeline(pipeline_id).redeliver(request.path_params["name"]))

    return [
        Route("/v1/pipelines/{pipeline_id}/sinks", sinks, methods=["GET"]),
        Route("/v1/pipelines/{pipeline_id}/sinks/{name}/redeliver", redeliver, methods=["POST"]),
    ]
