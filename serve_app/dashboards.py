"""Dashboard routes: `PUT /v1/dashboards/{id}` (admin; JSON or YAML like a pipeline spec),
`GET /v1/dashboards`, `GET /v1/dashboards/{id}` (read), `DELETE /v1/dashboards/{id}` (admin).
The registry validates and stores them in the catalog (`dash_ray.dashboards`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.catalog import DashboardRecord
from dash_ray.errors import Problem, SpecError
from serve_app.api import _spec_body  # the same body rules as a pipeline PUT
from serve_app.gateway import Gateway
from serve_app.responses import json_response

__all__ = ["dashboard_body", "dashboard_routes"]


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def dashboard_body(record: DashboardRecord) -> dict[str, Any]:
    """A dashboard as served: its definition, version and times."""
    return {**record.dashboard.to_json_dict(), "version": record.version,
            "created_at": _time(record.created_at), "updated_at": _time(record.updated_at)}


def dashboard_routes(gateway: Gateway) -> list[Route]:
    async def auth(request: Request, needed: str) -> None:
        await gateway.authorize(request.headers.get("authorization"), needed)

    async def put_dashboard(request: Request) -> Response:
        await auth(request, "admin")
        dashboard_id = request.path_params["dashboard_id"]
        data = await _spec_body(request)
        if not isinstance(data, dict):
            raise SpecError("invalid dashboard: it must be a JSON or YAML object",
                            problems=[Problem("(dashboard)", "a dashboard must be a JSON or YAML object")])
        data.setdefault("id", dashboard_id)
        if data["id"] != dashboard_id:
            raise SpecError(f"dashboard id {data['id']!r} does not match the URL's {dashboard_id!r}",
                            problems=[Problem("id", "does not match the URL")])
        record = await gateway.registry.put_dashboard(data)
        return json_response(dashboard_body(record), 201 if record.created else 200)

    async def list_dashboards(request: Request) -> Response:
        await auth(request, "read")
        return json_response({"dashboards": [dashboard_body(r) for r in await gateway.registry.dashboards()]})

    async def get_dashboard(request: Request) -> Response:
        await auth(request, "read")
        return json_response(dashboard_body(await gateway.registry.dashboard(request.path_params["dashboard_id"])))

    async def delete_dashboard(request: Request) -> Response:
        await auth(request, "admin")
        await gateway.registry.delete_dashboard(request.path_params["dashboard_id"])
        return Response(status_code=204)

    return [
        Route("/v1/dashboards", list_dashboards, methods=["GET"]),
        Route("/v1/dashboards/{dashboard_id}", put_dashboard, methods=["PUT"]),
        Route("/v1/dashboards/{dashboard_id}", get_dashboard, methods=["GET"]),
        Route("/v1/dashboards/{dashboard_id}", delete_dashboard, methods=["DELETE"]),
    ]
