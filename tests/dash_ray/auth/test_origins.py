"""The cross-site check of requests made with the page session's cookie, without Ray: the
platform's own origin (the Host the request was sent to, over http or https, default ports
either way) and the allowed extra origins pass; another host or port, `null`, a non-http
origin and a request with neither Origin nor Referer are refused with a 403 that says why."""

from __future__ import annotations

import pytest

from dash_ray.auth.origins import check_origin, normal_origin
from dash_ray.errors import ForbiddenError


@pytest.mark.parametrize(("text", "normal"), [
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("HTTPS://Dash.Example.com:443", "https://dash.example.com"),
    ("http://dash.example.com:80/pipelines/x?range=1h", "http://dash.example.com"),
    ("http://[::1]:8000", "http://[::1]:8000"),
    ("null", None),
    ("file:///tmp/x.html", None),
    ("http://host:notaport", None),
    ("", None),
])
def test_origins_are_written_one_way(text: str, normal: str | None) -> None:
    assert normal_origin(text) == normal


@pytest.mark.parametrize(("origin", "referer", "host"), [
    ("http://127.0.0.1:8000", None, "127.0.0.1:8000"),
    ("https://dash.example.com", None, "dash.example.com"),  # behind a TLS proxy that keeps Host
    ("https://dash.example.com", None, "dash.example.com:443"),
    (None, "http://127.0.0.1:8000/dashboards/x?range=1h", "127.0.0.1:8000"),
    ("http://[::1]:8000", None, "[::1]:8000"),
])
def test_the_platforms_own_page_passes(origin: str | None, referer: str | None, host: str) -> None:
    check_origin(origin=origin, referer=referer, host=host)


@pytest.mark.parametrize(("origin", "referer", "host", "where"), [
    ("http://127.0.0.1:9999", None, "127.0.0.1:8000", "Origin"),  # same site, another port
    ("http://evil.example", "http://127.0.0.1:8000/", "127.0.0.1:8000", "Origin"),  # Origin wins
    ("null", "http://127.0.0.1:8000/", "127.0.0.1:8000", "Origin"),
    ("http://127.0.0.1:8000", None, None, "Origin"),
    (None, "http://evil.example/page", "127.0.0.1:8000", "Referer"),
    (None, None, "127.0.0.1:8000", "Origin"),
])
def test_anything_else_is_refused_saying_why(origin: str | None, referer: str | None, host: str | None,
                                            where: str) -> None:
    with pytest.raises(ForbiddenError) as caught:
        check_origin(origin=origin, referer=referer, host=host)
    assert caught.value.where == where
    assert where in caught.value.message


def test_extra_origins_may_be_allowed() -> None:
    allowed = ("https://ops.example.com",)
    check_origin(origin="https://ops.example.com", referer=None, host="dash.internal:8000", allowed=allowed)
    with pytest.raises(ForbiddenError):
        check_origin(origin="http://ops.example.com", referer=None, host="dash.internal:8000", allowed=allowed)
