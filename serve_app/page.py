"""The page: `GET /` and its client-side views (`/pipelines/{id}`, `/dashboards`,
`/dashboards/{id}`, `/dashboards/{id}/edit`, `/new/dashboard`), all one HTML file, and its
assets under `/static/` from `serve_app/static/` (every asset local, no CDN).

The HTML and assets hold no data, so they are served without a token; the page asks for one
once per browser and trades it for a page session (`serve_app/sessions.py`: an HttpOnly
cookie the page's scripts never see), which goes with every API call and live socket.
`GET /v1/whoami` tells the page the scope of its token and whether it is signed in by a
session (to hide what it may not do).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from serve_app.requests import requires
from serve_app.responses import json_response

__all__ = ["STATIC_DIR", "page_routes"]

STATIC_DIR = Path(__file__).parent / "static"

# Scripts and styles only from this origin; uPlot sets element styles from script, and the
# WebSocket goes to this same origin ('self' covers ws: and wss: there). The referrer policy
# is `same-origin`, not `no-referrer`: the page session's requests must show the page's origin
# (`dash_ray.auth.origins`), and under `no-referrer` the Fetch standard has a browser send
# `Origin: null` on a page's POSTs (Chromium 156 sends the origin anyway, checked; not every
# browser may) and no Referer to fall back on. No other origin is ever sent a Referer.
_HEADERS = {
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
                               " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-cache",
}


class _Static(StaticFiles):
    """The assets, revalidated on each load (they change with each version of Dash)."""

    def file_response(self, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers.update(_HEADERS)
        return response


def page_routes() -> list[Route | Mount]:
    index = STATIC_DIR / "index.html"

    async def page(request: Request) -> Response:
        return FileResponse(index, media_type="text/html", headers=_HEADERS)

    @requires("read")
    async def whoami(request: Request) -> Response:
        return json_response({"scope": request.state.token_scope, "auth": request.state.credential.kind},
                             headers={"cache-control": "no-store"})

    return [
        Route("/", page, methods=["GET", "HEAD"]),
        Route("/pipelines/{pipeline_id}", page, methods=["GET", "HEAD"]),
        Route("/dashboards", page, methods=["GET", "HEAD"]),
        Route("/dashboards/{dashboard_id}", page, methods=["GET", "HEAD"]),
        Route("/dashboards/{dashboard_id}/edit", page, methods=["GET", "HEAD"]),
        Route("/new/dashboard", page, methods=["GET", "HEAD"]),
        Route("/v1/whoami", whoami, methods=["GET"]),
        Mount("/static", app=_Static(directory=STATIC_DIR), name="static"),
    ]
