"""Dashboard routes: `PUT /v1/dashboards/{id}` (admin; JSON or YAML like a pipeline spec;
with `If-None-Match: *` it only creates: 412 when the dashboard exists),
`GET /v1/dashboards`, `GET /v1/dashboards/{id}` (read), `DELETE /v1/dashboards/{id}` (admin).
The registry validates and stores them in the catalog (`dash_ray.dashboards`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.errors import NotFoundError, PreconditionFailedError, Problem, SpecError
from serve_app.bodies import dashboard_body
from serve_app.gateway import Gateway
from serve_app.requests import requires, spec_body
from serve_app.resources import item_route, list_route
from serve_app.responses import json_response

__all__ = ["dashboard_routes"]


def dashboard_routes(gateway: Gateway) -> list[Route]:
    registry = gateway.registry

    @requires("admin")
    async def put_dashboard(request: Request) -> Response:
        dashboard_id = request.path_params["dashboard_id"]
        data = await spec_body(request)  # the same body rules as a pipeline PUT
        if not isinstance(data, dict):
            raise SpecError("invalid dashboard: it must be a JSON or YAML object",
                            problems=[Problem("(dashboard)", "a dashboard must be a JSON or YAML object")])
        data.setdefault("id", dashboard_id)
        if data["id"] != dashboard_id:
            raise SpecError(f"dashboard id {data['id']!r} does not match the URL's {dashboard_id!r}",
                            problems=[Problem("id", "does not match the URL")])
        if request.headers.get("if-none-match", "").strip() == "*":
            # Create only: the page's "New dashboard" never overwrites one that exists.
            try:
                await registry.dashboard(dashboard_id)
            except NotFoundError:
                pass
            else:
                raise PreconditionFailedError(f"dashboard {dashboard_id!r} exists already; pick another id or "
                                              "edit it", where="id")
        record = await registry.put_dashboard(data)
        return json_response(dashboard_body(record), 201 if record.created else 200)

    @requires("admin")
    async def delete_dashboard(request: Request) -> Response:
        await registry.delete_dashboard(request.path_params["dashboard_id"])
        return Response(status_code=204)

    return [
        list_route("/v1/dashboards", "dashboards", registry.dashboards, dashboard_body),
        Route("/v1/dashboards/{dashboard_id}", put_dashboard, methods=["PUT"]),
        item_route("/v1/dashboards/{dashboard_id}", registry.dashboard, dashboard_body),
        Route("/v1/dashboards/{dashboard_id}", delete_dashboard, methods=["DELETE"]),
    ]
