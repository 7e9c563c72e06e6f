"""How a poll walks an API's pages, by the kinds dlt names: `single_page`, `json_link` (the
body has the next page's URL), `header_link` (RFC 8288 `Link: <...>; rel="next"`), `cursor`
(the body has a cursor to send back as a parameter), `page_number` and `offset` (counted
parameters, ended by a `total` when the body gives one). Whatever the kind, a page with no
records ends the poll (the caller's rule)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

import httpx

from dash_ray.sources.locate import Locator
from dash_ray.spec.polling import CursorPagination, HeaderLink, JsonLink, OffsetPagination, PageNumber, Pagination

__all__ = ["Pager", "next_link", "split_link"]

_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
_REL = re.compile(r"""rel\s*=\s*"?([^";]+)"?""", re.IGNORECASE)


def next_link(headers: httpx.Headers) -> str | None:
    """The `rel="next"` target of a response's `Link` headers, or None."""
    for value in headers.get_list("link"):
        for target, params in _LINK.findall(value):
            rel = _REL.search(params)
            if rel is not None and "next" in rel.group(1).lower().split():
                return str(target)
    return None


def split_link(base: str, link: str) -> tuple[str, dict[str, Any]]:
    """A link (relative to `base`) as its URL without the query, and the query's parameters
    (so they go with the parameters every request adds, such as an API key)."""
    parts = urlsplit(urljoin(base, link))
    return urlunsplit(parts._replace(query="", fragment="")), dict(parse_qsl(parts.query, keep_blank_values=True))


def _number(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class Pager:
    """One poll's walk over pages. `first(params)`: the parameters of the first request;
    `next(url, params, body, headers)`: the URL and parameters of the next request, or None
    when there is none. A link's query replaces the parameters (it carries its own)."""

    def __init__(self, spec: Pagination) -> None:
        self._spec = spec
        paths = {name: getattr(spec, name, None) for name in ("next_url_path", "cursor_path", "total_path")}
        self._paths = {name: Locator(text) for name, text in paths.items() if text}

    def first(self, params: dict[str, Any]) -> dict[str, Any]:
        spec = self._spec
        if isinstance(spec, PageNumber):
            return {**params, spec.page_param: spec.base_page}
        if isinstance(spec, OffsetPagination):
            return {**params, spec.offset_param: 0, spec.limit_param: spec.limit}
        return params

    def next(self, url: str, params: dict[str, Any], body: Any,
             headers: httpx.Headers) -> tuple[str, dict[str, Any]] | None:
        spec = self._spec
        if isinstance(spec, JsonLink):
            link = self._paths["next_url_path"].value(body)
            return split_link(url, str(link)) if link else None
        if isinstance(spec, HeaderLink):
            link = next_link(headers)
            return split_link(url, link) if link else None
        if isinstance(spec, CursorPagination):
            cursor = self._paths["cursor_path"].value(body)
            return (url, {**params, spec.cursor_param: cursor}) if cursor not in (None, "") else None
        total = _number(self._paths["total_path"].value(body)) if "total_path" in self._paths else None
        if isinstance(spec, PageNumber):
            page = int(params.get(spec.page_param, spec.base_page)) + 1
            if total is not None and page >= spec.base_page + total:
                return None
            return url, {**params, spec.page_param: page}
        if isinstance(spec, OffsetPagination):
            offset = int(params.get(spec.offset_param, 0)) + spec.limit
            if total is not None and offset >= total:
                return None
            return url, {**params, spec.offset_param: offset}
        return None
