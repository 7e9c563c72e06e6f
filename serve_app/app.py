"""The Starlette application a web replica serves: ingest, admin, read and dashboard routes
and the page over one Gateway, with every error turned into its JSON body and status, every
request but ingest given a request id, and the replica's metrics (`/metrics`)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from dash_ray.errors import DashError
from dash_ray.settings import WebSettings
from serve_app.api import api_routes
from serve_app.dashboards import dashboard_routes
from serve_app.gateway import Gateway
from serve_app.ingress import IngestFront
from serve_app.jobs import job_routes
from serve_app.live import LiveFront, LiveHub, LiveSocket, live_routes
from serve_app.metrics import ReplicaMetrics, metrics_routes
from serve_app.page import page_routes
from serve_app.query import QueryEngines, query_routes
from serve_app.responses import RequestIds, on_error, on_route_error
from serve_app.sessions import session_routes
from serve_app.sinks import sink_routes

__all__ = ["build_app"]


def build_app(settings: WebSettings, gateway: Gateway | None = None) -> IngestFront:
    """The ASGI app: the ingest front, then the live sockets' front (`serve_app.live`), with
    Starlette behind them for every other route. Its
    `metrics` (a `ReplicaMetrics`) is this replica's: the live fan-out moves
    `app.metrics.live_clients(pipeline_id)`."""
    gateway = gateway or Gateway(settings)
    engines = QueryEngines(settings)
    metrics = ReplicaMetrics(gateway)
    live = LiveSocket(gateway, LiveHub(gateway, engines, metrics=metrics))
    routes = (api_routes(gateway) + query_routes(gateway, engines) + job_routes(gateway, engines) + sink_routes(gateway)
              + live_routes(live) + metrics_routes(gateway, metrics)
              + dashboard_routes(gateway) + session_routes(gateway) + page_routes())
    handlers = {DashError: on_error, Exception: on_error, HTTPException: on_route_error}
    app = Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]
    app.state.gateway = gateway  # where `serve_app.requests.requires` checks tokens
    return IngestFront(LiveFront(RequestIds(app), live), gateway, metrics=metrics)
