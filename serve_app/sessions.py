"""The page's sign-in and sign-out (`dash_ray.auth.sessions`): `POST /v1/session` signs a
browser in with a token and answers with the session cookie, `DELETE /v1/session` signs it
out. What a replica knows of the live sessions is `serve_app/session_table.py`; what a request
authenticates with (its `Authorization` header, else the cookie) is
`serve_app.requests.credential_of`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dash_ray.auth.origins import check_origin
from dash_ray.auth.sessions import clearing_cookie, session_cookie
from dash_ray.errors import MalformedBodyError
from serve_app.gateway import Gateway
from serve_app.requests import credential_of, json_body

__all__ = ["session_routes"]

_MAX_TOKEN_CHARS = 1000


def _secure(request: Request) -> bool:
    """Whether the browser reached the platform over https (itself, or a proxy saying so)."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def session_routes(gateway: Gateway) -> list[Route]:
    """`POST /v1/session` (sign in: the token in a JSON body, `{"token": "..."}`) and
    `DELETE /v1/session` (sign out)."""
    settings = gateway.settings

    async def sign_in(request: Request) -> Response:
        # A sign-in from another site would sign the browser in as someone else (login CSRF).
        check_origin(origin=request.headers.get("origin"), referer=request.headers.get("referer"),
                     host=request.headers.get("host"), allowed=settings.allowed_origins)
        body: Any = await json_body(request, 4096)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token.strip() or len(token) > _MAX_TOKEN_CHARS:
            raise MalformedBodyError('the body is {"token": "<a token>"}', where="token")
        session_id = await gateway.open_session(token.strip())
        response = Response(status_code=204, headers={"cache-control": "no-store"})
        response.headers["set-cookie"] = session_cookie(session_id, secure=_secure(request),
                                                        max_age_s=settings.session_max_s)
        return response

    async def sign_out(request: Request) -> Response:
        credential = credential_of(request.headers, request.method, settings)
        if credential is not None and credential.kind == "session":
            await gateway.close_session(credential.secret)
        response = Response(status_code=204, headers={"cache-control": "no-store"})
        response.headers["set-cookie"] = clearing_cookie(secure=_secure(request))
        return response

    return [Route("/v1/session", sign_in, methods=["POST"]), Route("/v1/session", sign_out, methods=["DELETE"])]
