"""The Serve deployments of the web tier. By default (`ingress="replica"`) each replica runs
the HTTP server in its own event loop, on the platform's port; `ingress="serve"` puts the
same ASGI app behind Serve's own HTTP proxy instead, for comparison and for clusters that want
Serve's routing.

Why not Serve's proxy: measured on this machine (`../shared/notes/ingress-paths.md`, and an
earlier `benchmarks/ingest.py` row that the current benchmark no longer prints), the Python
proxy adds a hop that capped signed ingest at a few hundred requests a second, while a uvicorn
server inside the replica served ten times that.
Serve still hosts, places (on `web` nodes) and restarts the replicas and health-checks the
server; the proxy is disabled. On a local instance every replica serves on the one socket the
platform holds (`dash_ray/deploy/listener.py`: no other platform can share the port); on a
cluster's web node the replicas bind the port themselves and share it with SO_REUSEPORT.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from typing import Any, cast

import uvicorn
from ray import serve
from ray.serve.deployment import Deployment

from dash_ray.deploy.listener import receive
from dash_ray.process_logging import setup_logging
from dash_ray.settings import Settings, WebSettings, web_selector
from serve_app.app import build_app
from serve_app.websocket import LiveWebSocketProtocol

__all__ = ["APP_NAME", "ProxiedWeb", "Web", "serve_options", "web_app"]

APP_NAME = "dash"
log = logging.getLogger(__name__)


def _listen(settings: WebSettings) -> socket.socket:
    if settings.listener is not None:
        return receive(settings.listener)
    host, port = settings.host, settings.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _freeze() -> None:
    """Move what exists now (Ray, the app, its imports) out of the collector's sight: it lives
    as long as the replica, and walking it made every full collection a stall of tens of ms
    (the same in the pipeline actor, `dash_ray/pipeline/host.py`)."""
    gc.freeze()


@serve.deployment(ray_actor_options={"num_cpus": 0}, health_check_period_s=2, health_check_timeout_s=10,
                  graceful_shutdown_timeout_s=5)
class Web:
    def __init__(self, settings: WebSettings) -> None:
        setup_logging(settings.log_format)
        self._sock = _listen(settings)
        config = uvicorn.Config(build_app(settings), loop="none", http="httptools", ws=LiveWebSocketProtocol,
                                ws_ping_interval=settings.ws_ping_interval_s,
                                ws_ping_timeout=settings.ws_ping_interval_s,
                                ws_max_size=64 * 1024, lifespan="off", log_level="warning", access_log=False,
                                proxy_headers=False,
                                timeout_keep_alive=30, backlog=4096)
        self._server = uvicorn.Server(config)
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[self._sock]))
        _freeze()

    async def check_health(self) -> None:
        if self._task.done():
            raise RuntimeError(f"the HTTP server stopped: {self._task.exception()!r}")

    async def __call__(self) -> str:
        return "serving on its own port"

    def __del__(self) -> None:
        self._server.should_exit = True
        self._sock.close()


# `serve.ingress()` with no app, and the app built by `__serve_build_asgi_app__` in the replica
# after `__init__`: the app holds this replica's Gateway (Ray handles, caches for one event
# loop, read threads), so it must be built there, from the settings the deployment is bound
# with. Ray 2.60's `serve.ingress` documents this late-bound mode, but the hook's name is
# Serve's (`ray/serve/_private/replica.py`, SERVE_BUILD_ASGI_APP_METHOD); the other way,
# `serve.ingress(builder)`, calls a builder with no arguments, so the settings would have to
# be baked into a class made per `web_app` call. tests/serve_app/test_deployment.py pins the
# hook to the Ray version it was checked on (and tests/test_cli.py serves through it).
@serve.ingress()
class ProxiedWeb:
    """The same app, reached through Serve's proxy (one extra hop per request)."""

    def __init__(self, settings: WebSettings) -> None:
        setup_logging(settings.log_format)
        self._settings = settings
        _freeze()

    def __serve_build_asgi_app__(self) -> object:
        return build_app(self._settings)


def serve_options(settings: Settings) -> dict[str, Any]:
    """`serve.start` arguments: no proxy when replicas serve HTTP themselves."""
    if settings.ingress == "replica":
        return {"proxy_location": "Disabled"}
    return {"proxy_location": "EveryNode", "http_options": {"host": settings.host, "port": settings.port}}


def web_app(settings: Settings) -> serve.Application:
    actor_options = {"num_cpus": 0, "label_selector": web_selector()}
    # Serve's annotations type neither `@serve.deployment(...)` on a class nor
    # `serve.deployment(cls)` as the Deployment both give.
    if settings.ingress == "replica":
        # On a cluster each web node serves the port once: one replica per node.
        web = cast(Deployment, Web)
        if settings.ray_address:
            web = web.options(max_replicas_per_node=1)
        return web.options(num_replicas=settings.web_replicas, ray_actor_options=actor_options).bind(settings.web())
    return cast(Deployment, serve.deployment(ProxiedWeb)).options(
        num_replicas=settings.web_replicas, ray_actor_options=actor_options, max_ongoing_requests=1000,
        logging_config={"enable_access_log": False},
    ).bind(settings.web())
