"""Page sessions: a browser signs in once with a token (`POST /v1/session`) and from then on
sends an opaque session id in an HttpOnly, SameSite=Strict cookie instead of the token, so the
page's JavaScript never holds the token.

A session id reads `dss_<43 url-safe characters>` (32 random bytes); the catalog keeps only its
SHA-256 (`hash_session`), beside the id and the hash of the token it was opened with. A session
ends at the first of:

- sign-out (`DELETE /v1/session`), which forgets it;
- its token revoked (every session of the token is forgotten with it; a session of the admin
  token ends when the platform's admin token changes);
- `idle_s` without use (sliding: each use, seen by the registry at most every `touch_s`,
  pushes it on); default 7 days, `DASH_SESSION_IDLE_S`;
- `max_s` after it was opened, however much it is used; default 30 days, `DASH_SESSION_MAX_S`.

At most `max_per_token` sessions of one token live at once: opening one more ends the one
least recently used.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Literal

from dash_ray.settings import SessionPolicy

__all__ = [
    "SESSION_COOKIE",
    "Credential",
    "SessionGrant",
    "SessionPolicy",
    "clearing_cookie",
    "hash_session",
    "new_session_id",
    "session_cookie",
    "session_id_from",
]

SESSION_COOKIE = "dash_session"
_PREFIX = "dss_"
_MAX_ID_CHARS = 100


@dataclass(frozen=True)
class Credential:
    """What a request is authenticated with: a bearer token (`Authorization`, `?token=`) or a
    page session's id (the cookie). Made by the web tier only, never parsed from a header."""

    kind: Literal["bearer", "session"]
    secret: str = field(repr=False)


@dataclass(frozen=True)
class SessionGrant:
    """What a live session stands for: the hash of its token (`hash_token`), and until when
    (UNIX seconds) it lives: `idle_until` unless used again, `expires_at` at most."""

    token_hash: str
    idle_until: float
    expires_at: float

    def live(self, now: float) -> bool:
        return now < self.idle_until and now < self.expires_at


def new_session_id() -> str:
    """A fresh session id (the cookie's value); only its hash is stored."""
    return _PREFIX + secrets.token_urlsafe(32)


def hash_session(session_id: str) -> str:
    """The stored form of a session id: SHA-256, hex (a 32-byte random id needs no slow hash)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def session_id_from(cookie_header: str | None) -> str | None:
    """The session id in a `Cookie` header, None when there is none or it is not one."""
    if not cookie_header or SESSION_COOKIE not in cookie_header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(SESSION_COOKIE)
    value = morsel.value if morsel is not None else ""
    if not value.startswith(_PREFIX) or len(value) > _MAX_ID_CHARS:
        return None
    return value


def session_cookie(session_id: str, *, secure: bool, max_age_s: float) -> str:
    """The `Set-Cookie` value that hands the browser its session: HttpOnly (never readable by
    the page's scripts), SameSite=Strict (never sent from another site), for the whole origin,
    kept `max_age_s` (the session's lifetime) by the browser; Secure when served over https."""
    return _cookie(session_id, secure=secure, max_age=int(max_age_s))


def clearing_cookie(*, secure: bool) -> str:
    """The `Set-Cookie` value that makes the browser drop its session cookie."""
    return _cookie("", secure=secure, max_age=0) + "; Expires=Thu, 01 Jan 1970 00:00:00 GMT"


def _cookie(value: str, *, secure: bool, max_age: int) -> str:
    parts = [f"{SESSION_COOKIE}={value}", "HttpOnly", "SameSite=Strict", "Path=/", f"Max-Age={max_age}"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
