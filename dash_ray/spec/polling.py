"""The `source` blocks of the polling kinds: `http_poll` (a JSON API fetched on a schedule) and
`graphql_poll` (a GraphQL query run on a schedule), with their auth, pagination and incremental
parts. `dash_ray.sources.http_poll` and `dash_ray.sources.graphql` run them.

Paths (`records`, `primary_key`, `cursor_path`, ...) are the mapping's JSONPath subset
(`dash_ray.mapping.paths`): `records` and the pagination paths read the whole response body,
`primary_key` and `incremental.cursor_path` read one record.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from dash_ray.spec.base import SecretRef, SpecModel

__all__ = ["ApiKeyAuth", "BasicAuth", "BearerAuth", "GraphqlCursorPagination", "GraphqlIncremental",
           "GraphqlPollSource", "HttpIncremental", "HttpPollSource", "PollAuth", "Pagination"]


# Checked as paths with the rest of the spec (`dash_ray.sources.locate.path_problems`).
Path = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
ParamValue = str | int | float | bool


class BearerAuth(SpecModel):
    """`Authorization: Bearer <token>`."""

    kind: Literal["bearer"]
    token: SecretRef


class BasicAuth(SpecModel):
    """HTTP basic auth; the username may be plain text or a secret."""

    kind: Literal["basic"]
    username: str | SecretRef
    password: SecretRef


class ApiKeyAuth(SpecModel):
    """A key sent as the header or query parameter `name` (`in`: `header` or `query`)."""

    kind: Literal["api_key"]
    name: str = Field(min_length=1)
    value: SecretRef
    location: Literal["header", "query"] = Field(default="header", alias="in")


PollAuth = Annotated[BearerAuth | BasicAuth | ApiKeyAuth, Field(discriminator="kind")]


class SinglePage(SpecModel):
    kind: Literal["single_page"] = "single_page"


class JsonLink(SpecModel):
    """The next page's URL is in the body at `next_url_path`."""

    kind: Literal["json_link"]
    next_url_path: Path


class HeaderLink(SpecModel):
    """The next page's URL is the RFC 8288 `Link` header's `rel="next"`."""

    kind: Literal["header_link"]


class CursorPagination(SpecModel):
    """The body's `cursor_path` value is sent as the query parameter `cursor_param`."""

    kind: Literal["cursor"]
    cursor_path: Path
    cursor_param: str = Field(default="cursor", min_length=1)


class PageNumber(SpecModel):
    """`page_param` counts from `base_page`; `total_path` (optional) reads the number of pages."""

    kind: Literal["page_number"]
    page_param: str = Field(default="page", min_length=1)
    base_page: int = Field(default=0, ge=0)
    total_path: Path | None = None


class OffsetPagination(SpecModel):
    """`offset_param` advances by `limit` (sent as `limit_param`); `total_path` (optional)
    reads the number of records."""

    kind: Literal["offset"]
    offset_param: str = Field(default="offset", min_length=1)
    limit_param: str = Field(default="limit", min_length=1)
    limit: int = Field(gt=0, le=1_000_000)
    total_path: Path | None = None


Pagination = Annotated[SinglePage | JsonLink | HeaderLink | CursorPagination | PageNumber | OffsetPagination,
                       Field(discriminator="kind")]


class HttpIncremental(SpecModel):
    """The highest `cursor_path` value seen is kept durably and sent as `start_param`."""

    cursor_path: Path
    start_param: str = Field(min_length=1)
    initial_value: Any = None


class GraphqlIncremental(SpecModel):
    """As `HttpIncremental`, sent as the query variable `start_variable`."""

    cursor_path: Path
    start_variable: str = Field(min_length=1)
    initial_value: Any = None


class GraphqlCursorPagination(SpecModel):
    """Relay-style: while `has_next_path` is true, `cursor_path`'s value goes in `cursor_variable`."""

    kind: Literal["cursor"]
    cursor_path: Path
    has_next_path: Path
    cursor_variable: str = Field(default="after", min_length=1)


class _Polling(SpecModel):
    """What both polling kinds share: the schedule, the timeouts, the retries, auth, where the
    records are, and how they are deduplicated. [ext]: `poll_timeout`, `retries`,
    `backoff_initial`, `backoff_max`, `max_pages`, `dedup_keys`."""

    url: str = Field(pattern=r"^https?://", max_length=4096)
    headers: dict[str, str] = Field(default_factory=dict)
    auth: PollAuth | None = None
    interval: float = Field(default=60.0, gt=0, le=86_400 * 7)
    jitter: float = Field(default=0.1, ge=0, le=1)
    timeout: float = Field(default=10.0, gt=0, le=600)
    poll_timeout: float = Field(default=300.0, gt=0, le=86_400)
    retries: int = Field(default=3, ge=0, le=20)
    backoff_initial: float = Field(default=1.0, gt=0, le=3600)
    backoff_max: float = Field(default=300.0, gt=0, le=86_400)
    max_pages: int = Field(default=1000, ge=1, le=1_000_000)
    primary_key: Path | None = None
    dedup_keys: int = Field(default=100_000, ge=1, le=10_000_000)


class HttpPollSource(_Polling):
    """A JSON API fetched every `interval` seconds (docs/API.md, Sources). `body` [ext] is a
    JSON body sent with a POST."""

    kind: Literal["http_poll"] = "http_poll"
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, ParamValue] = Field(default_factory=dict)
    body: dict[str, Any] | None = None
    records: Path = "$"
    pagination: Pagination = Field(default_factory=SinglePage)
    incremental: HttpIncremental | None = None


class GraphqlPollSource(_Polling):
    """A GraphQL query run every `interval` seconds; a response with `errors` is a failed poll."""

    kind: Literal["graphql_poll"] = "graphql_poll"
    query: str = Field(min_length=1, max_length=100_000)
    variables: dict[str, Any] = Field(default_factory=dict)
    records: Path = "$.data"
    pagination: GraphqlCursorPagination | SinglePage = Field(default_factory=SinglePage, discriminator="kind")
    incremental: GraphqlIncremental | None = None
