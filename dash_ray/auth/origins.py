"""Cross-site request forgery: a request that a browser authenticates by itself (the page
session's cookie) must come from the platform's own page. It carries an `Origin` (browsers send
one on every POST, PUT, PATCH, DELETE and WebSocket handshake) or, failing that, a `Referer`,
and that origin must be the platform's own: the host and port the request was sent to (its
`Host`, so a TLS proxy in front that keeps `Host` changes nothing), over http or https, or one
of the extra origins the operator allows (`DASH_ALLOWED_ORIGINS`). Anything else, `Origin:
null` and a request with neither header included, is refused.

Requests that carry their token in `Authorization` need none of this: a browser never adds
that header by itself, so another site cannot make a request with it.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from dash_ray.errors import ForbiddenError

__all__ = ["SAFE_METHODS", "check_origin", "normal_origin"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normal_origin(text: str) -> str | None:
    """`scheme://host[:port]` of an origin or URL, lower case, the scheme's default port left
    out; None when it is not an http(s) origin (`null`, a file: URL, garbage)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def check_origin(*, origin: str | None, referer: str | None, host: str | None,
                 allowed: Collection[str] = ()) -> None:
    """Returns when the request's `Origin` (else its `Referer`) is the platform's own origin
    (the same host and port as `host`, the request's `Host` header) or one of `allowed`
    (written `scheme://host[:port]`); else raises ForbiddenError saying which origin was seen."""
    claimed = origin if origin is not None else referer
    header = "Origin" if origin is not None else "Referer"
    if claimed is None:
        raise ForbiddenError("a request signed in by the page's session cookie must carry an Origin or Referer "
                             "header of this platform's page (send the token in Authorization instead)",
                             where="Origin")
    seen = normal_origin(claimed)
    if seen is not None and (_same_authority(seen, host) or seen in {normal_origin(a) for a in allowed}):
        return
    shown = (seen or claimed.strip())[:100]
    raise ForbiddenError(f"cross-origin request refused: {header} {shown!r} is not this platform's page "
                         f"({host or 'no Host'}); DASH_ALLOWED_ORIGINS lists other origins that may use the "
                         "session", where=header)


def _same_authority(seen: str, host: str | None) -> bool:
    """Whether origin `seen` names the same host and port as the `Host` header, the port
    defaulting to the origin's scheme's."""
    if not host:
        return False
    scheme = seen.split("://", 1)[0]
    return normal_origin(f"{scheme}://{host.strip()}") == seen
